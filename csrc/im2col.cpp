// im2col / col2im for NCHW images.
//
// im2col copies every receptive field of x (N, C, H, W) into a column of
// cols (N, C*KH*KW, OH*OW), so that a convolution becomes one GEMM.
// col2im is its adjoint: it scatter-adds every column back into the image,
// which is the loop NumPy can only express with a slow np.add.at.
#include "im2col.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"

namespace ganforge {

// Below this many copied elements per thread, starting a thread costs more than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 16;

// The output columns [first, last) whose input column oj*stride - pad + offset lies
// inside [0, width): computed once per kernel column, so that the inner loops need
// no bounds test per element.
struct ValidRange {
  int64_t first, last;
};

static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static ValidRange valid_columns(int64_t offset, int64_t pad, int64_t stride, int64_t width, int64_t out_w) {
  const int64_t first = std::max<int64_t>(0, ceil_div(pad - offset, stride));
  const int64_t last = std::min<int64_t>(out_w, floor_div(width - 1 + pad - offset, stride) + 1);
  return {first, std::max(first, last)};
}

// One (n, c) image plane per work item; planes are independent.
template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g) {
  const int64_t out_area = g.out_h * g.out_w;
  const int64_t plane_work = g.kernel_h * g.kernel_w * out_area;
  parallel_for(g.batch * g.channels, kMinWorkPerThread / std::max<int64_t>(1, plane_work) + 1,
               [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const T* image = x + plane * g.height * g.width;
      T* col = cols + plane * g.kernel_h * g.kernel_w * out_area;
      for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
        for (int64_t kj = 0; kj < g.kernel_w; ++kj, col += out_area) {
          const int64_t offset = kj * g.dilation_w - g.pad_w;
          const ValidRange cols_in = valid_columns(kj * g.dilation_w, g.pad_w, g.stride_w, g.width, g.out_w);
          for (int64_t oi = 0; oi < g.out_h; ++oi) {
            const int64_t row = oi * g.stride_h - g.pad_h + ki * g.dilation_h;
            T* out_row = col + oi * g.out_w;
            if (row < 0 || row >= g.height) {
              std::memset(out_row, 0, sizeof(T) * g.out_w);
              continue;
            }
            const T* in_row = image + row * g.width;
            std::memset(out_row, 0, sizeof(T) * cols_in.first);
            for (int64_t oj = cols_in.first; oj < cols_in.last; ++oj) out_row[oj] = in_row[oj * g.stride_w + offset];
            std::memset(out_row + cols_in.last, 0, sizeof(T) * (g.out_w - cols_in.last));
          }
        }
      }
    }
  });
}

// Each (n, c) image plane receives only its own columns, so planes can be filled in
// parallel without atomics.
template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g) {
  const int64_t out_area = g.out_h * g.out_w;
  const int64_t plane_work = g.kernel_h * g.kernel_w * out_area;
  parallel_for(g.batch * g.channels, kMinWorkPerThread / std::max<int64_t>(1, plane_work) + 1,
               [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      T* image = x + plane * g.height * g.width;
      std::memset(image, 0, sizeof(T) * g.height * g.width);
      const T* col = cols + plane * g.kernel_h * g.kernel_w * out_area;
      for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
        for (int64_t kj = 0; kj < g.kernel_w; ++kj, col += out_area) {
          const int64_t offset = kj * g.dilation_w - g.pad_w;
          const ValidRange cols_in = valid_columns(kj * g.dilation_w, g.pad_w, g.stride_w, g.width, g.out_w);
          for (int64_t oi = 0; oi < g.out_h; ++oi) {
            const int64_t row = oi * g.stride_h - g.pad_h + ki * g.dilation_h;
            if (row < 0 || row >= g.height) continue;
            const T* in_row = col + oi * g.out_w;
            T* out_row = image + row * g.width;
            for (int64_t oj = cols_in.first; oj < cols_in.last; ++oj) out_row[oj * g.stride_w + offset] += in_row[oj];
          }
        }
      }
    }
  });
}

template void im2col<float>(const float*, float*, const ConvGeometry&);
template void im2col<double>(const double*, double*, const ConvGeometry&);
template void col2im<float>(const float*, float*, const ConvGeometry&);
template void col2im<double>(const double*, double*, const ConvGeometry&);

}  // namespace ganforge

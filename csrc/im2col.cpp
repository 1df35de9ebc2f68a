// im2col / col2im for NCHW images.
//
// im2col copies every receptive field of x (N, C, H, W) into a column of
// cols (N, C*KH*KW, OH*OW), so that a convolution becomes one GEMM per sample.
// With batch_in_columns the columns of all samples sit side by side instead,
// cols (C*KH*KW, N*OH*OW), so that the whole batch is one large GEMM: far faster
// when each sample has few output positions (a 7x7 map is a 49-column GEMM).
// col2im is the adjoint: it scatter-adds every column back into the image,
// which is the loop NumPy can only express with a slow np.add.at.
#include "im2col.h"

#include <algorithm>
#include <vector>

#include "parallel.h"

namespace ganforge {

// Below this many copied elements per thread, starting a thread costs more than it saves.
constexpr int64_t kMinWorkPerThread = 1 << 16;

// Where each entry of one image plane's columns comes from: for column entry
// (ki, kj, oi, oj), the offset of the input pixel it copies inside its (H, W) plane,
// or -1 where the window hangs over the padding. Every plane shares this map, so it is
// built once per call; the kernels are then a plain gather (im2col) and scatter-add
// (col2im), whatever the geometry.
static std::vector<int64_t> gather_map(const ConvGeometry& g) {
  std::vector<int64_t> source;
  source.reserve(g.kernel_h * g.kernel_w * g.out_h * g.out_w);
  for (int64_t ki = 0; ki < g.kernel_h; ++ki)
    for (int64_t kj = 0; kj < g.kernel_w; ++kj)
      for (int64_t oi = 0; oi < g.out_h; ++oi)
        for (int64_t oj = 0; oj < g.out_w; ++oj) {
          const int64_t row = oi * g.stride_h - g.pad_h + ki * g.dilation_h;
          const int64_t column = oj * g.stride_w - g.pad_w + kj * g.dilation_w;
          const bool inside = row >= 0 && row < g.height && column >= 0 && column < g.width;
          source.push_back(inside ? row * g.width + column : -1);
        }
  return source;
}

// Where the columns of image plane (n, c) start, and how far apart the rows of its
// kernel taps lie, in either layout of cols.
struct ColumnLayout {
  int64_t channels, taps, positions, batch;
  bool batch_in_columns;
  int64_t start(int64_t plane) const {
    const int64_t n = plane / channels, c = plane % channels;
    return batch_in_columns ? c * taps * batch * positions + n * positions : plane * taps * positions;
  }
  int64_t tap_stride() const { return batch_in_columns ? batch * positions : positions; }
};

static ColumnLayout layout_of(const ConvGeometry& g, bool batch_in_columns) {
  return {g.channels, g.kernel_h * g.kernel_w, g.out_h * g.out_w, g.batch, batch_in_columns};
}

// One (n, c) image plane per work item; planes are independent.
template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g, bool batch_in_columns) {
  const std::vector<int64_t> source = gather_map(g);
  const ColumnLayout layout = layout_of(g, batch_in_columns);
  const int64_t plane_size = g.height * g.width, work = layout.taps * layout.positions;
  parallel_for(g.batch * g.channels, kMinWorkPerThread / std::max<int64_t>(1, work) + 1,
               [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const T* image = x + plane * plane_size;
      for (int64_t tap = 0; tap < layout.taps; ++tap) {
        T* col = cols + layout.start(plane) + tap * layout.tap_stride();
        const int64_t* from = source.data() + tap * layout.positions;
        for (int64_t l = 0; l < layout.positions; ++l) col[l] = from[l] >= 0 ? image[from[l]] : T(0);
      }
    }
  });
}

// Each (n, c) image plane receives only its own columns, so planes can be filled in
// parallel without atomics.
template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g, bool batch_in_columns) {
  const std::vector<int64_t> source = gather_map(g);
  const ColumnLayout layout = layout_of(g, batch_in_columns);
  const int64_t plane_size = g.height * g.width, work = layout.taps * layout.positions;
  parallel_for(g.batch * g.channels, kMinWorkPerThread / std::max<int64_t>(1, work) + 1,
               [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      T* image = x + plane * plane_size;
      for (int64_t i = 0; i < plane_size; ++i) image[i] = T(0);
      for (int64_t tap = 0; tap < layout.taps; ++tap) {
        const T* col = cols + layout.start(plane) + tap * layout.tap_stride();
        const int64_t* to = source.data() + tap * layout.positions;
        for (int64_t l = 0; l < layout.positions; ++l)
          if (to[l] >= 0) image[to[l]] += col[l];
      }
    }
  });
}

template void im2col<float>(const float*, float*, const ConvGeometry&, bool);
template void im2col<double>(const double*, double*, const ConvGeometry&, bool);
template void col2im<float>(const float*, float*, const ConvGeometry&, bool);
template void col2im<double>(const double*, double*, const ConvGeometry&, bool);

}  // namespace ganforge

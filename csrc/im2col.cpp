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

// Calls visit(plane, tap, column, pixel_of) for every kernel tap of every (n, c) image
// plane, where column points at that tap's row of cols for this plane and pixel_of[l] is
// the plane offset that position l reads (or -1 over the padding). Work is split by
// plane: planes are independent, in both directions.
template <typename Visit>
static void for_each_tap(const ConvGeometry& g, bool batch_in_columns, Visit visit) {
  const std::vector<int64_t> source = gather_map(g);
  const ColumnLayout layout = layout_of(g, batch_in_columns);
  parallel_for(g.batch * g.channels, kMinWorkPerThread / std::max<int64_t>(1, layout.taps * layout.positions) + 1,
               [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane)
      for (int64_t tap = 0; tap < layout.taps; ++tap)
        visit(plane, tap, layout.start(plane) + tap * layout.tap_stride(), source.data() + tap * layout.positions,
              layout.positions);
  });
}

template <typename T>
void im2col(const T* x, T* cols, const ConvGeometry& g, bool batch_in_columns) {
  const int64_t plane_size = g.height * g.width;
  for_each_tap(g, batch_in_columns, [&](int64_t plane, int64_t, int64_t column, const int64_t* pixel_of,
                                        int64_t positions) {
    const T* image = x + plane * plane_size;
    T* col = cols + column;
    for (int64_t l = 0; l < positions; ++l) col[l] = pixel_of[l] >= 0 ? image[pixel_of[l]] : T(0);
  });
}

// Each (n, c) image plane receives only its own columns, so planes can be filled in
// parallel without atomics; a plane is cleared when its first tap arrives.
template <typename T>
void col2im(const T* cols, T* x, const ConvGeometry& g, bool batch_in_columns) {
  const int64_t plane_size = g.height * g.width;
  for_each_tap(g, batch_in_columns, [&](int64_t plane, int64_t tap, int64_t column, const int64_t* pixel_of,
                                        int64_t positions) {
    T* image = x + plane * plane_size;
    if (tap == 0) std::fill(image, image + plane_size, T(0));
    const T* col = cols + column;
    for (int64_t l = 0; l < positions; ++l)
      if (pixel_of[l] >= 0) image[pixel_of[l]] += col[l];
  });
}

template void im2col<float>(const float*, float*, const ConvGeometry&, bool);
template void im2col<double>(const double*, double*, const ConvGeometry&, bool);
template void col2im<float>(const float*, float*, const ConvGeometry&, bool);
template void col2im<double>(const double*, double*, const ConvGeometry&, bool);

}  // namespace ganforge

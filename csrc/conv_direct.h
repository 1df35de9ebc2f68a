#pragma once
#include <cstdint>

namespace ganforge {

// A convolution computed pixel by pixel from a list of (input pixel, kernel tap) pairs,
// with the batch innermost: x is (in_pixels, channels, batch), y (out_pixels,
// out_channels, batch), both contiguous, and for every output pixel p
//
//   y[p, o, :] = sum over p's pairs (q, t) of  sum over c of  W_t[o, c] * x[q, c, :]
//
// where p's pairs are in_pixel[k], tap[k] for k in [pair_start[p], pair_start[p + 1]).
// A convolution's pairs are the taps whose input pixel lies inside the image; a
// transposed convolution's are those that land on p (one in stride^2 of them). Either
// way no tap that falls on padding is multiplied, and every output element is written
// once, from registers.
//
// W_t[o, c] = weights[o * out_step + c * in_step + t]: a convolution's (O, C, KH, KW)
// weights have out_step = C*KH*KW and in_step = KH*KW; a transposed convolution's
// (C, O, KH, KW) ones out_step = KH*KW and in_step = O*KH*KW.
//
// With groups > 1, x's and y's channels are `groups` runs of `channels` and
// `out_channels` (the counts per group), and group g convolves its own with the
// weights that start at weights + g * out_channels * channels * taps.
struct DirectConv {
  const float* x;
  int64_t channels, in_pixels, batch;
  const float* weights;
  int64_t out_step, in_step, taps;
  float* y;
  int64_t out_channels, out_pixels, groups;
  const int32_t* pair_start;
  const int32_t* in_pixel;
  const int32_t* tap;
};

// Needs AVX-512F (gemm_supported()); the pairs must have been checked against the sizes.
void conv_direct(const DirectConv& conv);

// The weight gradient of such a convolution (groups = 1), from the same pairs grouped by
// tap: with x (in_pixels, channels, batch) and the output gradient gy (out_pixels, batch,
// out_channels), both contiguous,
//
//   g[t, c, o] = sum over tap t's pairs (p, q) of  sum over n of  x[q, c, n] * gy[p, n, o]
//
// into g (taps, channels, out_channels). Tap t's pairs come in `chunks` runs, each over a
// few output pixels, the same pixels for every tap: run j of tap t is out_pixel[k],
// in_pixel[k] for k in [run_start[t * chunks + j], run_start[t * chunks + j + 1]).
struct DirectWeightGrad {
  const float* x;
  int64_t channels, in_pixels, batch;
  const float* gy;
  int64_t out_channels, out_pixels, taps, chunks;
  const int32_t* run_start;
  const int32_t* out_pixel;
  const int32_t* in_pixel;
  float* g;
};

void conv_direct_weight_grad(const DirectWeightGrad& grad);

}  // namespace ganforge

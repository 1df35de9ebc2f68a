// A direct convolution with the batch innermost (conv_direct.h): for each output pixel,
// a register tile of 8 output channels x 32 samples (16 x 16 for a batch of 16 or fewer)
// summed over the pixel's taps and the input channels, read straight from the image.
//
// Why, beside the gathered GEMM (gemm.cpp): with the batch innermost, the 32 samples of
// one pixel are 32 neighbouring floats, so the micro-kernel can load its right-hand
// operand where it lies, and the GEMM's packing of that operand (a copy of
// the whole unfolded input, with its masks) has nothing left to do. Going pixel by
// pixel also drops the taps that fall on padding (14% of a 4x4 kernel's products on a
// 7x7 map) instead of multiplying zeros, and a transposed convolution no longer adds
// each tap's product into the output from memory (the GEMM's fused col2im): all taps
// that land on a pixel sum in registers, and each output element is stored once.
// Measured on dcgan28's 7x7 and 14x14 layers: 1.3-1.8x faster than the gathered GEMM
// (docs/benchmarks.md).
//
// The weight gradient goes pixel by pixel as well, tap by tap, with the batch as the sum's
// depth (conv_direct_weight_grad): 15-25% faster than the GEMM at the dcgan layers.
#include "conv_direct.h"

#include <algorithm>
#include <stdexcept>

#include "gemm.h"
#include "parallel.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(GANFORGE_PORTABLE_ONLY)
#include <immintrin.h>

namespace ganforge {
namespace {

constexpr int64_t kRows = 8;   // output channels per register tile, broadcast from the packed weights
constexpr int64_t kCols = 32;  // columns per register tile, two 16-float vectors: samples (the weight gradient: outputs)

// The convolution's register tile, rows (output channels) x vectors of 16 samples: 8 x 2
// for a batch over 16, and 16 x 1 for a batch of 16 or fewer (SRGAN's), which would leave
// half of every 32-sample tile idle. Both keep 16 accumulators; the narrow one loads a
// broadcast weight per multiply-add instead of every second one.
//
// run_pixels: how many output pixels a block of output channels covers before the next
// block takes them (see conv_direct_tiled).
template <int64_t R, int64_t V, int64_t kRunPixels>
struct TileShape {
  static constexpr int64_t rows = R, vectors = V, samples = 16 * V, run_pixels = kRunPixels;
};
using WideTile = TileShape<kRows, 2, 1>;
using NarrowTile = TileShape<16, 1, 16>;

// The lanes of a tile's two vectors that hold its first `tail` columns (32: all of them).
struct TailMasks {
  __mmask16 live[2];
  explicit TailMasks(int64_t tail)
      : live{__mmask16(tail >= 16 ? 0xFFFF : (1u << tail) - 1), __mmask16(tail > 16 ? (1u << (tail - 16)) - 1 : 0)} {}
};

// The weights in the order the tiles read them: block b of kRows (8) output channels, tap t
// and input channel c hold W_t[o, c] for o = b * kRows + r at ((b * taps + t) * channels + c)
// * kRows + r, zero past a group's last output channel. Each group has its own blocks
// (`blocks` per group). The narrow tile's 16 rows are two blocks, read as two streams of
// 8 floats: with blocks of 16 (one stream of 16), SRGAN's Fashion-MNIST step, most of whose
// layers run in narrow tiles, took 1.05-1.06x as long (in turns, both orders: 0.949 and
// 1/1.062); at 96 px, where only the discriminator's 12 px layers do, 1.00-1.02x.
void pack_weights(const DirectConv& conv, int64_t blocks, float* packed) {
  parallel_for_threads(conv.groups * blocks, 1, gemm_threads(), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float* weights = conv.weights + b / blocks * conv.out_channels * conv.channels * conv.taps;
      for (int64_t t = 0; t < conv.taps; ++t) {
        float* out = packed + (b * conv.taps + t) * conv.channels * kRows;
        for (int64_t c = 0; c < conv.channels; ++c)
          for (int64_t r = 0; r < kRows; ++r) {
            const int64_t o = b % blocks * kRows + r;
            out[c * kRows + r] = o < conv.out_channels ? weights[o * conv.out_step + c * conv.in_step + t] : 0.0f;
          }
      }
    }
  });
}

// y[p, o0 + r, n0 : n0 + Shape::samples] for r < rows, summed over pixel p's `pairs`
// (in_pixel, tap), with `weights` the packed block of output channels o0... and x at the
// group's first channel and sample n0. In the batch's last tile (kTail), the lanes past
// its end are masked off: live[v] for vector v.
template <typename Shape, bool kTail>
__attribute__((target("avx512f"))) void tile(const DirectConv& conv, const float* weights, const float* x,
                                              const int32_t* in_pixel, const int32_t* tap, int64_t pairs, float* y,
                                              int64_t rows, const __mmask16 (&live)[2]) {
  constexpr int64_t R = Shape::rows, V = Shape::vectors;
  const int64_t block_step = conv.taps * conv.channels * kRows;  // from one packed block of 8 rows to the next
  __m512 acc[R][V];
#pragma GCC unroll 16
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < pairs; ++k) {
    const float* a = weights + tap[k] * conv.channels * kRows;
    const float* b = x + int64_t(in_pixel[k]) * conv.groups * conv.channels * conv.batch;
    for (int64_t c = 0; c < conv.channels; ++c, a += kRows, b += conv.batch) {
      __m512 bv[V];
      for (int64_t v = 0; v < V; ++v) bv[v] = kTail ? _mm512_maskz_loadu_ps(live[v], b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 16
      for (int64_t r = 0; r < R; ++r) {
        const __m512 ar = _mm512_set1_ps(a[r / kRows * block_step + r % kRows]);
        for (int64_t v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
      }
    }
  }
  // Unrolled, so that every acc[r] is a register: with a loop of `rows` steps here, GCC
  // kept acc in memory and stored all of it on every step of the masked tile's sum above.
#pragma GCC unroll 16
  for (int64_t r = 0; r < R; ++r) {
    if (r >= rows) break;
    float* out = y + r * conv.batch;
    for (int64_t v = 0; v < V; ++v) {
      if (kTail) {
        _mm512_mask_storeu_ps(out + 16 * v, live[v], acc[r][v]);
      } else {
        _mm512_storeu_ps(out + 16 * v, acc[r][v]);
      }
    }
  }
}

// The convolution with register tiles of Shape.
template <typename Shape>
void conv_direct_tiled(const DirectConv& conv) {
  constexpr int64_t R = Shape::rows, N = Shape::samples;
  const int64_t blocks = (conv.out_channels + R - 1) / R;  // per group
  const PackBuffer packed(conv.groups * blocks * conv.taps * conv.channels * R);
  pack_weights(conv, blocks * R / kRows, packed.data());
  const int64_t full = conv.batch / N * N, tail = conv.batch - full;
  const TailMasks last(tail);
  // The work items are (output pixel, block of output channels), split between the threads
  // in contiguous runs. A thread goes over its items Shape::run_pixels pixels at a time,
  // every block for those pixels before the next ones. With a batch of 16 or fewer, a
  // block's packed weights (taps x channels x 16 floats: 288 KB for 512 input channels)
  // take as much room as a pixel's inputs, and a run of 16 pixels lets them serve 16
  // pixels while in L2, rather than every block's passing through for each pixel: SRGAN's
  // 256 -> 512 layer at 12 px (4.7 MB of weights) ran its forward and input gradient in
  // 0.88-0.97 of the time (four runs), its 128 -> 256 at 24 px in 0.95-0.97, the others
  // even; same bits, as the order of each output's sum is unchanged. A wide tile's pixel
  // inputs are 4-8 times its weights (32-64 samples against 8 rows), so it goes pixel by
  // pixel, every block reusing the pixel's inputs: in runs of 16, dcgan28's D2 (batch 64)
  // took 1.05-1.16 of the time.
  const int64_t threads = gemm_threads_for(2 * int64_t(conv.pair_start[conv.out_pixels]) * conv.groups *
                                           conv.channels * conv.out_channels * conv.batch);
  const int64_t items_per_pixel = conv.groups * blocks;
  parallel_for_threads(conv.out_pixels * items_per_pixel, 1, threads, [&](int64_t begin, int64_t end) {
    const int64_t first_pixel = begin / items_per_pixel, end_pixel = (end - 1) / items_per_pixel + 1;
    for (int64_t p0 = first_pixel; p0 < end_pixel; p0 += Shape::run_pixels)
      for (int64_t b = 0; b < items_per_pixel; ++b)
        for (int64_t p = p0; p < std::min(end_pixel, p0 + Shape::run_pixels); ++p) {
          const int64_t item = p * items_per_pixel + b;
          if (item < begin || item >= end) continue;  // the thread's first or last pixel, shared with a neighbour
          const int64_t group = b / blocks, first = conv.pair_start[p], pairs = conv.pair_start[p + 1] - first;
          const float* weights = packed.data() + b * conv.taps * conv.channels * R;
          const float* x = conv.x + group * conv.channels * conv.batch;
          const int64_t o0 = group * conv.out_channels + b % blocks * R;
          float* y = conv.y + (p * conv.groups * conv.out_channels + o0) * conv.batch;
          const int64_t rows = std::min(R, conv.out_channels - b % blocks * R);
          for (int64_t n0 = 0; n0 < full; n0 += N)
            tile<Shape, false>(conv, weights, x + n0, conv.in_pixel + first, conv.tap + first, pairs, y + n0, rows,
                               last.live);
          if (tail)
            tile<Shape, true>(conv, weights, x + full, conv.in_pixel + first, conv.tap + first, pairs, y + full, rows,
                              last.live);
        }
  });
}

// The weight gradient's tile: g[t, c0 + r, o0 : o0 + 32] for r < 8, (+)= its sum over
// `pairs` (out_pixel, in_pixel) of x[q, c0 + r, :] . gy[p, :, o0 : o0 + 32], the batch
// being the depth: eight broadcasts from x's rows and two vectors of gy per sample. Rows
// past the last channel (r >= rows) repeat the last one and are not stored; in the last
// block of output channels (kTail), the lanes past its end are masked off.
template <bool kTail>
__attribute__((target("avx512f"))) void weight_grad_tile(const DirectWeightGrad& grad, const int32_t* out_pixel,
                                                          const int32_t* in_pixel, int64_t pairs, int64_t c0,
                                                          int64_t rows, int64_t o0, float* g, bool first,
                                                          const __mmask16 (&live)[2]) {
  const __mmask16 live0 = live[0], live1 = live[1];
  __m512 acc[kRows][2];
#pragma GCC unroll 8
  for (int64_t r = 0; r < kRows; ++r) {
    acc[r][0] = first || r >= rows ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live0, g + r * grad.out_channels);
    acc[r][1] = first || r >= rows ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live1, g + r * grad.out_channels + 16);
  }
  const int64_t batch = grad.batch, o_step = grad.out_channels;
  for (int64_t k = 0; k < pairs; ++k) {
    const float* a[kRows];
    for (int64_t r = 0; r < kRows; ++r) a[r] = grad.x + (in_pixel[k] * grad.channels + c0 + std::min(r, rows - 1)) * batch;
    const float* b = grad.gy + int64_t(out_pixel[k]) * batch * o_step + o0;
    for (int64_t n = 0; n < batch; ++n, b += o_step) {
      const __m512 b0 = kTail ? _mm512_maskz_loadu_ps(live0, b) : _mm512_loadu_ps(b);
      const __m512 b1 = kTail ? _mm512_maskz_loadu_ps(live1, b + 16) : _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
      for (int64_t r = 0; r < kRows; ++r) {
        const __m512 ar = _mm512_set1_ps(a[r][n]);
        acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
      }
    }
  }
#pragma GCC unroll 8
  for (int64_t r = 0; r < kRows; ++r) {  // unrolled, as in tile()
    if (r >= rows) break;
    _mm512_mask_storeu_ps(g + r * o_step, live0, acc[r][0]);
    _mm512_mask_storeu_ps(g + r * o_step + 16, live1, acc[r][1]);
  }
}

}  // namespace

void conv_direct(const DirectConv& conv) {
  if (!gemm_supported()) throw std::runtime_error("conv_direct needs a CPU with AVX-512F");
  if (conv.batch <= NarrowTile::samples) {
    conv_direct_tiled<NarrowTile>(conv);
  } else {
    conv_direct_tiled<WideTile>(conv);
  }
}

void conv_direct_weight_grad(const DirectWeightGrad& grad) {
  if (!gemm_supported()) throw std::runtime_error("conv_direct_weight_grad needs a CPU with AVX-512F");
  const int64_t channel_blocks = (grad.channels + kRows - 1) / kRows;
  const int64_t full = grad.out_channels / kCols * kCols, tail = grad.out_channels - full;
  const TailMasks whole(kCols), last(tail);
  // Each thread takes whole blocks of channels (its own rows of g) and goes over every
  // pair. Run by run (a few output pixels at a time, for every tap), so that the slice of
  // gy that a run reads stays in L2 while every tap and block of channels passes over it.
  const int64_t threads = gemm_threads_for(2 * int64_t(grad.run_start[grad.taps * grad.chunks]) * grad.channels *
                                           grad.out_channels * grad.batch);
  parallel_for_threads(channel_blocks, 1, threads, [&](int64_t begin, int64_t end) {
    for (int64_t j = 0; j < grad.chunks; ++j)
      for (int64_t t = 0; t < grad.taps; ++t) {
        const int64_t first = grad.run_start[t * grad.chunks + j], pairs = grad.run_start[t * grad.chunks + j + 1] - first;
        const int32_t* out_pixel = grad.out_pixel + first;
        const int32_t* in_pixel = grad.in_pixel + first;
        for (int64_t b = begin; b < end; ++b) {
          const int64_t c0 = b * kRows, rows = std::min(kRows, grad.channels - c0);
          float* g = grad.g + (t * grad.channels + c0) * grad.out_channels;
          for (int64_t o0 = 0; o0 < full; o0 += kCols)
            weight_grad_tile<false>(grad, out_pixel, in_pixel, pairs, c0, rows, o0, g + o0, j == 0, whole.live);
          if (tail)
            weight_grad_tile<true>(grad, out_pixel, in_pixel, pairs, c0, rows, full, g + full, j == 0, last.live);
        }
      }
  });
}

}  // namespace ganforge

#else  // not x86-64: ops/conv_gathered.py takes this path only where gemm_supported()

namespace ganforge {

void conv_direct(const DirectConv&) { throw std::runtime_error("conv_direct needs an x86-64 CPU with AVX-512F"); }

void conv_direct_weight_grad(const DirectWeightGrad&) {
  throw std::runtime_error("conv_direct_weight_grad needs an x86-64 CPU with AVX-512F");
}

}  // namespace ganforge

#endif

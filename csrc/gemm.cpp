// A float32 GEMM with AVX-512 kernels: C (+)= A B, every operand with arbitrary strides.
//
// Why ganforge carries its own: the convolutions' GEMMs are most of a GAN's training
// step on a CPU, and NumPy's BLAS is whatever OpenBLAS build and kernel set the machine
// gives it (the development machine's environment pins OpenBLAS to its AVX2 kernels,
// half the width of the CPU's AVX-512). This one always uses the CPU's widest units and
// reads its operands through strides, so transposed and batch-interleaved views need no
// copies.
//
// The structure is the classic one of BLIS/GotoBLAS (Van Zee & van de Geijn, "BLIS: A
// Framework for Rapidly Instantiating BLAS Functionality", 2015):
//
//   for each block of NC columns of B and C
//     for each block of KC rows of B         pack B's block into NR-wide panels (fits L2)
//       for each block of MC rows of A       pack A's block into MR-high panels (fits L2)
//         for each NR panel, each MR panel   the micro-kernel: an MR x NR tile of C kept
//                                            in registers, one rank-1 update per k
//
// Packing makes every operand layout look the same to the micro-kernel and lays the
// data out in the exact order it is read. Edge tiles are zero-padded in the packs, and
// their results go through a small buffer. Besides strided matrices, an operand can be
// gathered from an image through index tables, and C scattered the same way (gemm.h):
// that is how the convolutions run as one GEMM each, with no im2col buffer, their
// packing done with AVX-512 masked loads where 16 columns are neighbours and gathers
// where they are not.
#include "gemm.h"

#include <algorithm>
#include <climits>
#include <numeric>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <vector>

#include "parallel.h"

namespace ganforge {
namespace {

// out (cols x middle x rows) = in (rows x middle x cols) with its first and last axes
// swapped: for each m, the rows x cols matrix in[:, m, :] transposed into out[:, m, :],
// in blocks of kBlock x kBlock shared between the GEMM's threads. A full block goes
// through a buffer in L1, in tiles of kTile x kTile (full_tile(in, in_stride, out,
// out_stride)), and is then written out one output row at a time. Writing each tile's
// 16 rows straight into the output, as a first version did, was half as fast on the
// batch-innermost layouts of dcgan64's activations (3.2 against 5.6 ms for a 32 MB array
// of (128, 64, 1024), measured outside ganforge): with row strides that are powers of two,
// all of a tile's output rows fall into the same cache sets, and their lines were
// evicted before the neighbouring tiles filled them. Partial blocks go tile by tile, and
// their edges element by element.
template <typename FullTile>
void transpose_tiles(const float* in, int64_t rows, int64_t middle, int64_t cols, float* out, FullTile full_tile) {
  constexpr int64_t kTile = 16, kBlock = 64;
  const int64_t block_rows = (rows + kBlock - 1) / kBlock, block_cols = (cols + kBlock - 1) / kBlock;
  const int64_t in_stride = middle * cols, out_stride = middle * rows, blocks = block_rows * block_cols;
  parallel_for_threads(middle * blocks, 16, gemm_threads(), [&](int64_t begin, int64_t end) {
    alignas(64) float buffer[kBlock * kBlock];
    for (int64_t b = begin; b < end; ++b) {
      const float* src = in + b / blocks * cols;
      float* dst = out + b / blocks * rows;
      const int64_t i0 = b % blocks / block_cols * kBlock, j0 = b % block_cols * kBlock;
      const int64_t i1 = std::min(rows, i0 + kBlock), j1 = std::min(cols, j0 + kBlock);
      if (i1 - i0 == kBlock && j1 - j0 == kBlock) {
        for (int64_t i = 0; i < kBlock; i += kTile)
          for (int64_t j = 0; j < kBlock; j += kTile)
            full_tile(src + (i0 + i) * in_stride + j0 + j, in_stride, buffer + j * kBlock + i, kBlock);
        for (int64_t j = 0; j < kBlock; ++j) std::copy_n(buffer + j * kBlock, kBlock, dst + (j0 + j) * out_stride + i0);
        continue;
      }
      for (int64_t ti = i0; ti < i1; ti += kTile)
        for (int64_t tj = j0; tj < j1; tj += kTile) {
          if (ti + kTile <= i1 && tj + kTile <= j1) {
            full_tile(src + ti * in_stride + tj, in_stride, dst + tj * out_stride + ti, out_stride);
            continue;
          }
          for (int64_t i = ti; i < std::min(i1, ti + kTile); ++i)
            for (int64_t j = tj; j < std::min(j1, tj + kTile); ++j) dst[j * out_stride + i] = src[i * in_stride + j];
        }
    }
  });
}

void transpose_tile_scalar(const float* in, int64_t in_stride, float* out, int64_t out_stride) {
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < 16; ++j) out[j * out_stride + i] = in[i * in_stride + j];
}

}  // namespace
}  // namespace ganforge

// GANFORGE_PORTABLE_ONLY builds what other CPUs get (no kernel; a test compiles it so).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(GANFORGE_PORTABLE_ONLY)
#include <immintrin.h>

namespace ganforge {
namespace {

// (8 x 32 measured best on the development machine's AVX-512 CPU: 12 x 32 and 14 x 32 tiles
// ran 10-20% slower.)
constexpr int64_t MR = 8;     // rows of the register tile (broadcast from A)
constexpr int64_t NR = 32;    // columns of the register tile (two 16-float vectors of B)
constexpr int64_t KC = 256;   // depth of a packed block: an MR x KC and KC x NR sliver fit in L1
constexpr int64_t MC = 128;   // rows of A packed at a time (MC x KC floats in L2)
// B's packed block in L2, not in L3 as BLIS has it (NC was 3072, 3 MB): on an Intel Xeon
// with 2 MB of L2 per core the micro-kernel ran at 106 GFLOP/s on one core with its B
// panels coming from a 3 MB block, 138 from 1 MB and 148 from 512 KB (163 all in L1; a
// C++ loop outside ganforge), and the forwards of SRGAN's 3x3 layers on the GEMM took
// 0.84-0.93 of their time with 1024. 640 helped the forwards a little more but cost the
// transposed convolutions 3% (their A is packed once per block of B).
constexpr int64_t NC = 1024;  // columns of B packed at a time (KC x NC floats: 1 MB)
// The order a thread's register tiles go in. Down a column of tiles (the classic order),
// a panel of B stays in L1 for all of A's panels; along a row of tiles, each of the tile's
// 8 rows of C is written front to back, where the prefetcher follows. Down a column, a
// block of MC (128) rows writes 128 rows of C at once, each line a miss, and that costs
// more than B's panels coming from L2, unless the tiles add into C (a transposed
// convolution's scattered sums: 1.01-1.04 of the time along rows) or the block is
// shallow, where storing dominates whatever the rows. Along rows, in turns against down
// columns (2026-12-07, Intel Xeon with AMX): SRGAN's dense weight gradient (1024 x 18432,
// a depth of 16) 2.9-3.0 ms against 12.0-12.2; the 96 px step 0.982 and 1/1.026 for blocks
// of 128 rows, CycleGAN's at batch 4 0.948 and 1/1.048, batch 1 0.962, Fashion-MNIST
// SRGAN 0.995, dcgan64 1.003. A block of fewer rows stays down columns: with 64 (SRGAN's
// residual layers) along rows took 1.02-1.09 of the time.
constexpr int64_t kShallowDepth = 48;
static_assert(MC % MR == 0, "A's packed block holds whole MR-high panels");

struct Matrix {  // a strided view: element (i, j) is data[i * rows + j * cols]
  const float* data;
  int64_t rows, cols;
  float at(int64_t i, int64_t j) const { return data[i * rows + j * cols]; }
};

using Gathered = GatheredOperand;  // gemm.h

// A gathered operand's rows (a convolution's kernel taps) lie far apart in its image, in
// a pattern the hardware's prefetcher does not follow, and packing it waited on the
// loads (80-90% of the packing time, measured with perf). So the packing asks for what
// it will load next ahead of time: B's row kPrefetchRows ahead, and A's run of depths
// kPrefetchDepth ahead (distances measured best on dcgan28's layers; the packing's share
// of a layer's time halved).
constexpr int64_t kPrefetchRows = 4, kPrefetchDepth = 32;

inline void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

// The offsets first, first + 1, ..., first + 15.
__attribute__((target("avx512f"))) inline __m512i consecutive_from(int32_t first) {
  return _mm512_add_epi32(_mm512_set1_epi32(first), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                                       14, 15));
}

// The offsets first, first + 2, ..., first + 30: a stride-2 layer's run along a row.
__attribute__((target("avx512f"))) inline __m512i two_apart_from(int32_t first) {
  return _mm512_add_epi32(_mm512_set1_epi32(first), _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                                                       26, 28, 30));
}

// The lanes of such a run as the masks of two 16-float vectors from its start: lane l's
// float is the 2l-th, so bit l goes to bit 2l of the first mask (l < 8) or of the second.
struct TwoApartMasks {
  __mmask16 first, second;
};
__attribute__((target("bmi2"))) inline TwoApartMasks two_apart_masks(__mmask16 lanes) {
  return {__mmask16(_pdep_u32(lanes & 0xFFu, 0x5555u)), __mmask16(_pdep_u32(lanes >> 8, 0x5555u))};
}

// Where C's elements go. at(i, j) is the address of element (i, j), or null for an
// element that is dropped.
struct MatrixOut {  // a strided matrix
  float* data;
  int64_t rows, cols;
  float* at(int64_t i, int64_t j) const { return data + i * rows + j * cols; }
  // Whether the MR x NR tile at (i, j) has contiguous rows row_step apart.
  bool is_block(int64_t, int64_t, int64_t& row_step) const {
    row_step = rows;
    return cols == 1;
  }
};

// Element (i, j) at data[row.offset[i] + col.offset[j]], dropped when the pixel
// (row.y[i] + col.y[j], row.x[i] + col.x[j]) lies outside height x width. With
// `row_group` > 0, several elements may land on one place (a transposed convolution
// adding its kernel taps into the output, a fused col2im): they are all added, and
// threads split C only between groups of row_group rows (one output channel's taps), so
// that no two threads ever write the same place.
struct GatheredOut {
  float* data;
  GatherAxis row, col;
  int64_t height, width, row_group, col_group;
  bool checked;  // whether any element can fall outside the image
  float* at(int64_t i, int64_t j) const {
    const uint32_t y = uint32_t(row.y[i] + col.y[j]), x = uint32_t(row.x[i] + col.x[j]);
    return y < uint64_t(height) && x < uint64_t(width) ? data + row.offset[i] + col.offset[j] : nullptr;
  }
  bool is_block(int64_t i, int64_t j, int64_t& row_step) const {
    if (checked) return false;
    row_step = row.offset[i + 1] - row.offset[i];
    for (int64_t r = 2; r < MR; ++r)
      if (row.offset[i + r] - row.offset[i] != r * row_step) return false;
    return std::adjacent_find(col.offset + j, col.offset + j + NR, [](int32_t a, int32_t b) { return b != a + 1; }) ==
           col.offset + j + NR;
  }
};

// A 16 x 16 tile transposed in registers: interleave 32-bit, then 64-bit elements of row
// pairs, then 128-bit lanes twice.
__attribute__((target("avx512f"))) void transpose_tile_avx512(const float* in, int64_t in_stride, float* out,
                                                               int64_t out_stride) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * in_stride);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
      t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    _mm512_storeu_ps(out + j * out_stride, _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88));
    _mm512_storeu_ps(out + (j + 8) * out_stride, _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd));
  }
}

// A's rows [i0, i0+m) x columns [k0, k0+kc) into MR-high panels, each k-major:
// panel p holds A[i0 + p*MR + r, k0 + k] at p*MR*kc + k*MR + r, zero past the last row.
template <typename Operand>
void pack_a_any(const Operand& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* out) {
  for (int64_t p = 0; p < m; p += MR) {
    const int64_t rows = std::min(MR, m - p);
    for (int64_t k = 0; k < kc; ++k) {
      int64_t r = 0;
      for (; r < rows; ++r) out[k * MR + r] = a.at(i0 + p + r, k0 + k);
      for (; r < MR; ++r) out[k * MR + r] = 0.0f;
    }
    out += MR * kc;
  }
}

template <typename Operand>
void pack_a(const Operand& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* out) {
  pack_a_any(a, i0, m, k0, kc, out);
}

// out[l * 8 + r] = row[r][l]: eight rows of 16 floats transposed in registers. Pairs of
// rows are interleaved, then pairs of pairs, after which each 128-bit lane holds one
// column of four rows; the lanes are then put in column order.
__attribute__((target("avx512f"))) inline void transpose_8x16(const __m512 (&row)[8], float* out) {
  __m512 pairs[8];
  for (int i = 0; i < 4; ++i) {
    pairs[2 * i] = _mm512_unpacklo_ps(row[2 * i], row[2 * i + 1]);      // lane j: columns 4j, 4j+1 of 2 rows
    pairs[2 * i + 1] = _mm512_unpackhi_ps(row[2 * i], row[2 * i + 1]);  // lane j: columns 4j+2, 4j+3
  }
  // column[h][c], lane j: column 4j + c of rows 4h to 4h + 3
  __m512 column[2][4];
  for (int h = 0; h < 2; ++h) {
    const __m512d lo_a = _mm512_castps_pd(pairs[4 * h]), lo_b = _mm512_castps_pd(pairs[4 * h + 2]);
    const __m512d hi_a = _mm512_castps_pd(pairs[4 * h + 1]), hi_b = _mm512_castps_pd(pairs[4 * h + 3]);
    column[h][0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo_a, lo_b));
    column[h][1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo_a, lo_b));
    column[h][2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi_a, hi_b));
    column[h][3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi_a, hi_b));
  }
  // whole[c][0]: column c, then column 4 + c, all eight rows of each; whole[c][1]: 8 + c, 12 + c
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  __m512 whole[4][2];
  for (int c = 0; c < 4; ++c) {
    whole[c][0] = _mm512_permutex2var_ps(column[0][c], lo, column[1][c]);  // columns c, 4 + c
    whole[c][1] = _mm512_permutex2var_ps(column[0][c], hi, column[1][c]);  // columns 8 + c, 12 + c
  }
  // output vector t holds columns 2t and 2t + 1
  for (int half = 0; half < 2; ++half)
    for (int c = 0; c < 4; c += 2) {
      const int t = 4 * half + c / 2;  // columns 8 half + c, 8 half + c + 1
      _mm512_storeu_ps(out + 16 * t, _mm512_shuffle_f32x4(whole[c][half], whole[c + 1][half], 0x44));
      _mm512_storeu_ps(out + 16 * (t + 2), _mm512_shuffle_f32x4(whole[c][half], whole[c + 1][half], 0xEE));
    }
}

// Whether rows i, ..., i + MR - 1 of a gathered operand lie at consecutive offsets and at
// one pixel position (so that one bounds check holds for the whole panel column).
bool rows_are_contiguous(const GatherAxis& row, int64_t i) {
  for (int64_t r = 1; r < MR; ++r)
    if (row.offset[i + r] != row.offset[i] + r || row.y[i + r] != row.y[i] || row.x[i + r] != row.x[i]) return false;
  return true;
}

// The same for a gathered A: sixteen consecutive depths of a row at a time where the
// column offsets allow (one masked load per row, then a transpose), otherwise two
// k-steps of the panel (16 floats) per AVX-512 gather, lane l reading row l % 8 at depth l / 8.
__attribute__((target("avx512f"))) void pack_a_gathered(const Gathered& a, int64_t i0, int64_t m, int64_t k0,
                                                         int64_t kc, float* out) {
  static_assert(MR == 8, "two k-steps of an 8-row panel fill one 16-lane vector");
  const __m512i lane_row = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i height = _mm512_set1_epi32(int32_t(a.height)), width = _mm512_set1_epi32(int32_t(a.width));
  for (int64_t p = 0; p < m; p += MR) {
    const int64_t rows = std::min(MR, m - p);
    if (rows == MR && rows_are_contiguous(a.row, i0 + p)) {
      // Eight neighbouring floats at every depth (W^T in a transposed convolution, where
      // the rows are kernel taps and the depth the input channels): one load per k-step.
      const int64_t i = i0 + p;
      for (int64_t k = 0; k < kc; ++k) {
        const uint32_t y = uint32_t(a.row.y[i] + a.col.y[k0 + k]), x = uint32_t(a.row.x[i] + a.col.x[k0 + k]);
        const bool inside = y < uint64_t(a.height) && x < uint64_t(a.width);
        _mm256_storeu_ps(out + k * MR, inside ? _mm256_loadu_ps(a.data + a.row.offset[i] + a.col.offset[k0 + k])
                                              : _mm256_setzero_ps());
      }
      out += MR * kc;
      continue;
    }
    const __mmask16 live_rows = __mmask16(((1u << rows) - 1) * 0x0101u);
    // Each lane's row, clamped to the last real one so that dead lanes read valid entries.
    const __m512i row = _mm512_min_epi32(_mm512_add_epi32(lane_row, _mm512_set1_epi32(int32_t(i0 + p))),
                                         _mm512_set1_epi32(int32_t(i0 + p + rows - 1)));
    const __m512i row_offset = _mm512_i32gather_epi32(row, a.row.offset, 4);
    const __m512i row_y = _mm512_i32gather_epi32(row, a.row.y, 4);
    const __m512i row_x = _mm512_i32gather_epi32(row, a.row.x, 4);
    for (int64_t k = 0; k < kc;) {
      // Sixteen depths at consecutive offsets (a batch-innermost image): each row's run is
      // one masked load, and the 8 x 16 block is transposed into the panel.
      if (k + 16 <= kc) {
        const __m512i run = _mm512_loadu_si512(a.col.offset + k0 + k);
        if (_mm512_cmpeq_epi32_mask(run, consecutive_from(a.col.offset[k0 + k])) == 0xFFFF) {
          const __m512i run_y = _mm512_loadu_si512(a.col.y + k0 + k);
          const __m512i run_x = _mm512_loadu_si512(a.col.x + k0 + k);
          __m512 block[MR];
          for (int64_t r = 0; r < MR; ++r) {
            const int64_t i = i0 + p + std::min(r, rows - 1);
            const __mmask16 inside =
                (r < rows ? 0xFFFF : 0) &
                _mm512_cmplt_epu32_mask(_mm512_add_epi32(run_y, _mm512_set1_epi32(a.row.y[i])), height) &
                _mm512_cmplt_epu32_mask(_mm512_add_epi32(run_x, _mm512_set1_epi32(a.row.x[i])), width);
            block[r] = _mm512_maskz_loadu_ps(inside, a.data + a.row.offset[i] + a.col.offset[k0 + k]);
            if (k + 16 + kPrefetchDepth <= kc)
              prefetch(a.data + a.row.offset[i] + a.col.offset[k0 + k + kPrefetchDepth]);
          }
          transpose_8x16(block, out + k * MR);
          k += 16;
          continue;
        }
      }
      const int64_t k_a = k0 + k, k_b = k0 + std::min(k + 1, kc - 1);
      const __mmask16 live = k + 1 < kc ? live_rows : __mmask16(live_rows & 0x00FF);
      const __m512i col_offset = _mm512_mask_set1_epi32(_mm512_set1_epi32(a.col.offset[k_a]), 0xFF00, a.col.offset[k_b]);
      const __m512i col_y = _mm512_mask_set1_epi32(_mm512_set1_epi32(a.col.y[k_a]), 0xFF00, a.col.y[k_b]);
      const __m512i col_x = _mm512_mask_set1_epi32(_mm512_set1_epi32(a.col.x[k_a]), 0xFF00, a.col.x[k_b]);
      const __mmask16 inside = live &
                               _mm512_cmplt_epu32_mask(_mm512_add_epi32(row_y, col_y), height) &
                               _mm512_cmplt_epu32_mask(_mm512_add_epi32(row_x, col_x), width);
      const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), inside, _mm512_add_epi32(row_offset, col_offset),
                                                a.data, 4);
      if (k + 1 < kc) {
        _mm512_storeu_ps(out + k * MR, v);
      } else {
        _mm256_storeu_ps(out + k * MR, _mm512_castps512_ps256(v));
      }
      k += 2;
    }
    out += MR * kc;
  }
}

template <>
void pack_a(const Gathered& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* out) {
  pack_a_gathered(a, i0, m, k0, kc, out);
}

// The same for a strided A, in vector loads where its layout allows: a row-major A's 8 rows
// sixteen depths at a time, transposed in registers; a column-major A's (a transposed
// matrix, as in a weight gradient gy^T x) 8 rows lie side by side at every depth. The
// scalar loop packed at about one float a cycle, 15% of a 256 x 256 x 256 product's time.
__attribute__((target("avx512f"))) void pack_a_strided(const Matrix& a, int64_t i0, int64_t m, int64_t k0,
                                                        int64_t kc, float* out) {
  if (a.cols != 1 && a.rows != 1) return pack_a_any(a, i0, m, k0, kc, out);  // neither layout: element by element
  for (int64_t p = 0; p < m; p += MR, out += MR * kc) {
    const float* panel = a.data + (i0 + p) * a.rows + k0 * a.cols;  // A[i0 + p, k0]
    if (m - p < MR) {  // the last, partial panel, padded with zeros
      pack_a_any(a, i0 + p, m - p, k0, kc, out);
    } else if (a.rows == 1) {
      for (int64_t k = 0; k < kc; ++k) _mm256_storeu_ps(out + k * MR, _mm256_loadu_ps(panel + k * a.cols));
    } else {
      int64_t k = 0;
      for (; k + 16 <= kc; k += 16) {
        __m512 block[MR];
        for (int64_t r = 0; r < MR; ++r) block[r] = _mm512_loadu_ps(panel + r * a.rows + k);
        transpose_8x16(block, out + k * MR);
      }
      for (; k < kc; ++k)
        for (int64_t r = 0; r < MR; ++r) out[k * MR + r] = panel[r * a.rows + k];
    }
  }
}

template <>
void pack_a(const Matrix& a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* out) {
  pack_a_strided(a, i0, m, k0, kc, out);
}

// B's rows [k0, k0+kc) x columns [j0, j0+n) into NR-wide panels, each k-major: panel p
// holds B[k0 + k, j0 + p*NR + c] at p*NR*kc + k*NR + c, zero past the last column.
template <typename Operand>
void pack_b_any(const Operand& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* out) {
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t p = 0; p < n; p += NR) {
      float* dst = out + p * kc + k * NR;
      const int64_t cols = std::min(NR, n - p);
      int64_t c = 0;
      for (; c < cols; ++c) dst[c] = b.at(k0 + k, j0 + p + c);
      for (; c < NR; ++c) dst[c] = 0.0f;
    }
}

// The same for a strided B, with loops that follow its layout so that it is read in
// contiguous runs: along rows for a row-major B, down columns for a transposed one.
template <typename Operand>
void pack_b(const Operand& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* out) {
  pack_b_any(b, k0, kc, j0, n, out);
}

__attribute__((target("avx512f"))) void pack_b_strided(const Matrix& b, int64_t k0, int64_t kc, int64_t j0,
                                                        int64_t n, float* out) {
  const int64_t full = n / NR * NR;
  if (b.rows == 1 && b.cols != 1) {  // B^T row-major (x W^T): 16 x 16 tiles transposed in registers
    const int64_t whole = kc / 16 * 16;
    for (int64_t p = 0; p < full; p += NR)
      for (int64_t c = 0; c < NR; c += 16) {
        const float* src = b.data + (j0 + p + c) * b.cols + k0;
        float* dst = out + p * kc + c;
        for (int64_t k = 0; k < whole; k += 16) transpose_tile_avx512(src + k, b.cols, dst + k * NR, NR);
        for (int64_t q = 0; q < 16; ++q)
          for (int64_t k = whole; k < kc; ++k) dst[k * NR + q] = src[q * b.cols + k];
      }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = b.data + (k0 + k) * b.rows + j0 * b.cols;
      for (int64_t p = 0; p < full; p += NR) {
        float* dst = out + p * kc + k * NR;
        if (b.cols == 1) {
          for (int64_t c = 0; c < NR; ++c) dst[c] = src[p + c];
        } else {
          for (int64_t c = 0; c < NR; ++c) dst[c] = src[(p + c) * b.cols];
        }
      }
    }
  }
  if (full < n) pack_b_any(b, k0, kc, j0 + full, n - full, out + full * kc);  // the last, partial panel
}

template <>
void pack_b(const Matrix& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* out) {
  pack_b_strided(b, k0, kc, j0, n, out);
}

// The same for a gathered B, sixteen columns at a time with AVX-512's masked gathers: a
// column's lanes outside the image (or past n) read nothing and pack a zero.
__attribute__((target("avx512f,bmi2"))) void pack_b_gathered(const Gathered& b, int64_t k0, int64_t kc, int64_t j0,
                                                         int64_t n, float* out) {
  const __m512i height = _mm512_set1_epi32(int32_t(b.height)), width = _mm512_set1_epi32(int32_t(b.width));
  for (int64_t p = 0; p < n; p += 16) {
    const int64_t lanes = std::min<int64_t>(16, n - p);
    const __mmask16 live = __mmask16((1u << lanes) - 1);
    const __m512i offset = _mm512_maskz_loadu_epi32(live, b.col.offset + j0 + p);
    const __m512i y = _mm512_maskz_loadu_epi32(live, b.col.y + j0 + p);
    const __m512i x = _mm512_maskz_loadu_epi32(live, b.col.x + j0 + p);
    float* dst = out + (p / NR) * NR * kc + p % NR;
    // Sixteen consecutive offsets (a run along an image row, or a plain matrix's row) are
    // one masked load instead of a gather.
    const bool consecutive =
        _mm512_mask_cmpeq_epi32_mask(live, offset, consecutive_from(b.col.offset[j0 + p])) == live;
    // Sixteen offsets two apart (a stride-2 convolution's run along an output row) are two
    // masked loads and a pick of the even lanes: a gather ran SRGAN's 64-channel stride-2
    // layer at 96 px 2.6x slower than PyTorch.
    const bool every_other =
        !consecutive && _mm512_mask_cmpeq_epi32_mask(live, offset, two_apart_from(b.col.offset[j0 + p])) == live;
    const __m512i evens = two_apart_from(0);  // lanes 0, 2, ..., 30 of two vectors
    for (int64_t k = k0; k < k0 + kc; ++k, dst += NR) {
      const __mmask16 inside =
          live & _mm512_cmplt_epu32_mask(_mm512_add_epi32(y, _mm512_set1_epi32(b.row.y[k])), height) &
          _mm512_cmplt_epu32_mask(_mm512_add_epi32(x, _mm512_set1_epi32(b.row.x[k])), width);
      if (consecutive) {
        if (k + kPrefetchRows < k0 + kc)
          prefetch(b.data + b.row.offset[k + kPrefetchRows] + b.col.offset[j0 + p]);
        _mm512_store_ps(dst, _mm512_maskz_loadu_ps(inside, b.data + b.row.offset[k] + b.col.offset[j0 + p]));
      } else if (every_other) {
        const float* run = b.data + b.row.offset[k] + b.col.offset[j0 + p];
        const TwoApartMasks mask = two_apart_masks(inside);
        const __m512 first = _mm512_maskz_loadu_ps(mask.first, run), second = _mm512_maskz_loadu_ps(mask.second, run + 16);
        _mm512_store_ps(dst, _mm512_permutex2var_ps(first, evens, second));
      } else {
        const __m512i at = _mm512_add_epi32(offset, _mm512_set1_epi32(b.row.offset[k]));
        _mm512_store_ps(dst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), inside, at, b.data, 4));
      }
    }
  }
  if (n % NR && n % NR <= 16) {  // the empty second half of the last panel
    float* dst = out + (n / NR) * NR * kc + 16;
    for (int64_t k = 0; k < kc; ++k) _mm512_store_ps(dst + k * NR, _mm512_setzero_ps());
  }
}

template <>
void pack_b(const Gathered& b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* out) {
  pack_b_gathered(b, k0, kc, j0, n, out);
}

// The epilogue (gemm.h) on sixteen sums of row-major C's columns j, ..., j + 15 (the
// lanes of `live`): + bias, then the leaky_relu kernel's max(0, v) + slope min(0, v).
__attribute__((target("avx512f"))) inline __m512 epilogue_of(__m512 v, const Epilogue& e, int64_t j,
                                                             __mmask16 live) {
  if (e.bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(live, e.bias + j));
  if (e.activate) {
    const __m512 zero = _mm512_setzero_ps(), positive = _mm512_max_ps(zero, v);
    v = e.slope != 0.0f ? _mm512_fmadd_ps(_mm512_set1_ps(e.slope), _mm512_min_ps(zero, v), positive) : positive;
  }
  return v;
}

// The MR x NR tile C = (or +=) sum over k of a[:, k] b[k, :], all of it in 16 registers.
// a is a packed panel; b's rows are b_step apart (NR in a packed panel). With an epilogue
// (the tile's last block of depth), its bias, from column j on, and activation are
// applied in the registers before the store.
__attribute__((target("avx512f"))) void micro_kernel(int64_t kc, const float* a, const float* b, int64_t b_step,
                                                     float* c, int64_t c_rows, bool accumulate,
                                                     const Epilogue* epilogue = nullptr, int64_t j = 0) {
  __m512 acc[MR][2];
#pragma GCC unroll 8
  for (int64_t r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
    for (int64_t r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
    a += MR;
    b += b_step;
  }
#pragma GCC unroll 8
  for (int64_t r = 0; r < MR; ++r) {
    float* row = c + r * c_rows;
    if (accumulate) {
      acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(row));
      acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(row + 16));
    }
    if (epilogue) {
      for (int h = 0; h < 2; ++h) acc[r][h] = epilogue_of(acc[r][h], *epilogue, j + 16 * h, 0xFFFF);
    }
    _mm512_storeu_ps(row, acc[r][0]);
    _mm512_storeu_ps(row + 16, acc[r][1]);
  }
}

// Adds (or writes) a finished MR x NR tile, of which rows x cols are real, into C.
template <typename Out>
void store_tile(const float* tile, const Out& c, int64_t i, int64_t j, int64_t rows, int64_t cols, bool add) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < cols; ++q)
      if (float* out = c.at(i + r, j + q)) *out = add ? *out + tile[r * NR + q] : tile[r * NR + q];
}

// A gathered output's tile, sixteen columns at a time: gather what is there, add, and
// scatter back, the lanes outside the image masked off. Within one row no two columns
// share a place (gemm.h), so the lanes of one scatter never collide.
__attribute__((target("avx512f,bmi2"))) void store_tile_checked(const float* tile, const GatheredOut& c, int64_t i,
                                                            int64_t j, int64_t rows, int64_t cols, bool add) {
  const __m512i height = _mm512_set1_epi32(int32_t(c.height)), width = _mm512_set1_epi32(int32_t(c.width));
  for (int64_t q = 0; q < cols; q += 16) {
    const __mmask16 live = __mmask16((1u << std::min<int64_t>(16, cols - q)) - 1);
    const __m512i col_offset = _mm512_maskz_loadu_epi32(live, c.col.offset + j + q);
    const __m512i col_y = _mm512_maskz_loadu_epi32(live, c.col.y + j + q);
    const __m512i col_x = _mm512_maskz_loadu_epi32(live, c.col.x + j + q);
    const bool consecutive = _mm512_mask_cmpeq_epi32_mask(live, col_offset, consecutive_from(c.col.offset[j + q])) == live;
    // Sixteen places two apart (a stride-2 transposed convolution adding a tap along an
    // output row): the tile's row spread over the even lanes of two vectors, added with
    // masked loads and stores, instead of a gather and a scatter (CycleGAN's 128 -> 64
    // channel upsampling at batch 4: 2.80 -> 2.17 ms).
    const bool every_other =
        !consecutive && _mm512_mask_cmpeq_epi32_mask(live, col_offset, two_apart_from(c.col.offset[j + q])) == live;
    const __m512i spread_first = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i spread_second = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (int64_t r = 0; r < rows; ++r) {
      const __mmask16 inside =
          live & _mm512_cmplt_epu32_mask(_mm512_add_epi32(col_y, _mm512_set1_epi32(c.row.y[i + r])), height) &
          _mm512_cmplt_epu32_mask(_mm512_add_epi32(col_x, _mm512_set1_epi32(c.row.x[i + r])), width);
      if (!inside) continue;
      if (consecutive) {  // sixteen neighbouring places: a (masked) load, add and store
        float* dst = c.data + c.row.offset[i + r] + c.col.offset[j + q];
        if (inside == 0xFFFF) {  // the common case, without the masks
          __m512 v = _mm512_loadu_ps(tile + r * NR + q);
          if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(dst));
          _mm512_storeu_ps(dst, v);
          continue;
        }
        __m512 v = _mm512_maskz_loadu_ps(inside, tile + r * NR + q);
        if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(inside, dst));
        _mm512_mask_storeu_ps(dst, inside, v);
        continue;
      }
      if (every_other) {
        float* dst = c.data + c.row.offset[i + r] + c.col.offset[j + q];
        const TwoApartMasks mask = two_apart_masks(inside);
        const __m512 v = _mm512_loadu_ps(tile + r * NR + q);
        __m512 low = _mm512_permutexvar_ps(spread_first, v), high = _mm512_permutexvar_ps(spread_second, v);
        if (add) {
          low = _mm512_add_ps(low, _mm512_maskz_loadu_ps(mask.first, dst));
          high = _mm512_add_ps(high, _mm512_maskz_loadu_ps(mask.second, dst + 16));
        }
        _mm512_mask_storeu_ps(dst, mask.first, low);
        _mm512_mask_storeu_ps(dst + 16, mask.second, high);
        continue;
      }
      const __m512i at = _mm512_add_epi32(col_offset, _mm512_set1_epi32(c.row.offset[i + r]));
      __m512 v = _mm512_loadu_ps(tile + r * NR + q);
      if (add) v = _mm512_add_ps(v, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), inside, at, c.data, 4));
      _mm512_mask_i32scatter_ps(c.data, inside, at, v, 4);
    }
  }
}

// The same for a gathered output, with a fast path where there are no bounds to check
// (a convolution's output): one
// contiguous run of columns at a time (a run ends where the column offsets jump, as at
// a sample boundary), so that the copies vectorize.
template <>
void store_tile(const float* tile, const GatheredOut& c, int64_t i, int64_t j, int64_t rows, int64_t cols, bool add) {
  if (c.checked) return store_tile_checked(tile, c, i, j, rows, cols, add);
  int64_t run_end[NR], runs = 0;
  for (int64_t q = 1; q <= cols; ++q)
    if (q == cols || c.col.offset[j + q] != c.col.offset[j + q - 1] + 1) run_end[runs++] = q;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t run = 0, q0 = 0; run < runs; q0 = run_end[run++]) {
      float* dst = c.data + c.row.offset[i + r] + c.col.offset[j + q0];
      const float* src = tile + r * NR + q0;
      const int64_t length = run_end[run] - q0;
      if (add) {
        for (int64_t q = 0; q < length; ++q) dst[q] += src[q];
      } else {
        for (int64_t q = 0; q < length; ++q) dst[q] = src[q];
      }
    }
}

// A scattered output's tile adds into places all over the image, which are mostly not in
// the cache: store_tile_checked spent three quarters of its time waiting for them (a
// transposed convolution's fused col2im, measured with perf). Asking for them, into L2,
// before the micro-kernel runs cut that by about a tenth; into L1 they did not stay.
template <typename Out>
void prefetch_tile(const Out&, int64_t, int64_t, int64_t, int64_t) {}

template <>
void prefetch_tile(const GatheredOut& c, int64_t i, int64_t j, int64_t rows, int64_t cols) {
  if (!c.checked) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < cols; q += 16)
      _mm_prefetch(reinterpret_cast<const char*>(c.data + c.row.offset[i + r] + c.col.offset[j + q]), _MM_HINT_T1);
}

// The epilogue (gemm.h) over C[i0:i0+m, j0:j0+n], element by element: for the edges of C
// that the micro-kernel leaves to store_tile, for a depth split's summed C, and for k = 0.
__attribute__((target("avx512f"))) void finish(const MatrixOut& c, int64_t i0, int64_t m, int64_t j0, int64_t n,
                                                const Epilogue& e) {
  for (int64_t i = i0; i < i0 + m; ++i)
    for (int64_t j = j0; j < j0 + n; ++j) {
      const __m512 v = epilogue_of(_mm512_set1_ps(*c.at(i, j)), e, j, 0x0001);
      *c.at(i, j) = _mm512_cvtss_f32(v);
    }
}

// Gathered outputs (the convolutions) take no epilogue.
void finish(const GatheredOut&, int64_t, int64_t, int64_t, int64_t, const Epilogue&) {}

// One thread's share: C[i0:i0+m, j0:j0+n] (+)= A[i0:i0+m, k0:k1] B[k0:k1, j0:j0+n].
template <typename A, typename B, typename Out>
void gemm_block(const A& a, const B& b, int64_t k0, int64_t k1, const Out& c, int64_t i0, int64_t m, int64_t j0,
                int64_t n, bool accumulate, const Epilogue& epilogue = Epilogue{}) {
  // When all of A's rows fit one packed block, each of B's elements is used by only a few
  // register tiles, and packing B would cost as much as the products: the micro-kernel then
  // reads a row-major B where it lies, and only the last, partial panel is packed. Not
  // when B's rows lie a multiple of 4 KB apart: a panel's rows then all fall into the same
  // few cache sets and evict each other (128 x 576 times 576 x 4096 ran at 123 GFLOP/s read
  // in place, 286 packed; 16 x 1024 times SRGAN's 1024 x 18432 weight, 68 against 115).
  constexpr int64_t kSetAliasing = 4096 / sizeof(float);  // a row stride of 4 KB, in floats
  bool direct_b = false;
  if constexpr (std::is_same_v<B, Matrix>) direct_b = b.cols == 1 && m <= MC && b.rows % kSetAliasing != 0;
  // B's columns in blocks of at most NC, as even as whole panels allow (576 columns as one
  // block, not 512 and a thin 64).
  const int64_t n_blocks = (n + NC - 1) / NC, nc_step = ((n + n_blocks - 1) / n_blocks + NR - 1) / NR * NR;
  const PackBuffer a_pack(MC * KC), b_pack(KC * (direct_b ? NR : nc_step));
  alignas(64) float edge[MR * NR];
  for (int64_t jc = 0; jc < n; jc += nc_step) {
    const int64_t nc = std::min(nc_step, n - jc), full = nc / NR * NR;
    for (int64_t pc = k0; pc < k1; pc += KC) {
      const int64_t kc = std::min(KC, k1 - pc);
      const bool add = accumulate || pc > k0;
      const Epilogue* last = pc + kc == k1 && epilogue.any() ? &epilogue : nullptr;  // C's sums complete
      if (!direct_b) {
        pack_b(b, pc, kc, j0 + jc, nc, b_pack.data());
      } else if (full < nc) {
        pack_b(b, pc, kc, j0 + jc + full, nc - full, b_pack.data());
      }
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = std::min(MC, m - ic);
        pack_a(a, i0 + ic, mc, pc, kc, a_pack.data());
        const auto tile = [&](int64_t jr, int64_t ir) {
          const int64_t cols = std::min(NR, nc - jr);
          const float* b_panel = b_pack.data() + (direct_b ? 0 : jr * kc);
          int64_t b_step = NR;
          if constexpr (std::is_same_v<B, Matrix>) {
            if (direct_b && jr < full) b_panel = b.data + pc * b.rows + j0 + jc + jr, b_step = b.rows;
          }
          const int64_t rows = std::min(MR, mc - ir), i = i0 + ic + ir, j = j0 + jc + jr;
          const float* a_panel = a_pack.data() + ir * kc;
          if (rows == MR && cols == NR) {  // straight into C where the whole tile is a strided block
            if (int64_t row_step; c.is_block(i, j, row_step)) {
              micro_kernel(kc, a_panel, b_panel, b_step, c.at(i, j), row_step, add, last, j);
              return;
            }
          }
          prefetch_tile(c, i, j, rows, cols);  // the tile's places, while its products are computed
          micro_kernel(kc, a_panel, b_panel, b_step, edge, NR, false);
          store_tile(edge, c, i, j, rows, cols, add);
          if (last) finish(c, i, rows, j, cols, *last);
        };
        if (kc <= kShallowDepth || (mc == MC && !accumulate)) {
          for (int64_t ir = 0; ir < mc; ir += MR)
            for (int64_t jr = 0; jr < nc; jr += NR) tile(jr, ir);
        } else {
          for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0; ir < mc; ir += MR) tile(jr, ir);
        }
      }
    }
  }
}

// C (+)= A B with the work shared between threads.
template <typename A, typename B, typename Out>
void gemm(int64_t m, int64_t n, int64_t k, const A& a, const B& b, const Out& c, bool accumulate,
          const Epilogue& epilogue = Epilogue{}) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          if (float* out = c.at(i, j)) *out = 0.0f;
    if (epilogue.any()) finish(c, 0, m, 0, n, epilogue);
    return;
  }
  // Threads take disjoint parts of the work, each packing its own operands. Splitting C's
  // columns makes every thread pack all of A, splitting its rows all of B, and splitting
  // the depth k costs a sum of per-thread copies of C; take the split that repeats the
  // least, among those that give every thread enough work.
  const int64_t threads = gemm_threads_for(2 * m * n * k);
  enum Split { kNone, kColumns, kRows, kDepth };
  Split split = kNone;
  int64_t least = INT64_MAX;
  // An output whose elements may land on one place splits only between row groups, or
  // column groups where it has them (a depth split would add every thread's copy of C
  // through that output's scattered, bounds-checked stores, one thread after another:
  // slower than one thread alone).
  int64_t row_unit = MR, col_unit = NR;
  bool overlapping = false, columns_split = true;
  if constexpr (std::is_same_v<Out, GatheredOut>) {
    overlapping = c.row_group > 0;
    if (overlapping) row_unit = std::lcm(MR, c.row_group), col_unit = c.col_group, columns_split = c.col_group > 0;
  }
  if (threads > 1)
    for (auto [option, extra, enough] : {std::tuple{kColumns, m * k, columns_split && n >= threads * col_unit},
                                         std::tuple{kRows, n * k, m >= threads * row_unit},
                                         std::tuple{kDepth, 2 * m * n, k >= threads * 64 && !overlapping}}) {
      if (enough && extra < least) split = option, least = extra;
    }
  if (split == kNone) {
    gemm_block(a, b, 0, k, c, 0, m, 0, n, accumulate, epilogue);
  } else if (split == kDepth) {
    // Thread 0 works in C itself, the others in their own (m x n) buffers, which are
    // added to C once they all finish.
    const int64_t chunk = (k + threads - 1) / threads;
    std::vector<std::vector<float>> partial(threads - 1, std::vector<float>(m * n));
    parallel_for_threads(threads, 1, threads, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t k0 = t * chunk, k1 = std::min(k, k0 + chunk);
        if (t == 0) {
          gemm_block(a, b, k0, k1, c, 0, m, 0, n, accumulate);
        } else if (k0 < k1) {
          gemm_block(a, b, k0, k1, MatrixOut{partial[t - 1].data(), n, 1}, 0, m, 0, n, false);
        }
      }
    });
    // Added tile by tile through store_tile, which knows C's layout and bounds.
    alignas(64) float tile[MR * NR];
    for (int64_t t = 1; t < threads && t * chunk < k; ++t)
      for (int64_t i = 0; i < m; i += MR)
        for (int64_t j = 0; j < n; j += NR) {
          const int64_t rows = std::min(MR, m - i), cols = std::min(NR, n - j);
          for (int64_t r = 0; r < rows; ++r)
            std::copy_n(partial[t - 1].data() + (i + r) * n + j, cols, tile + r * NR);
          store_tile(tile, c, i, j, rows, cols, true);
        }
    if (epilogue.any()) finish(c, 0, m, 0, n, epilogue);
  } else {
    const bool by_columns = split == kColumns;
    const int64_t step = by_columns ? col_unit : row_unit, extent = by_columns ? n : m;
    parallel_for_threads((extent + step - 1) / step, 1, threads, [&](int64_t begin, int64_t end) {
      const int64_t lo = begin * step, hi = std::min(extent, end * step);
      if (by_columns) {
        gemm_block(a, b, 0, k, c, 0, m, lo, hi - lo, accumulate, epilogue);
      } else {
        gemm_block(a, b, 0, k, c, lo, hi - lo, 0, n, accumulate, epilogue);
      }
    });
  }
}

}  // namespace

bool gemm_supported() { return __builtin_cpu_supports("avx512f"); }

void transpose(const float* in, int64_t rows, int64_t middle, int64_t cols, float* out) {
  if (gemm_supported()) {
    transpose_tiles(in, rows, middle, cols, out, transpose_tile_avx512);
  } else {
    transpose_tiles(in, rows, middle, cols, out, transpose_tile_scalar);
  }
}

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rows, int64_t a_cols, const float* b,
           int64_t b_rows, int64_t b_cols, float* c, int64_t c_rows, int64_t c_cols, bool accumulate,
           const Epilogue& epilogue) {
  gemm(m, n, k, Matrix{a, a_rows, a_cols}, Matrix{b, b_rows, b_cols}, MatrixOut{c, c_rows, c_cols}, accumulate,
       epilogue);
}

void sgemm_gathered(int64_t m, int64_t n, int64_t k, const GatheredOperand& a, const GatheredOperand& b,
                    const GatheredOutput& c, bool accumulate) {
  // Bounds need checking only where some row or column moves off the image's corner.
  bool checked = false;
  for (const GatherAxis* axis : {&c.row, &c.col})
    for (int64_t i = 0, count = axis == &c.row ? m : n; i < count && !checked; ++i)
      checked = axis->y[i] != 0 || axis->x[i] != 0;
  gemm(m, n, k, a, b, GatheredOut{c.data, c.row, c.col, c.height, c.width, c.row_group, c.col_group, checked},
       accumulate || c.row_group > 0);
}

}  // namespace ganforge

#else  // not x86-64: there is no kernel here, and ops/gemm.py uses NumPy's matmul instead

namespace ganforge {

bool gemm_supported() { return false; }

void transpose(const float* in, int64_t rows, int64_t middle, int64_t cols, float* out) {
  transpose_tiles(in, rows, middle, cols, out, transpose_tile_scalar);
}

void sgemm(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t,
           int64_t, bool, const Epilogue&) {
  throw std::runtime_error("ganforge's sgemm needs an x86-64 CPU with AVX-512F");
}

void sgemm_gathered(int64_t, int64_t, int64_t, const GatheredOperand&, const GatheredOperand&, const GatheredOutput&,
                    bool) {
  throw std::runtime_error("ganforge's sgemm needs an x86-64 CPU with AVX-512F");
}

}  // namespace ganforge

#endif

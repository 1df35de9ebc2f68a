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
//     for each block of KC rows of B         pack B's block into NR-wide panels (fits L3)
//       for each block of MC rows of A       pack A's block into MR-high panels (fits L2)
//         for each NR panel, each MR panel   the micro-kernel: an MR x NR tile of C kept
//                                            in registers, one rank-1 update per k
//
// Packing makes every operand layout look the same to the micro-kernel and lays the
// data out in the exact order it is read. Edge tiles are zero-padded in the packs, and
// their results go through a small buffer.
#include "gemm.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

namespace ganforge {
namespace {

constexpr int64_t MR = 8;     // rows of the register tile (broadcast from A)
constexpr int64_t NR = 32;    // columns of the register tile (two 16-float vectors of B)
constexpr int64_t KC = 256;   // depth of a packed block: an MR x KC and KC x NR sliver fit in L1
constexpr int64_t MC = 128;   // rows of A packed at a time (MC x KC floats in L2)
constexpr int64_t NC = 3072;  // columns of B packed at a time (KC x NC floats in L3)

struct Matrix {  // a strided view: element (i, j) is data[i * rows + j * cols]
  const float* data;
  int64_t rows, cols;
  float at(int64_t i, int64_t j) const { return data[i * rows + j * cols]; }
};

// A's rows [i0, i0+m) x columns [k0, k0+kc) into MR-high panels, each k-major:
// panel p holds A[i0 + p*MR + r, k0 + k] at p*MR*kc + k*MR + r, zero past the last row.
void pack_a(Matrix a, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* out) {
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

// B's rows [k0, k0+kc) x columns [j0, j0+n) into NR-wide panels, each k-major: panel p
// holds B[k0 + k, j0 + p*NR + c] at p*NR*kc + k*NR + c, zero past the last column.
// The loops follow B's layout so that it is read in contiguous runs: along rows for a
// row-major B, down columns for a transposed one.
void pack_b(Matrix b, int64_t k0, int64_t kc, int64_t j0, int64_t n, float* out) {
  const int64_t full = n / NR * NR;
  if (b.rows == 1 && b.cols != 1) {
    for (int64_t p = 0; p < full; p += NR)
      for (int64_t c = 0; c < NR; ++c) {
        const float* src = b.data + (j0 + p + c) * b.cols + k0;
        float* dst = out + p * kc + c;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR] = src[k];
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
  if (full < n) {  // the last, partial panel
    for (int64_t k = 0; k < kc; ++k) {
      float* dst = out + full * kc + k * NR;
      int64_t c = 0;
      for (; c < n - full; ++c) dst[c] = b.at(k0 + k, j0 + full + c);
      for (; c < NR; ++c) dst[c] = 0.0f;
    }
  }
}

// The MR x NR tile C = (or +=) sum over k of a[:, k] b[k, :], all of it in 16 registers.
// a is a packed panel; b's rows are b_step apart (NR in a packed panel).
__attribute__((target("avx512f"))) void micro_kernel(int64_t kc, const float* a, const float* b, int64_t b_step,
                                                     float* c, int64_t c_rows, bool accumulate) {
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
    _mm512_storeu_ps(row, acc[r][0]);
    _mm512_storeu_ps(row + 16, acc[r][1]);
  }
}

// One thread's share: C[i0:i0+m, j0:j0+n] (+)= A[i0:i0+m, k0:k1] B[k0:k1, j0:j0+n].
void gemm_block(Matrix a, Matrix b, int64_t k0, int64_t k1, float* c, int64_t c_rows, int64_t c_cols, int64_t i0,
                int64_t m, int64_t j0, int64_t n, bool accumulate) {
  // When all of A's rows fit one packed block, each of B's elements is used by only a few
  // register tiles, and packing B would cost as much as the products: the micro-kernel then
  // reads a row-major B where it lies, and only the last, partial panel is packed.
  const bool direct_b = b.cols == 1 && m <= MC;
  std::vector<float, AlignedAllocator<float>> a_pack(MC * KC),
      b_pack(KC * (direct_b ? NR : std::min(NC, (n + NR - 1) / NR * NR)));
  alignas(64) float edge[MR * NR];
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc), full = nc / NR * NR;
    for (int64_t pc = k0; pc < k1; pc += KC) {
      const int64_t kc = std::min(KC, k1 - pc);
      const bool add = accumulate || pc > k0;
      if (!direct_b) {
        pack_b(b, pc, kc, j0 + jc, nc, b_pack.data());
      } else if (full < nc) {
        pack_b(b, pc, kc, j0 + jc + full, nc - full, b_pack.data());
      }
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = std::min(MC, m - ic);
        pack_a(a, i0 + ic, mc, pc, kc, a_pack.data());
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t cols = std::min(NR, nc - jr);
          const bool unpacked = direct_b && jr < full;
          const float* b_panel = unpacked   ? b.data + pc * b.rows + j0 + jc + jr
                                 : direct_b ? b_pack.data()
                                            : b_pack.data() + jr * kc;
          const int64_t b_step = unpacked ? b.rows : NR;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t rows = std::min(MR, mc - ir);
            const float* a_panel = a_pack.data() + ir * kc;
            float* tile = c + (i0 + ic + ir) * c_rows + (j0 + jc + jr) * c_cols;
            if (rows == MR && cols == NR && c_cols == 1) {
              micro_kernel(kc, a_panel, b_panel, b_step, tile, c_rows, add);
              continue;
            }
            // An edge tile, or a C whose rows are not contiguous: through the buffer.
            micro_kernel(kc, a_panel, b_panel, b_step, edge, NR, false);
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t j = 0; j < cols; ++j) {
                float& out = tile[r * c_rows + j * c_cols];
                out = add ? out + edge[r * NR + j] : edge[r * NR + j];
              }
          }
        }
      }
    }
  }
}

}  // namespace

bool gemm_supported() { return __builtin_cpu_supports("avx512f"); }

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rows, int64_t a_cols, const float* b,
           int64_t b_rows, int64_t b_cols, float* c, int64_t c_rows, int64_t c_cols, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * c_rows + j * c_cols] = 0.0f;
    return;
  }
  const Matrix ma{a, a_rows, a_cols}, mb{b, b_rows, b_cols};
  // Threads take disjoint parts of the work, each packing its own operands. Splitting C's
  // columns makes every thread pack all of A, splitting its rows all of B, and splitting
  // the depth k costs a sum of per-thread copies of C; take the split that repeats the
  // least, among those that give every thread enough work.
  const int64_t threads = std::min<int64_t>(gemm_threads(), std::max<int64_t>(1, 2 * m * n * k / (int64_t(1) << 22)));
  if (threads <= 1) {
    gemm_block(ma, mb, 0, k, c, c_rows, c_cols, 0, m, 0, n, accumulate);
    return;
  }
  enum Split { kColumns, kRows, kDepth };
  Split split = kColumns;
  int64_t least = INT64_MAX;
  for (auto [option, extra, enough] : {std::tuple{kColumns, m * k, n >= threads * NR},
                                       std::tuple{kRows, n * k, m >= threads * MR},
                                       std::tuple{kDepth, 2 * m * n, k >= threads * 64}}) {
    if (enough && extra < least) split = option, least = extra;
  }
  if (least == INT64_MAX) {  // too small to split at all
    gemm_block(ma, mb, 0, k, c, c_rows, c_cols, 0, m, 0, n, accumulate);
    return;
  }
  if (split == kDepth) {
    // Thread 0 works in C itself; the others in their own zeroed (m x n) buffers, added
    // to C after they all finish.
    const int64_t chunk = (k + threads - 1) / threads;
    std::vector<std::vector<float>> partial(threads - 1, std::vector<float>(m * n));
    parallel_for_threads(threads, 1, threads, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t k0 = t * chunk, k1 = std::min(k, k0 + chunk);
        if (t == 0) {
          gemm_block(ma, mb, k0, k1, c, c_rows, c_cols, 0, m, 0, n, accumulate);
        } else if (k0 < k1) {
          gemm_block(ma, mb, k0, k1, partial[t - 1].data(), n, 1, 0, m, 0, n, false);
        }
      }
    });
    for (int64_t t = 1; t < threads; ++t) {
      if (t * chunk >= k) break;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * c_rows + j * c_cols] += partial[t - 1][i * n + j];
    }
    return;
  }
  const bool by_columns = split == kColumns;
  const int64_t step = by_columns ? NR : MR, extent = by_columns ? n : m;
  parallel_for_threads((extent + step - 1) / step, 1, threads, [&](int64_t begin, int64_t end) {
    const int64_t lo = begin * step, hi = std::min(extent, end * step);
    if (by_columns) {
      gemm_block(ma, mb, 0, k, c, c_rows, c_cols, 0, m, lo, hi - lo, accumulate);
    } else {
      gemm_block(ma, mb, 0, k, c, c_rows, c_cols, lo, hi - lo, 0, n, accumulate);
    }
  });
}

}  // namespace ganforge

#else  // not x86-64: there is no kernel here, and ops/gemm.py uses NumPy's matmul instead

namespace ganforge {

bool gemm_supported() { return false; }

void sgemm(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t,
           int64_t, bool) {
  throw std::runtime_error("ganforge's sgemm needs an x86-64 CPU with AVX-512F");
}

}  // namespace ganforge

#endif

// Convolution as an implicit GEMM, in CUDA: conv2d, conv_transpose2d and the weight
// gradient (the twins of triton/conv.py; the index algebra is written out there).
// A transposed convolution's backward is conv2d (input gradient) and conv2d_weight_grad
// (weight gradient), so these three kernels serve it whole.
//
// Every kernel is one tiled GEMM, C (M x N) = A (M x K) B (K x N), whose A and B are
// never stored: a Problem struct says how to gather A[m][k] and B[k][n] from the images
// and the weight (0 in the padding) and where C[m][n] goes. A block of 256 threads
// computes a 64 x 64 tile of C, each thread a 4 x 4 patch of it, through 16-deep slices
// of A and B staged in shared memory. All arrays are contiguous NCHW.
#include "common.cuh"

namespace ganforge {

struct ConvShape {
  int N, C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G;
  __device__ int c_per_group() const { return C / G; }
  __device__ int o_per_group() const { return O / G; }
  __device__ int taps() const { return C / G * KH * KW; }  // K of the forward GEMMs
};

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kThreads = 256;

// Output pixel m = (n, oy, ox) of an (N, *, OH, OW) map, and tap k = (c, ky, kx).
struct Pixel {
  int n, position, oy, ox;
  __device__ Pixel(int m, const ConvShape& s)
      : n(m / (s.OH * s.OW)), position(m % (s.OH * s.OW)), oy(position / s.OW), ox(position % s.OW) {}
};
struct Tap {
  int c, ky, kx;
  __device__ Tap(int k, const ConvShape& s) : c(k / (s.KH * s.KW)), ky(k / s.KW % s.KH), kx(k % s.KW) {}
};

// x[n, group's channel c, iy, ix], or 0 outside the image.
template <typename T>
__device__ T image_value(const T* x, const ConvShape& s, int group, int n, int c, int iy, int ix) {
  if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) return T(0);
  return x[((static_cast<long long>(n) * s.C + group * s.c_per_group() + c) * s.H + iy) * s.W + ix];
}

// y = conv2d(x, w): rows are output pixels, columns output channels, K the taps.
template <typename T>
struct Conv2dForward {
  const T *x, *w;
  T* y;
  ConvShape s;
  int group;
  __device__ T a(int m, int k) const {
    const Pixel p(m, s);
    const Tap t(k, s);
    return image_value(x, s, group, p.n, t.c, p.oy * s.SH - s.PH + t.ky * s.DH, p.ox * s.SW - s.PW + t.kx * s.DW);
  }
  __device__ T b(int k, int o) const { return w[(group * s.o_per_group() + o) * s.taps() + k]; }
  __device__ void write(int m, int o, T value) const {
    const Pixel p(m, s);
    y[(static_cast<long long>(p.n) * s.O + group * s.o_per_group() + o) * s.OH * s.OW + p.position] = value;
  }
};

// y = conv_transpose2d(x, w): output pixel oy takes tap ky from input row iy when
// oy = iy*S - P + ky*D, that is when oy + P - ky*D is a multiple of S.
template <typename T>
struct ConvTranspose2dForward {
  const T *x, *w;
  T* y;
  ConvShape s;  // H, W: the input's size; OH, OW: the (larger) output's
  int group;
  __device__ static int source(int out, int pad, int tap, int dilation, int stride) {
    const int shifted = out + pad - tap * dilation;
    return shifted >= 0 && shifted % stride == 0 ? shifted / stride : -1;  // -1: no source row
  }
  __device__ T a(int m, int k) const {
    const Pixel p(m, s);
    const Tap t(k, s);
    const int iy = source(p.oy, s.PH, t.ky, s.DH, s.SH), ix = source(p.ox, s.PW, t.kx, s.DW, s.SW);
    return image_value(x, s, group, p.n, t.c, iy, ix);
  }
  __device__ T b(int k, int o) const {
    const Tap t(k, s);
    return w[((group * s.c_per_group() + t.c) * s.o_per_group() + o) * s.KH * s.KW + t.ky * s.KW + t.kx];
  }
  __device__ void write(int m, int o, T value) const {
    const Pixel p(m, s);
    y[(static_cast<long long>(p.n) * s.O + group * s.o_per_group() + o) * s.OH * s.OW + p.position] = value;
  }
};

// The same without dilation, one output phase (fy, fx) = ((oy + P) mod S, ...) per
// block: rows oy = oy0 + a*S of that phase take only the taps ky = fy + j*S, so the
// GEMM is dense (the kernel above multiplies S_h*S_w times too much: its other taps are
// masked zeros). blockIdx.z is group * S_h*S_w + phase.
template <typename T>
struct ConvTranspose2dPhase {
  const T *x, *w;
  T* y;
  ConvShape s;
  int group, fy, fx, oy0, ox0, rows_y, rows_x, taps_y, taps_x;
  __device__ ConvTranspose2dPhase(const T* x_, const T* w_, T* y_, const ConvShape& shape)
      : x(x_), w(w_), y(y_), s(shape) {
    const int phases = s.SH * s.SW, phase = blockIdx.z % phases;
    group = blockIdx.z / phases;
    fy = phase / s.SW;
    fx = phase % s.SW;
    oy0 = ((fy - s.PH) % s.SH + s.SH) % s.SH;
    ox0 = ((fx - s.PW) % s.SW + s.SW) % s.SW;
    rows_y = max(s.OH - oy0 + s.SH - 1, 0) / s.SH;
    rows_x = max(s.OW - ox0 + s.SW - 1, 0) / s.SW;
    taps_y = max(s.KH - fy + s.SH - 1, 0) / s.SH;
    taps_x = max(s.KW - fx + s.SW - 1, 0) / s.SW;
  }
  __device__ int rows() const { return s.N * rows_y * rows_x; }
  __device__ int taps() const { return s.c_per_group() * taps_y * taps_x; }
  __device__ void pixel(int m, int& n, int& oy, int& ox) const {
    const int cell = m % (rows_y * rows_x);
    n = m / (rows_y * rows_x);
    oy = oy0 + cell / rows_x * s.SH;
    ox = ox0 + cell % rows_x * s.SW;
  }
  __device__ T a(int m, int k) const {
    int n, oy, ox;
    pixel(m, n, oy, ox);
    const int c = k / (taps_y * taps_x), jy = k / taps_x % taps_y, jx = k % taps_x;
    // oy + P - fy is a multiple of S by construction.
    return image_value(x, s, group, n, c, (oy + s.PH - fy) / s.SH - jy, (ox + s.PW - fx) / s.SW - jx);
  }
  __device__ T b(int k, int o) const {
    const int c = k / (taps_y * taps_x), ky = fy + k / taps_x % taps_y * s.SH, kx = fx + k % taps_x * s.SW;
    return w[((group * s.c_per_group() + c) * s.o_per_group() + o) * s.KH * s.KW + ky * s.KW + kx];
  }
  __device__ void write(int m, int o, T value) const {
    int n, oy, ox;
    pixel(m, n, oy, ox);
    y[((static_cast<long long>(n) * s.O + group * s.o_per_group() + o) * s.OH + oy) * s.OW + ox] = value;
  }
};

// gW = conv2d_weight_grad(x, gy): rows are output channels, columns taps, and the
// reduction runs over every (sample, output pixel). With split > 1 several blocks share
// that reduction and add into gW (zeroed beforehand).
template <typename T>
struct Conv2dWeightGrad {
  const T *x, *gy;
  T* gw;
  ConvShape s;
  int group;
  bool accumulate;
  __device__ T a(int o, int r) const {
    const Pixel p(r, s);
    return gy[(static_cast<long long>(p.n) * s.O + group * s.o_per_group() + o) * s.OH * s.OW + p.position];
  }
  __device__ T b(int r, int k) const {
    const Pixel p(r, s);
    const Tap t(k, s);
    return image_value(x, s, group, p.n, t.c, p.oy * s.SH - s.PH + t.ky * s.DH, p.ox * s.SW - s.PW + t.kx * s.DW);
  }
  __device__ void write(int o, int k, T value) const {
    T* out = gw + (group * s.o_per_group() + o) * s.taps() + k;
    if (accumulate) {
      atomicAdd(out, value);
    } else {
      *out = value;
    }
  }
};

// The tile of C at (blockIdx.x, blockIdx.y), summing over k in [k_begin, k_end).
template <typename T, typename Problem>
__device__ void gemm_tile(const Problem& problem, int M, int N, int k_begin, int k_end) {
  __shared__ T a_tile[kTileK][kTileM];
  __shared__ T b_tile[kTileK][kTileN];
  const int m0 = blockIdx.x * kTileM, n0 = blockIdx.y * kTileN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  T acc[4][4] = {};
  for (int k0 = k_begin; k0 < k_end; k0 += kTileK) {
    // Stage the slices; consecutive threads read consecutive m (or n), which are
    // consecutive pixels (or output channels) in memory.
    for (int i = threadIdx.x; i < kTileK * kTileM; i += kThreads) {
      const int kk = i / kTileM, mm = i % kTileM, k = k0 + kk;
      a_tile[kk][mm] = (m0 + mm < M && k < k_end) ? problem.a(m0 + mm, k) : T(0);
    }
    for (int i = threadIdx.x; i < kTileK * kTileN; i += kThreads) {
      const int kk = i / kTileN, nn = i % kTileN, k = k0 + kk;
      b_tile[kk][nn] = (n0 + nn < N && k < k_end) ? problem.b(k, n0 + nn) : T(0);
    }
    __syncthreads();
    for (int kk = 0; kk < kTileK; ++kk) {
      T a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = a_tile[kk][ty + 16 * i];
      for (int j = 0; j < 4; ++j) b[j] = b_tile[kk][tx + 16 * j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < M && n < N) problem.write(m, n, acc[i][j]);
    }
}

template <typename T>
__device__ void conv2d_forward(const T* x, const T* w, T* y, ConvShape s) {
  const Conv2dForward<T> problem{x, w, y, s, static_cast<int>(blockIdx.z)};
  gemm_tile<T>(problem, s.N * s.OH * s.OW, s.o_per_group(), 0, s.taps());
}

template <typename T>
__device__ void conv_transpose2d_forward(const T* x, const T* w, T* y, ConvShape s) {
  const ConvTranspose2dForward<T> problem{x, w, y, s, static_cast<int>(blockIdx.z)};
  gemm_tile<T>(problem, s.N * s.OH * s.OW, s.o_per_group(), 0, s.taps());
}

template <typename T>
__device__ void conv_transpose2d_phase(const T* x, const T* w, T* y, ConvShape s) {
  const ConvTranspose2dPhase<T> problem(x, w, y, s);
  if (problem.rows_y * problem.rows_x == 0) return;  // a phase with no output rows
  gemm_tile<T>(problem, problem.rows(), s.o_per_group(), 0, problem.taps());
}

template <typename T>
__device__ void conv2d_weight_grad(const T* x, const T* gy, T* gw, ConvShape s, int split) {
  const int group = blockIdx.z / split, part = blockIdx.z % split;
  const Conv2dWeightGrad<T> problem{x, gy, gw, s, group, split > 1};
  // Whole 16-deep slices per part, so that only the last slice is ragged.
  const int reduction = s.N * s.OH * s.OW, slices = (reduction + kTileK - 1) / kTileK;
  const int begin = part * slices / split * kTileK, end = min((part + 1) * slices / split * kTileK, reduction);
  gemm_tile<T>(problem, s.o_per_group(), s.taps(), begin, end);
}

}  // namespace ganforge

// The entry points CuPy looks up by name: <kernel>_f32 and <kernel>_f64. Shapes come as
// plain ints (N, C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G), since a
// RawKernel passes scalars, not structs. Launch with 256 threads and a grid of
// (ceil(M / 64), ceil(N / 64), groups [* split]).
#define GANFORGE_SHAPE_PARAMS                                                                                 \
  int N, int C, int H, int W, int O, int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH, \
      int DW, int G
#define GANFORGE_SHAPE ganforge::ConvShape{N, C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G}

#define GANFORGE_CONV_ENTRY_POINTS(T, SUFFIX)                                                                   \
  extern "C" __global__ void __launch_bounds__(256) conv2d_forward_##SUFFIX(const T* x, const T* w, T* y,      \
                                                                            GANFORGE_SHAPE_PARAMS) {            \
    ganforge::conv2d_forward<T>(x, w, y, GANFORGE_SHAPE);                                                      \
  }                                                                                                             \
  extern "C" __global__ void __launch_bounds__(256)                                                             \
      conv_transpose2d_forward_##SUFFIX(const T* x, const T* w, T* y, GANFORGE_SHAPE_PARAMS) {                  \
    ganforge::conv_transpose2d_forward<T>(x, w, y, GANFORGE_SHAPE);                                            \
  }                                                                                                             \
  /* without dilation (DH = DW = 1); grid z: groups * SH * SW */                                               \
  extern "C" __global__ void __launch_bounds__(256)                                                             \
      conv_transpose2d_phase_##SUFFIX(const T* x, const T* w, T* y, GANFORGE_SHAPE_PARAMS) {                    \
    ganforge::conv_transpose2d_phase<T>(x, w, y, GANFORGE_SHAPE);                                              \
  }                                                                                                             \
  extern "C" __global__ void __launch_bounds__(256)                                                             \
      conv2d_weight_grad_##SUFFIX(const T* x, const T* gy, T* gw, GANFORGE_SHAPE_PARAMS, int split) {           \
    ganforge::conv2d_weight_grad<T>(x, gy, gw, GANFORGE_SHAPE, split);                                         \
  }

GANFORGE_CONV_ENTRY_POINTS(float, f32)
GANFORGE_CONV_ENTRY_POINTS(double, f64)

// One step of spectral normalization's power iteration, fused, in CUDA (the twin of
// triton/spectral_norm.py, whose header gives the algebra):
//
//   transposed_product   t = W^T u                      one thread per column of W
//   product              v = t / max(|t|, eps), s = W v  one warp per row of W
//   normalize            u = s / max(|s|, eps), sigma = |s|^2 / max(|s|, eps), W / sigma
//
// Each block that needs a norm sums the (short) vector itself, in a fixed order, so
// results repeat exactly from run to run. Launch with 256 threads per block.
#include "common.cuh"

namespace ganforge {

template <typename T>
__device__ T vector_norm(const T* x, int n, T eps, T* squared = nullptr) {
  T sum = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += x[i] * x[i];
  sum = block_sum(sum);
  if (squared) *squared = sum;
  return max(sqrt(sum), eps);
}

template <typename T>
__device__ void transposed_product(const T* w, const T* u, T* t, int rows, int cols) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  T sum = 0;
  for (int r = 0; r < rows; ++r) sum += w[static_cast<long long>(r) * cols + col] * u[r];
  t[col] = sum;
}

template <typename T>
__device__ void product(const T* w, const T* t, T* v, T* s, int rows, int cols, T eps) {
  const T t_norm = vector_norm(t, cols, eps);
  if (blockIdx.x == 0)
    for (int c = threadIdx.x; c < cols; c += blockDim.x) v[c] = t[c] / t_norm;
  const int lane = threadIdx.x % 32, row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  T sum = 0;
  for (int c = lane; c < cols; c += 32) sum += w[static_cast<long long>(row) * cols + c] * (t[c] / t_norm);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
  if (lane == 0) s[row] = sum;
}

template <typename T>
__device__ void normalize(const T* w, const T* s, T* u, T* sigma, T* w_sn, int rows, int cols, T eps) {
  T s_squared;
  const T s_norm = vector_norm(s, rows, eps, &s_squared);
  const T value = s_squared / s_norm;
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows) u[i] = s[i] / s_norm;
  if (i == 0) *sigma = value;
  if (w_sn != nullptr && i < static_cast<long long>(rows) * cols) w_sn[i] = w[i] / value;
}

}  // namespace ganforge

#define GANFORGE_SPECTRAL_NORM_ENTRY_POINTS(T, SUFFIX)                                                          \
  extern "C" __global__ void transposed_product_##SUFFIX(const T* w, const T* u, T* t, int rows, int cols) {   \
    ganforge::transposed_product<T>(w, u, t, rows, cols);                                                      \
  }                                                                                                             \
  extern "C" __global__ void product_##SUFFIX(const T* w, const T* t, T* v, T* s, int rows, int cols, T eps) { \
    ganforge::product<T>(w, t, v, s, rows, cols, eps);                                                          \
  }                                                                                                             \
  /* w_sn may be null: then only u and sigma are written. */                                                    \
  extern "C" __global__ void normalize_##SUFFIX(const T* w, const T* s, T* u, T* sigma, T* w_sn, int rows,     \
                                                int cols, T eps) {                                              \
    ganforge::normalize<T>(w, s, u, sigma, w_sn, rows, cols, eps);                                              \
  }

GANFORGE_SPECTRAL_NORM_ENTRY_POINTS(float, f32)
GANFORGE_SPECTRAL_NORM_ENTRY_POINTS(double, f64)

// WGAN-GP's gradient penalty, fused, in CUDA (the twin of triton/grad_penalty.py,
// whose header gives the algebra). Sums run in a fixed order: no atomics.
//
//   interpolate   x_hat = fake + eps_i (real - fake)          one thread per value
//   norms         |g_i|                                       one block per sample
//   penalty       mean_i excess_i^2                           one block
//   backward      gy 2 excess_i / (N |g_i|) g                 one thread per value
//
// excess_i = |g_i| - target, clipped at 0 when one_sided. Launch with 256 threads.
#include "common.cuh"

namespace ganforge {

template <typename T>
__device__ T excess(T norm, T target, int one_sided) {
  const T e = norm - target;
  return one_sided && e < T(0) ? T(0) : e;
}

template <typename T>
__device__ void interpolate(const T* real, const T* fake, const T* eps, T* out, long long n, long long features) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n * features) out[i] = fake[i] + eps[i / features] * (real[i] - fake[i]);
}

template <typename T>
__device__ void norms(const T* g, T* out, long long features) {
  const T* row = g + blockIdx.x * features;
  T sum = 0;
  for (long long f = threadIdx.x; f < features; f += blockDim.x) sum += row[f] * row[f];
  sum = block_sum(sum);
  if (threadIdx.x == 0) out[blockIdx.x] = sqrt(sum);
}

template <typename T>
__device__ void penalty(const T* norms, T* out, int n, T target, int one_sided) {
  T sum = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const T e = excess(norms[i], target, one_sided);
    sum += e * e;
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) *out = sum / n;
}

template <typename T>
__device__ void backward(const T* g, const T* norms, const T* gy, T* out, long long n, long long features, T target,
                         int one_sided) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * features) return;
  const T norm = norms[i / features];
  // A zero gradient has no direction; its term is 0, the limit along any direction.
  const T safe_norm = norm == T(0) ? T(1) : norm;
  out[i] = *gy * T(2) * excess(norm, target, one_sided) / (T(n) * safe_norm) * g[i];
}

}  // namespace ganforge

#define GANFORGE_GRAD_PENALTY_ENTRY_POINTS(T, SUFFIX)                                                          \
  extern "C" __global__ void interpolate_##SUFFIX(const T* real, const T* fake, const T* eps, T* out,        \
                                                  long long n, long long features) {                          \
    ganforge::interpolate<T>(real, fake, eps, out, n, features);                                              \
  }                                                                                                            \
  extern "C" __global__ void norms_##SUFFIX(const T* g, T* out, long long features) {                        \
    ganforge::norms<T>(g, out, features);                                                                      \
  }                                                                                                            \
  extern "C" __global__ void penalty_##SUFFIX(const T* norms, T* out, int n, T target, int one_sided) {      \
    ganforge::penalty<T>(norms, out, n, target, one_sided);                                                    \
  }                                                                                                            \
  extern "C" __global__ void backward_##SUFFIX(const T* g, const T* norms, const T* gy, T* out, long long n,  \
                                               long long features, T target, int one_sided) {                \
    ganforge::backward<T>(g, norms, gy, out, n, features, target, one_sided);                                  \
  }

GANFORGE_GRAD_PENALTY_ENTRY_POINTS(float, f32)
GANFORGE_GRAD_PENALTY_ENTRY_POINTS(double, f64)

// Small GAN kernels: the spectral-norm power iteration, the per-sample gradient-penalty
// reduction and batch norm (sums over long rows, accumulated in double); and the
// memory-bound passes: leaky ReLU, broadcast adds and products, Adam, reflection padding,
// sums over the first axis and over rows, and resampling.
#include "gan_kernels.h"

#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace ganforge {

static void normalize(std::vector<double>& x, double eps) {
  double norm = 0;
  for (double v : x) norm += v * v;
  const double scale = 1.0 / std::max(std::sqrt(norm), eps);
  for (double& v : x) v *= scale;
}

template <typename T>
void power_iteration(const T* w, int64_t rows, int64_t cols, T* u, T* v, int iterations, double eps) {
  std::vector<double> uu(u, u + rows), vv(cols);
  for (int it = 0; it < iterations; ++it) {
    // v = W^T u / |W^T u|: walk W row by row so that memory is read in order.
    std::fill(vv.begin(), vv.end(), 0.0);
    for (int64_t i = 0; i < rows; ++i) {
      const T* row = w + i * cols;
      const double ui = uu[i];
      for (int64_t j = 0; j < cols; ++j) vv[j] += row[j] * ui;
    }
    normalize(vv, eps);
    // u = W v / |W v|
    for (int64_t i = 0; i < rows; ++i) {
      const T* row = w + i * cols;
      double sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += row[j] * vv[j];
      uu[i] = sum;
    }
    normalize(uu, eps);
  }
  std::copy(uu.begin(), uu.end(), u);
  std::copy(vv.begin(), vv.end(), v);
}

template <typename T>
void per_sample_norms(const T* g, int64_t batch, int64_t features, T* norms) {
  for (int64_t n = 0; n < batch; ++n) {
    const T* row = g + n * features;
    double sum = 0;
    for (int64_t k = 0; k < features; ++k) sum += double(row[k]) * row[k];
    norms[n] = static_cast<T>(std::sqrt(sum));
  }
}

// The AVX-512 clones below: the same code, compiled for AVX-512 where the CPU has it
// (float32 only), which the compiler then vectorizes sixteen floats or eight doubles at
// a time instead of SSE2's four or two.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(GANFORGE_PORTABLE_ONLY)
#define GANFORGE_ELEMENTWISE_AVX512 1
#define GANFORGE_INLINE inline __attribute__((always_inline))
#else
#define GANFORGE_INLINE inline
#endif

// Batch norm reads each channel as `batch` runs of `length` contiguous values. Channels are
// independent, so threads take whole channels; each reads its channels' data twice forward
// (statistics, then output) and twice backward (sums, then gx).
// Sums over one channel's runs, with eight independent double accumulators: a single one
// would wait on every add (four cycles each), eight keep the adder busy.
template <typename T, typename Term>
GANFORGE_INLINE double channel_sum(const T* data, int64_t batch, int64_t stride, int64_t length, Term term) {
  double acc[8] = {};
  for (int64_t n = 0; n < batch; ++n) {
    const T* run = data + n * stride;
    int64_t l = 0;
    for (; l + 8 <= length; l += 8)
      for (int k = 0; k < 8; ++k) acc[k] += term(run, n * stride + l + k, l + k);
    for (; l < length; ++l) acc[0] += term(run, n * stride + l, l);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// The shapes and arrays of one batch-norm call, as the per-channel work below reads them.
template <typename T>
struct BatchNormArgs {
  const T *x, *gy, *weight, *bias;
  int64_t batch, channels, length;
  double eps;
  T *y, *gx, *mean, *var, *inv_std, *gweight, *gbias;
};

template <typename T>
GANFORGE_INLINE void batch_norm_forward_channels(const BatchNormArgs<T>& p, int64_t begin, int64_t end) {
  const int64_t stride = p.channels * p.length, length = p.length;
  const double count = double(p.batch * length);
  for (int64_t c = begin; c < end; ++c) {
    const T* xc = p.x + c * length;
    const double mu = channel_sum(xc, p.batch, stride, length, [](const T* run, int64_t, int64_t l) {
      return double(run[l]);
    }) / count;
    const double sigma2 = channel_sum(xc, p.batch, stride, length, [mu](const T* run, int64_t, int64_t l) {
      const double d = run[l] - mu;
      return d * d;
    }) / count;
    const double inv = 1.0 / std::sqrt(sigma2 + p.eps);
    p.mean[c] = T(mu), p.var[c] = T(sigma2), p.inv_std[c] = T(inv);
    // y = (x - mean) scale + shift: centring first keeps float32 exact where the mean
    // is large against the spread
    const T center = T(mu), scale = T(inv) * (p.weight ? p.weight[c] : T(1)), shift = p.bias ? p.bias[c] : T(0);
    for (int64_t n = 0; n < p.batch; ++n) {
      const T* run = xc + n * stride;
      T* out = p.y + n * stride + c * length;
      for (int64_t l = 0; l < length; ++l) out[l] = (run[l] - center) * scale + shift;
    }
  }
}

template <typename T>
GANFORGE_INLINE void batch_norm_backward_channels(const BatchNormArgs<T>& p, int64_t begin, int64_t end) {
  const int64_t stride = p.channels * p.length, length = p.length;
  const double count = double(p.batch * length);
  for (int64_t c = begin; c < end; ++c) {
    const double mu = p.mean[c], inv = p.inv_std[c];
    const T* gc = p.gy + c * length;
    const double gbeta = channel_sum(gc, p.batch, stride, length, [](const T* run, int64_t, int64_t l) {
      return double(run[l]);
    });
    const T* xc = p.x + c * length;
    const double ggamma = channel_sum(gc, p.batch, stride, length, [xc, mu, inv](const T* run, int64_t at, int64_t l) {
      return double(run[l]) * ((xc[at] - mu) * inv);
    });
    if (p.gweight) p.gweight[c] = T(ggamma);
    if (p.gbias) p.gbias[c] = T(gbeta);
    // gx = a gy + b (x - mean) + d: the formula with its per-channel factors gathered
    const double scale = (p.weight ? double(p.weight[c]) : 1.0) * inv / count;
    const T a = T(scale * count), b = T(-scale * ggamma * inv), d = T(-scale * gbeta), center = T(mu);
    for (int64_t n = 0; n < p.batch; ++n) {
      const T* run = p.x + n * stride + c * length;
      const T* g = p.gy + n * stride + c * length;
      T* out = p.gx + n * stride + c * length;
      for (int64_t l = 0; l < length; ++l) out[l] = a * g[l] + b * (run[l] - center) + d;
    }
  }
}

#ifdef GANFORGE_ELEMENTWISE_AVX512
__attribute__((target("avx512f"))) static void batch_norm_forward_avx512(const BatchNormArgs<float>& p,
                                                                          int64_t begin, int64_t end) {
  batch_norm_forward_channels(p, begin, end);
}

__attribute__((target("avx512f"))) static void batch_norm_backward_avx512(const BatchNormArgs<float>& p,
                                                                           int64_t begin, int64_t end) {
  batch_norm_backward_channels(p, begin, end);
}
#endif

template <typename T>
void batch_norm_forward(const T* x, int64_t batch, int64_t channels, int64_t length, const T* weight, const T* bias,
                        double eps, T* y, T* mean, T* var, T* inv_std) {
  const BatchNormArgs<T> p{x, nullptr, weight, bias, batch, channels, length, eps,
                           y, nullptr, mean, var, inv_std, nullptr, nullptr};
  parallel_for_threads(channels, 1, gemm_threads(), [&p](int64_t begin, int64_t end) {
#ifdef GANFORGE_ELEMENTWISE_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (__builtin_cpu_supports("avx512f")) return batch_norm_forward_avx512(p, begin, end);
    }
#endif
    batch_norm_forward_channels(p, begin, end);
  });
}

template <typename T>
void batch_norm_backward(const T* x, const T* gy, int64_t batch, int64_t channels, int64_t length, const T* weight,
                         const T* mean, const T* inv_std, T* gx, T* gweight, T* gbias) {
  const BatchNormArgs<T> p{x, gy, weight, nullptr, batch, channels, length, 0.0,
                           nullptr, gx, const_cast<T*>(mean), nullptr, const_cast<T*>(inv_std), gweight, gbias};
  parallel_for_threads(channels, 1, gemm_threads(), [&p](int64_t begin, int64_t end) {
#ifdef GANFORGE_ELEMENTWISE_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (__builtin_cpu_supports("avx512f")) return batch_norm_backward_avx512(p, begin, end);
    }
#endif
    batch_norm_backward_channels(p, begin, end);
  });
}

// Elementwise and memory-bound: chunks of at least this many values per thread.
constexpr int64_t kElementwiseChunk = 1 << 16;

// The compiler turns `x > 0 ? x : slope x` into a branch, which random signs mispredict
// half the time (measured 8 ms for a 64x128x14x14 batch against 0.2 for a plain product),
// so float32 on AVX-512 goes through masked vector code; other cases take the plain loop.
#ifdef GANFORGE_ELEMENTWISE_AVX512

// max(0, x) + slope min(0, x); with 0 first, a NaN x comes through both (AVX-512 returns
// the second operand of max and min when one is NaN), as NumPy's maximum keeps it.
__attribute__((target("avx512f"))) static void leaky_relu_forward_avx512(const float* x, int64_t begin,
                                                                          int64_t end, float slope, float gain,
                                                                          float* y) {
  const __m512 zero = _mm512_setzero_ps(), s = _mm512_set1_ps(slope), g = _mm512_set1_ps(gain);
  for (int64_t i = begin; i < end; i += 16) {
    const __mmask16 live = end - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (end - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(live, x + i);
    __m512 out = _mm512_maskz_max_ps(0xFFFF, zero, v);
    if (slope != 0.0f) out = _mm512_fmadd_ps(s, _mm512_maskz_min_ps(0xFFFF, zero, v), out);
    if (gain != 1.0f) out = _mm512_mul_ps(out, g);
    _mm512_mask_storeu_ps(y + i, live, out);
  }
}

// (gy times gain) times 1 where x > 0, else slope.
__attribute__((target("avx512f"))) static void leaky_relu_backward_avx512(const float* x, const float* gy,
                                                                           int64_t begin, int64_t end, float slope,
                                                                           float gain, float* gx) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f), s = _mm512_set1_ps(slope);
  const __m512 g = _mm512_set1_ps(gain);
  for (int64_t i = begin; i < end; i += 16) {
    const __mmask16 live = end - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (end - i)) - 1);
    const __mmask16 positive = _mm512_mask_cmp_ps_mask(live, _mm512_maskz_loadu_ps(live, x + i), zero, _CMP_GT_OQ);
    const __m512 factor = _mm512_mask_blend_ps(positive, s, one);
    __m512 grad = _mm512_maskz_loadu_ps(live, gy + i);
    if (gain != 1.0f) grad = _mm512_mul_ps(grad, g);
    _mm512_mask_storeu_ps(gx + i, live, _mm512_mul_ps(grad, factor));
  }
}
#endif

// body(begin, end) over runs of the planes (images) of an array, out_values each,
// split between the GEMM's threads.
template <typename Body>
void over_planes(int64_t planes, int64_t out_values, Body body) {
  parallel_for_threads(planes, std::max<int64_t>(1, kElementwiseChunk / std::max<int64_t>(out_values, 1)),
                       gemm_threads(), body);
}

// LeakyReLU over x[begin:end]: AVX-512 for float32 where the CPU has it, else the plain loop.
template <typename T>
void leaky_relu_range(const T* x, int64_t begin, int64_t end, T slope, T gain, T* y) {
#ifdef GANFORGE_ELEMENTWISE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (__builtin_cpu_supports("avx512f")) return leaky_relu_forward_avx512(x, begin, end, slope, gain, y);
  }
#endif
  for (int64_t i = begin; i < end; ++i) {  // (ReLU of -inf is 0, not 0 times -inf)
    y[i] = x[i] > T(0) || x[i] != x[i] ? x[i] : slope == T(0) ? T(0) : slope * x[i];
    if (gain != T(1)) y[i] *= gain;
  }
}

template <typename T>
void leaky_relu_backward_range(const T* x, const T* gy, int64_t begin, int64_t end, T slope, T gain, T* gx) {
#ifdef GANFORGE_ELEMENTWISE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (__builtin_cpu_supports("avx512f")) return leaky_relu_backward_avx512(x, gy, begin, end, slope, gain, gx);
  }
#endif
  for (int64_t i = begin; i < end; ++i) gx[i] = (gain != T(1) ? gy[i] * gain : gy[i]) * (x[i] > T(0) ? T(1) : slope);
}

// The sum of gy x over the x <= 0 (or NaN) of n values, in double: PReLU's slope gradient.
#ifdef GANFORGE_ELEMENTWISE_AVX512
__attribute__((target("avx512f"))) static inline __m256 upper_half(__m512 a) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
}

__attribute__((target("avx512f"))) static double negative_share_avx512(const float* x, const float* gy, int64_t n) {
  __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 live = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(live, x + i);
    const __m512 g = _mm512_maskz_loadu_ps(_mm512_mask_cmp_ps_mask(live, v, _mm512_setzero_ps(), _CMP_NGT_UQ), gy + i);
    low = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(g)), _mm512_cvtps_pd(_mm512_castps512_ps256(v)), low);
    high = _mm512_fmadd_pd(_mm512_cvtps_pd(upper_half(g)), _mm512_cvtps_pd(upper_half(v)), high);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(low, high));
}
#endif

template <typename T>
double negative_share(const T* x, const T* gy, int64_t n) {
#ifdef GANFORGE_ELEMENTWISE_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (__builtin_cpu_supports("avx512f")) return negative_share_avx512(x, gy, n);
  }
#endif
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] > T(0) ? 0.0 : double(gy[i]) * double(x[i]);
  return sum;
}

template <typename T>
void leaky_relu_forward(const T* x, int64_t n, T slope, T gain, T* y) {
  parallel_for_threads(n, kElementwiseChunk, gemm_threads(), [x, y, slope, gain](int64_t begin, int64_t end) {
    leaky_relu_range(x, begin, end, slope, gain, y);
  });
}

template <typename T>
void leaky_relu_backward(const T* x, const T* gy, int64_t n, T slope, T gain, T* gx) {
  parallel_for_threads(n, kElementwiseChunk, gemm_threads(), [x, gy, gx, slope, gain](int64_t begin, int64_t end) {
    leaky_relu_backward_range(x, gy, begin, end, slope, gain, gx);
  });
}

// PReLU (gan_kernels.h): LeakyReLU's loops, each (sample, channel) plane with its
// channel's slope; the backward's threads take whole channels, so that each sums its
// slope's gradient over the batch alone, in a fixed order.
template <typename T>
void prelu_forward(const T* x, int64_t batch, int64_t channels, int64_t length, const T* slopes, bool shared, T* y) {
  over_planes(batch * channels, length, [=](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      leaky_relu_range(x + p * length, 0, length, slopes[shared ? 0 : p % channels], T(1), y + p * length);
  });
}

template <typename T>
void prelu_backward(const T* x, const T* gy, int64_t batch, int64_t channels, int64_t length, const T* slopes,
                    bool shared, T* gx, T* gslopes) {
  std::vector<double> per_channel(channels);
  parallel_for_threads(channels, 1, gemm_threads(), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      double sum = 0.0;  // of gy min(x, 0): the slope's share of each output
      for (int64_t n = 0; n < batch; ++n) {
        const int64_t at = (n * channels + c) * length;
        leaky_relu_backward_range(x + at, gy + at, 0, length, slopes[shared ? 0 : c], T(1), gx + at);
        sum += negative_share(x + at, gy + at, length);
      }
      per_channel[c] = sum;
    }
  });
  if (shared) {
    gslopes[0] = T(std::accumulate(per_channel.begin(), per_channel.end(), 0.0));
  } else {
    for (int64_t c = 0; c < channels; ++c) gslopes[c] = T(per_channel[c]);
  }
}

// One rounded add or multiply per element, as NumPy's: a * b == b * a and a + b == b + a
// bit for bit, so the callers may put the larger operand first.
template <bool kMultiply>
GANFORGE_INLINE void binary_range(const float* a, const float* b, int64_t begin, int64_t end, int64_t length,
                                  int64_t period, int64_t repeat, bool per_row, float* out) {
  if (!per_row) {
    // b of a's size, or rows of `length` each shared by `repeat` neighbouring rows of a
    for (int64_t i = begin; i < end;) {
      const int64_t row = i / length, row_end = std::min(end, (row + 1) * length);
      const int64_t shift = (row / repeat - row) * length;  // b[i + shift] goes with a[i]
      for (; i < row_end; ++i) out[i] = kMultiply ? a[i] * b[i + shift] : a[i] + b[i + shift];
    }
    return;
  }
  for (int64_t i = begin; i < end;) {  // row by row, the row's value held in a register
    const int64_t row = i / length, row_end = std::min(end, (row + 1) * length);
    const float v = b[row % period];
    for (; i < row_end; ++i) out[i] = kMultiply ? a[i] * v : a[i] + v;
  }
}

#ifdef GANFORGE_ELEMENTWISE_AVX512
template <bool kMultiply>
__attribute__((target("avx512f"))) static void binary_range_avx512(const float* a, const float* b, int64_t begin,
                                                                    int64_t end, int64_t length, int64_t period,
                                                                    int64_t repeat, bool per_row, float* out) {
  binary_range<kMultiply>(a, b, begin, end, length, period, repeat, per_row, out);
}
#endif

template <bool kMultiply>
void binary_rows(const float* a, const float* b, int64_t n, int64_t length, int64_t period, bool per_row, float* out) {
  const int64_t repeat = per_row ? 1 : n / period;
  if (!per_row && repeat == 1) length = n;  // the same shape: one row
  parallel_for_threads(n, kElementwiseChunk, gemm_threads(), [=](int64_t begin, int64_t end) {
#ifdef GANFORGE_ELEMENTWISE_AVX512
    if (__builtin_cpu_supports("avx512f")) return binary_range_avx512<kMultiply>(a, b, begin, end, length, period,
                                                                                 repeat, per_row, out);
#endif
    binary_range<kMultiply>(a, b, begin, end, length, period, repeat, per_row, out);
  });
}

template void binary_rows<false>(const float*, const float*, int64_t, int64_t, int64_t, bool, float*);
template void binary_rows<true>(const float*, const float*, int64_t, int64_t, int64_t, bool, float*);

// Every operation rounded on its own, as NumPy does one array operation at a time: the
// build turns off the contraction of a * b + c into a fused multiply-add (CMakeLists.txt).
template <typename T>
void adam_range(T* param, const T* grad, T* m, T* v, int64_t begin, int64_t end, const AdamScalars<T>& s) {
  for (int64_t i = begin; i < end; ++i) {
    const T g = grad[i];
    m[i] = m[i] * s.beta1 + s.one_minus_beta1 * g;
    v[i] = v[i] * s.beta2 + s.one_minus_beta2 * (g * g);
    param[i] -= m[i] / (std::sqrt(v[i]) / s.bias_correction2_root + s.eps) * s.step_size;
  }
}

#ifdef GANFORGE_ELEMENTWISE_AVX512
// The same operations sixteen at a time. (The compiler leaves the plain loop scalar:
// std::sqrt may set errno, and the four arrays may overlap as far as it knows.)
__attribute__((target("avx512f"))) static void adam_range_avx512(float* param, const float* grad, float* m, float* v,
                                                                  int64_t begin, int64_t end,
                                                                  const AdamScalars<float>& s) {
  const __m512 beta1 = _mm512_set1_ps(s.beta1), one_minus_beta1 = _mm512_set1_ps(s.one_minus_beta1);
  const __m512 beta2 = _mm512_set1_ps(s.beta2), one_minus_beta2 = _mm512_set1_ps(s.one_minus_beta2);
  const __m512 root = _mm512_set1_ps(s.bias_correction2_root), eps = _mm512_set1_ps(s.eps);
  const __m512 step_size = _mm512_set1_ps(s.step_size);
  for (int64_t i = begin; i < end; i += 16) {
    const __mmask16 live = end - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (end - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(live, grad + i);
    const __m512 m_new = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(live, m + i), beta1),
                                       _mm512_mul_ps(one_minus_beta1, g));
    const __m512 v_new = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(live, v + i), beta2),
                                       _mm512_mul_ps(one_minus_beta2, _mm512_mul_ps(g, g)));
    const __m512 denominator = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v_new), root), eps);
    const __m512 update = _mm512_mul_ps(_mm512_div_ps(m_new, denominator), step_size);
    _mm512_mask_storeu_ps(m + i, live, m_new);
    _mm512_mask_storeu_ps(v + i, live, v_new);
    _mm512_mask_storeu_ps(param + i, live, _mm512_sub_ps(_mm512_maskz_loadu_ps(live, param + i), update));
  }
}
#endif

template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamScalars<T>& s) {
  parallel_for_threads(n, kElementwiseChunk, gemm_threads(), [&](int64_t begin, int64_t end) {
#ifdef GANFORGE_ELEMENTWISE_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (__builtin_cpu_supports("avx512f")) return adam_range_avx512(param, grad, exp_avg, exp_avg_sq, begin, end, s);
    }
#endif
    adam_range(param, grad, exp_avg, exp_avg_sq, begin, end, s);
  });
}

template void adam_step<float>(float*, const float*, float*, float*, int64_t, const AdamScalars<float>&);
template void adam_step<double>(double*, const double*, double*, double*, int64_t, const AdamScalars<double>&);
template void power_iteration<float>(const float*, int64_t, int64_t, float*, float*, int, double);
template void power_iteration<double>(const double*, int64_t, int64_t, double*, double*, int, double);
template void per_sample_norms<float>(const float*, int64_t, int64_t, float*);
template void per_sample_norms<double>(const double*, int64_t, int64_t, double*);

// Reflection padding (gan_kernels.h): each output row is a source row with its ends
// mirrored; rows past the top or bottom take the mirrored source row.
template <typename T>
void reflect_pad(const T* x, int64_t planes, int64_t height, int64_t width, int64_t top, int64_t bottom,
                 int64_t left, int64_t right, T* y) {
  const int64_t out_height = height + top + bottom, out_width = width + left + right;
  over_planes(planes, out_height * out_width, [=](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      for (int64_t r = 0; r < out_height; ++r) {
        const int64_t h = r < top ? top - r : r - top < height ? r - top : 2 * (height - 1) - (r - top);
        const T* src = x + (p * height + h) * width;
        T* dst = y + (p * out_height + r) * out_width;
        for (int64_t j = 0; j < left; ++j) dst[j] = src[left - j];
        std::copy_n(src, width, dst + left);
        for (int64_t j = 0; j < right; ++j) dst[left + width + j] = src[width - 2 - j];
      }
  });
}

template <typename T>
void reflect_pad_backward(const T* gy, int64_t planes, int64_t height, int64_t width, int64_t top, int64_t bottom,
                          int64_t left, int64_t right, T* gx) {
  const int64_t out_height = height + top + bottom, out_width = width + left + right;
  over_planes(planes, out_height * out_width, [=](int64_t begin, int64_t end) {
    std::vector<T> rows(height * out_width);  // the rows folded, all columns still there
    for (int64_t p = begin; p < end; ++p) {
      const T* g = gy + p * out_height * out_width;
      std::copy_n(g + top * out_width, height * out_width, rows.data());
      for (int64_t i = 0; i < top; ++i)  // padded row top-1-i mirrors row 1+i
        for (int64_t c = 0; c < out_width; ++c) rows[(1 + i) * out_width + c] += g[(top - 1 - i) * out_width + c];
      for (int64_t i = 0; i < bottom; ++i)  // padded row top+height+bottom-1-i mirrors row height-1-bottom+i
        for (int64_t c = 0; c < out_width; ++c)
          rows[(height - 1 - bottom + i) * out_width + c] += g[(top + height + bottom - 1 - i) * out_width + c];
      T* out = gx + p * height * width;
      for (int64_t h = 0; h < height; ++h) {
        const T* row = rows.data() + h * out_width;
        T* dst = out + h * width;
        std::copy_n(row + left, width, dst);
        for (int64_t i = 0; i < left; ++i) dst[1 + i] += row[left - 1 - i];
        for (int64_t i = 0; i < right; ++i) dst[width - 1 - right + i] += row[left + width + right - 1 - i];
      }
    }
  });
}

// PixelShuffle (gan_kernels.h), one row of pixels at a time: output row h r + i of a
// plane interleaves row h of its taps i r, ..., i r + r - 1.
template <typename T>
void shuffle_taps(const T* in, int64_t planes, int64_t r, int64_t height, int64_t width, bool to_taps, T* out) {
  const int64_t tap_size = height * width, plane_size = r * r * tap_size;
  over_planes(planes, plane_size, [=](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      for (int64_t h = 0; h < height; ++h)
        for (int64_t i = 0; i < r; ++i) {
          const int64_t pixel_row = p * plane_size + (h * r + i) * width * r;
          for (int64_t j = 0; j < r; ++j) {
            const int64_t tap_row = p * plane_size + (i * r + j) * tap_size + h * width;
            if (to_taps) {
              for (int64_t w = 0; w < width; ++w) out[tap_row + w] = in[pixel_row + w * r + j];
            } else {
              for (int64_t w = 0; w < width; ++w) out[pixel_row + w * r + j] = in[tap_row + w];
            }
          }
        }
  });
}

template void shuffle_taps<float>(const float*, int64_t, int64_t, int64_t, int64_t, bool, float*);
template void shuffle_taps<double>(const double*, int64_t, int64_t, int64_t, int64_t, bool, double*);
template void reflect_pad<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
template void reflect_pad<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                  double*);
template void reflect_pad_backward<float>(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, float*);
template void reflect_pad_backward<double>(const double*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                           int64_t, double*);
template <typename T>
void sum_leading(const T* x, int64_t rows, int64_t cols, T* out) {
  const int64_t per_thread = std::max<int64_t>(16, kElementwiseChunk / std::max<int64_t>(rows, 1));
  parallel_for_threads(cols, per_thread, gemm_threads(), [=](int64_t begin, int64_t end) {
    constexpr int64_t kBlock = 1024;  // columns summed together: their partial sums stay in L1
    for (int64_t c0 = begin; c0 < end; c0 += kBlock) {
      const int64_t c1 = std::min(end, c0 + kBlock);
      std::copy(x + c0, x + c1, out + c0);
      for (int64_t r = 1; r < rows; ++r) {
        const T* row = x + r * cols;
        for (int64_t c = c0; c < c1; ++c) out[c] += row[c];
      }
    }
  });
}

#ifdef GANFORGE_ELEMENTWISE_AVX512
// NumPy's pairwise sum of n contiguous float32 values (its loops_utils.h), so that the
// result is NumPy's bit for bit: fewer than 8 added one after another; up to 128 in 8
// interleaved partial sums (one 8-lane vector here), combined pairwise, then the rest one
// by one; more, as the sum of two halves, the first a multiple of 8 long.
__attribute__((target("avx512f"))) static float pairwise_sum(const float* a, int64_t n) {
  if (n > 128) {
    const int64_t half = n / 2 - n / 2 % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
  }
  float sum = 0.0f;
  int64_t i = 0;
  if (n >= 8) {
    __m256 partial = _mm256_loadu_ps(a);
    for (i = 8; i < n - n % 8; i += 8) partial = _mm256_add_ps(partial, _mm256_loadu_ps(a + i));
    alignas(32) float r[8];
    _mm256_store_ps(r, partial);
    sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  }
  for (; i < n; ++i) sum += a[i];
  return sum;
}

void sum_rows(const float* x, int64_t rows, int64_t length, float* out) {
  parallel_for_threads(rows, std::max<int64_t>(1, kElementwiseChunk / std::max<int64_t>(length, 1)), gemm_threads(),
                       [=](int64_t begin, int64_t end) {
                         for (int64_t r = begin; r < end; ++r) out[r] = pairwise_sum(x + r * length, length);
                       });
}

bool sum_rows_supported() { return __builtin_cpu_supports("avx512f"); }
#else
void sum_rows(const float*, int64_t, int64_t, float*) {
  throw std::runtime_error("sum_rows needs an x86-64 CPU with AVX-512F");
}

bool sum_rows_supported() { return false; }
#endif

#ifdef GANFORGE_ELEMENTWISE_AVX512
// Resampling (gan_kernels.h) as two passes over each plane: each output row a sum of a few
// input rows, and each output column a sum of a few input columns. Upsampling combines the
// columns first (on the fewer input rows), downsampling the rows first.
//
// The rows are combined 16 columns to a vector, from the nonzero entries of R. The columns
// are combined as a product with C^T, held as `kVectors` vectors per input column (zeros
// included), each output row summed in registers, four rows at a time. (A scalar sum of
// the few nonzero terms per output column took longer than NumPy's dense products.)
struct SparseRows {  // row i's nonzero entries: weight[k] on input index[k], k in [start[i], start[i + 1])
  std::vector<int64_t> start{0}, index;
  std::vector<float> weight;
  SparseRows(const float* dense, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j)
        if (dense[i * cols + j] != 0.0f) {
          index.push_back(j);
          weight.push_back(dense[i * cols + j]);
        }
      start.push_back(int64_t(index.size()));
    }
  }
};

__attribute__((target("avx512f"))) static void combine_rows(const float* in, int64_t n_cols, const SparseRows& rows,
                                                             int64_t out_height, float* out) {
  for (int64_t i = 0; i < out_height; ++i)
    for (int64_t c = 0; c < n_cols; c += 16) {
      const __mmask16 live = __mmask16(n_cols - c >= 16 ? 0xFFFF : (1u << (n_cols - c)) - 1);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t k = rows.start[i]; k < rows.start[i + 1]; ++k)
        sum = _mm512_fmadd_ps(_mm512_set1_ps(rows.weight[k]), _mm512_maskz_loadu_ps(live, in + rows.index[k] * n_cols + c),
                              sum);
      _mm512_mask_storeu_ps(out + i * n_cols + c, live, sum);
    }
}

template <int kVectors>
__attribute__((target("avx512f"))) static void combine_columns(const float* in, int64_t n_rows, int64_t width,
                                                                const float* cols_t, int64_t out_width, float* out) {
  constexpr int64_t kRowsAtOnce = 4;
  const __mmask16 last = __mmask16((1u << (out_width - 16 * (kVectors - 1))) - 1);
  for (int64_t r = 0; r < n_rows; r += kRowsAtOnce) {
    const float* row[kRowsAtOnce];
    for (int64_t q = 0; q < kRowsAtOnce; ++q) row[q] = in + std::min(r + q, n_rows - 1) * width;
    __m512 acc[kRowsAtOnce][kVectors];
    for (int64_t q = 0; q < kRowsAtOnce; ++q)
      for (int v = 0; v < kVectors; ++v) acc[q][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < width; ++b) {
      __m512 c[kVectors];
      for (int v = 0; v < kVectors; ++v) c[v] = _mm512_loadu_ps(cols_t + (b * kVectors + v) * 16);
      for (int64_t q = 0; q < kRowsAtOnce; ++q) {
        const __m512 value = _mm512_set1_ps(row[q][b]);
        for (int v = 0; v < kVectors; ++v) acc[q][v] = _mm512_fmadd_ps(value, c[v], acc[q][v]);
      }
    }
    for (int64_t q = 0; q < std::min(kRowsAtOnce, n_rows - r); ++q)
      for (int v = 0; v < kVectors; ++v)
        _mm512_mask_storeu_ps(out + (r + q) * out_width + 16 * v, v == kVectors - 1 ? last : __mmask16(0xFFFF),
                              acc[q][v]);
  }
}

template <int kVectors>
static void resample_planes(const float* x, int64_t planes, int64_t height, int64_t width, const float* rows,
                            int64_t out_height, const float* cols, int64_t out_width, float* y) {
  const SparseRows by_row(rows, out_height, height);
  std::vector<float> cols_t(width * kVectors * 16, 0.0f);  // C^T, each input column's row padded to the vectors
  for (int64_t j = 0; j < out_width; ++j)
    for (int64_t b = 0; b < width; ++b) cols_t[b * kVectors * 16 + j] = cols[j * width + b];
  const bool rows_first = out_height <= height;
  over_planes(planes, out_height * out_width, [&](int64_t begin, int64_t end) {
    std::vector<float> between(rows_first ? out_height * width : height * out_width);
    for (int64_t p = begin; p < end; ++p) {
      const float* in = x + p * height * width;
      float* out = y + p * out_height * out_width;
      if (rows_first) {
        combine_rows(in, width, by_row, out_height, between.data());
        combine_columns<kVectors>(between.data(), out_height, width, cols_t.data(), out_width, out);
      } else {
        combine_columns<kVectors>(in, height, width, cols_t.data(), out_width, between.data());
        combine_rows(between.data(), out_width, by_row, out_height, out);
      }
    }
  });
}

bool resample_supported(int64_t out_width) { return __builtin_cpu_supports("avx512f") && out_width <= kResampleWidth; }

void resample(const float* x, int64_t planes, int64_t height, int64_t width, const float* rows, int64_t out_height,
              const float* cols, int64_t out_width, float* y) {
  if (!resample_supported(out_width))
    throw std::runtime_error("resample needs AVX-512F and an output at most " + std::to_string(kResampleWidth) +
                             " wide");
  const auto run = out_width <= 16 ? resample_planes<1> : out_width <= 32 ? resample_planes<2>
                                                         : out_width <= 48 ? resample_planes<3> : resample_planes<4>;
  run(x, planes, height, width, rows, out_height, cols, out_width, y);
}
#else
bool resample_supported(int64_t) { return false; }

void resample(const float*, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*) {
  throw std::runtime_error("resample needs an x86-64 CPU with AVX-512F");
}
#endif

template void sum_leading<float>(const float*, int64_t, int64_t, float*);
template void sum_leading<double>(const double*, int64_t, int64_t, double*);

template void prelu_forward<float>(const float*, int64_t, int64_t, int64_t, const float*, bool, float*);
template void prelu_forward<double>(const double*, int64_t, int64_t, int64_t, const double*, bool, double*);
template void prelu_backward<float>(const float*, const float*, int64_t, int64_t, int64_t, const float*, bool, float*,
                                    float*);
template void prelu_backward<double>(const double*, const double*, int64_t, int64_t, int64_t, const double*, bool,
                                     double*, double*);
template void leaky_relu_forward<float>(const float*, int64_t, float, float, float*);
template void leaky_relu_forward<double>(const double*, int64_t, double, double, double*);
template void leaky_relu_backward<float>(const float*, const float*, int64_t, float, float, float*);
template void leaky_relu_backward<double>(const double*, const double*, int64_t, double, double, double*);
template void batch_norm_forward<float>(const float*, int64_t, int64_t, int64_t, const float*, const float*, double,
                                        float*, float*, float*, float*);
template void batch_norm_forward<double>(const double*, int64_t, int64_t, int64_t, const double*, const double*,
                                         double, double*, double*, double*, double*);
template void batch_norm_backward<float>(const float*, const float*, int64_t, int64_t, int64_t, const float*,
                                         const float*, const float*, float*, float*, float*);
template void batch_norm_backward<double>(const double*, const double*, int64_t, int64_t, int64_t, const double*,
                                          const double*, const double*, double*, double*, double*);

}  // namespace ganforge

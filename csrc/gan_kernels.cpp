// Small GAN kernels: the spectral-norm power iteration, the per-sample gradient-penalty
// reduction and batch norm. All are sums over long rows, accumulated in double.
#include "gan_kernels.h"

#include "parallel.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

// Batch norm reads each channel as `batch` runs of `length` contiguous values. Channels are
// independent, so threads take whole channels; each reads its channels' data twice forward
// (statistics, then output) and twice backward (sums, then gx).
template <typename T>
void batch_norm_forward(const T* x, int64_t batch, int64_t channels, int64_t length, const T* weight, const T* bias,
                        double eps, T* y, T* mean, T* var, T* inv_std) {
  const int64_t stride = channels * length;
  const double count = double(batch * length);
  parallel_for_threads(channels, 1, gemm_threads(), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < batch; ++n) {
        const T* run = x + n * stride + c * length;
        for (int64_t l = 0; l < length; ++l) sum += run[l];
      }
      const double mu = sum / count;
      double squares = 0;
      for (int64_t n = 0; n < batch; ++n) {
        const T* run = x + n * stride + c * length;
        for (int64_t l = 0; l < length; ++l) squares += (run[l] - mu) * (run[l] - mu);
      }
      const double sigma2 = squares / count, inv = 1.0 / std::sqrt(sigma2 + eps);
      mean[c] = T(mu), var[c] = T(sigma2), inv_std[c] = T(inv);
      // y = (x - mean) scale + shift: centring first keeps float32 exact where the mean
      // is large against the spread
      const T center = T(mu), scale = T(inv) * (weight ? weight[c] : T(1)), shift = bias ? bias[c] : T(0);
      for (int64_t n = 0; n < batch; ++n) {
        const T* run = x + n * stride + c * length;
        T* out = y + n * stride + c * length;
        for (int64_t l = 0; l < length; ++l) out[l] = (run[l] - center) * scale + shift;
      }
    }
  });
}

template <typename T>
void batch_norm_backward(const T* x, const T* gy, int64_t batch, int64_t channels, int64_t length, const T* weight,
                         const T* mean, const T* inv_std, T* gx, T* gweight, T* gbias) {
  const int64_t stride = channels * length;
  const double count = double(batch * length);
  parallel_for_threads(channels, 1, gemm_threads(), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const double mu = mean[c], inv = inv_std[c];
      double gbeta = 0, ggamma = 0;
      for (int64_t n = 0; n < batch; ++n) {
        const T* run = x + n * stride + c * length;
        const T* g = gy + n * stride + c * length;
        for (int64_t l = 0; l < length; ++l) {
          gbeta += g[l];
          ggamma += g[l] * ((run[l] - mu) * inv);
        }
      }
      if (gweight) gweight[c] = T(ggamma);
      if (gbias) gbias[c] = T(gbeta);
      // gx = a gy + b (x - mean) + d: the formula with its per-channel factors gathered
      const double scale = (weight ? double(weight[c]) : 1.0) * inv / count;
      const T a = T(scale * count), b = T(-scale * ggamma * inv), d = T(-scale * gbeta), center = T(mu);
      for (int64_t n = 0; n < batch; ++n) {
        const T* run = x + n * stride + c * length;
        const T* g = gy + n * stride + c * length;
        T* out = gx + n * stride + c * length;
        for (int64_t l = 0; l < length; ++l) out[l] = a * g[l] + b * (run[l] - center) + d;
      }
    }
  });
}

template void power_iteration<float>(const float*, int64_t, int64_t, float*, float*, int, double);
template void power_iteration<double>(const double*, int64_t, int64_t, double*, double*, int, double);
template void per_sample_norms<float>(const float*, int64_t, int64_t, float*);
template void per_sample_norms<double>(const double*, int64_t, int64_t, double*);
template void batch_norm_forward<float>(const float*, int64_t, int64_t, int64_t, const float*, const float*, double,
                                        float*, float*, float*, float*);
template void batch_norm_forward<double>(const double*, int64_t, int64_t, int64_t, const double*, const double*,
                                         double, double*, double*, double*, double*);
template void batch_norm_backward<float>(const float*, const float*, int64_t, int64_t, int64_t, const float*,
                                         const float*, const float*, float*, float*, float*);
template void batch_norm_backward<double>(const double*, const double*, int64_t, int64_t, int64_t, const double*,
                                          const double*, const double*, double*, double*, double*);

}  // namespace ganforge

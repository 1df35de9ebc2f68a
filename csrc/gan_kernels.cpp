// Two small GAN kernels: the spectral-norm power iteration and the per-sample
// gradient-penalty reduction. Both are sums over long rows, accumulated in double.
#include "gan_kernels.h"

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

template void power_iteration<float>(const float*, int64_t, int64_t, float*, float*, int, double);
template void power_iteration<double>(const double*, int64_t, int64_t, double*, double*, int, double);
template void per_sample_norms<float>(const float*, int64_t, int64_t, float*);
template void per_sample_norms<double>(const double*, int64_t, int64_t, double*);

}  // namespace ganforge

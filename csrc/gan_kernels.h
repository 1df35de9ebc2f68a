#pragma once
#include <cstdint>

namespace ganforge {

// `iterations` rounds of v = W^T u / |W^T u|, u = W v / |W v| on a (rows, cols) matrix;
// u (rows) is read and both u and v (cols) are written.
template <typename T>
void power_iteration(const T* w, int64_t rows, int64_t cols, T* u, T* v, int iterations, double eps);

// norms[n] = sqrt(sum_k g[n, k]^2) for a (batch, features) matrix.
template <typename T>
void per_sample_norms(const T* g, int64_t batch, int64_t features, T* norms);

}  // namespace ganforge

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

// Batch norm in training mode over x (batch, channels, length), per channel: mean,
// var (biased) and inv_std = 1 / sqrt(var + eps) out, and y = (x - mean) inv_std weight
// + bias (weight and bias may be null: 1 and 0). Sums in double; channels split between
// threads.
template <typename T>
void batch_norm_forward(const T* x, int64_t batch, int64_t channels, int64_t length, const T* weight, const T* bias,
                        double eps, T* y, T* mean, T* var, T* inv_std);

// Its gradient: gbeta = sum(gy), ggamma = sum(gy x_hat) per channel, and
// gx = weight inv_std / M (M gy - gbeta - x_hat ggamma), with x_hat recomputed from x.
template <typename T>
void batch_norm_backward(const T* x, const T* gy, int64_t batch, int64_t channels, int64_t length, const T* weight,
                         const T* mean, const T* inv_std, T* gx, T* gweight, T* gbias);

// y = x where x > 0, else slope x (ReLU: slope 0, with NaN kept and -inf giving 0, as
// NumPy's maximum(x, 0) does), then times gain unless it is 1 (StyleGAN2's sqrt 2), over
// n contiguous values, on the GEMM's threads.
template <typename T>
void leaky_relu_forward(const T* x, int64_t n, T slope, T gain, T* y);

// gx = (gy times gain) where x > 0, else (gy times gain) times slope: the gradients of the
// gain's product and of the activation, one after the other.
template <typename T>
void leaky_relu_backward(const T* x, const T* gy, int64_t n, T slope, T gain, T* gx);

// PReLU over x (batch, channels, length): y = x where x > 0, else slope x, with channel
// c's slope slopes[c] (slopes[0] for all where shared); NaN and -inf as leaky_relu_forward.
// Planes split between threads.
template <typename T>
void prelu_forward(const T* x, int64_t batch, int64_t channels, int64_t length, const T* slopes, bool shared, T* y);
// Its gradient: gx = gy where x > 0, else slope gy; and gslopes (channels values, or one
// where shared) = the sum of gy min(x, 0) over each slope's values, summed in double.
// Channels split between threads.
template <typename T>
void prelu_backward(const T* x, const T* gy, int64_t batch, int64_t channels, int64_t length, const T* slopes,
                    bool shared, T* gx, T* gslopes);
// out = a + b or a * b (kMultiply) for a of n contiguous floats viewed as rows of `length`,
// and b of `period` floats, on the GEMM's threads. With per_row, one value per row: row r
// takes b[r % period] (NumPy's broadcasting of a per-channel (N, C, 1, 1) or (1, C, 1, 1)
// array, or a scalar, over an (N, C, H, W) one). Without, b is a's size, or rows of
// `length` each serving n / period neighbouring rows of a: row r takes b's row
// r / (n / period) (a per-sample (N, 1, H, W) image, such as StyleGAN2's noise, over
// (N, C, H, W), length H*W).
template <bool kMultiply>
void binary_rows(const float* a, const float* b, int64_t n, int64_t length, int64_t period, bool per_row, float* out);

// Adam's scalars for one step, each already rounded to T (as NumPy rounds a Python float
// that meets a float32 array): the betas and one minus each, sqrt(1 - beta2^step), eps,
// and the step size lr / (1 - beta1^step).
template <typename T>
struct AdamScalars {
  T beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_root, eps, step_size;
};

// One Adam step in place over n contiguous values, in the order and precision of
// ganforge's NumPy Adam (ganforge/optim.py, adam_step_ref), so that results agree bit for
// bit: m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
// param -= step_size m / (sqrt(v) / bias_correction2_root + eps).
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, const AdamScalars<T>& s);

// Reflection padding of `planes` images of height x width (each C-contiguous, one after
// the other) by top, bottom, left and right (each smaller than its side), as
// np.pad(mode="reflect"): [a b c] -> [c b | a b c | b a]. Planes split between threads.
template <typename T>
void reflect_pad(const T* x, int64_t planes, int64_t height, int64_t width, int64_t top, int64_t bottom,
                 int64_t left, int64_t right, T* y);

// Its adjoint: each padded entry of gy added onto the entry it mirrors, the rows folded
// first and then the columns, in the order ops/shape.py's PadReflectGrad adds them (so
// that the sums are its own bit for bit). gx is (planes, height, width).
template <typename T>
void reflect_pad_backward(const T* gy, int64_t planes, int64_t height, int64_t width, int64_t top, int64_t bottom,
                          int64_t left, int64_t right, T* gx);

// PixelShuffle between (planes, r*r, height, width) taps and (planes, height*r, width*r)
// pixels: pixel (h r + i, w r + j) of plane p is tap i r + j of plane p at (h, w). From
// taps to pixels, or (to_taps) back: PixelUnshuffle. Plain copies, planes split between
// threads.
template <typename T>
void shuffle_taps(const T* in, int64_t planes, int64_t r, int64_t height, int64_t width, bool to_taps, T* out);

// out[c] = sum over r of x[r, c] for a C-contiguous (rows, cols) x, added in the order of
// the rows, as NumPy's sum over a leading axis adds them (so the result is its own bit for
// bit); the columns split between threads.
template <typename T>
void sum_leading(const T* x, int64_t rows, int64_t cols, T* out);

// out[r] = the sum of row r of a C-contiguous float32 (rows, length) x, added in NumPy's
// pairwise order (its sum over the last axes, bit for bit); rows split between threads.
// Needs AVX-512F (sum_rows_supported); elsewhere NumPy sums.
bool sum_rows_supported();
void sum_rows(const float* x, int64_t rows, int64_t length, float* out);

// y[p] = R x[p] C^T for `planes` float32 images x[p] of height x width (each C-contiguous,
// one after the other): R (out_height x height) and C (out_width x width) dense,
// row-major, and mostly zeros (ops/resample.py: interpolation, pooling, bicubic
// resizing). Planes split between threads. Needs AVX-512F and an output at most
// kResampleWidth wide (resample_supported); elsewhere NumPy's products do it.
constexpr int64_t kResampleWidth = 64;
bool resample_supported(int64_t out_width);
void resample(const float* x, int64_t planes, int64_t height, int64_t width, const float* rows, int64_t out_height,
              const float* cols, int64_t out_width, float* y);

}  // namespace ganforge

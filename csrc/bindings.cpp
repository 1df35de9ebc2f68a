// The one pybind11 module of ganforge: ganforge._C.
// Every entry point checks shapes, dtypes and strides before it touches
// memory, and raises ValueError naming the argument at fault.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <climits>
#include <vector>
#include <array>
#include <string>

#include "conv_direct.h"
#include "gan_kernels.h"
#include "gemm.h"
#include "im2col.h"
#include "parallel.h"

namespace py = pybind11;
using ganforge::ConvGeometry;

namespace {

using Pair = std::array<int64_t, 2>;

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

void check_float_contiguous(const py::array& a, const char* name, py::ssize_t ndim) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) +
                          "-D, got shape " + shape_of(a));
  if (!a.dtype().is(py::dtype::of<float>()) && !a.dtype().is(py::dtype::of<double>()))
    throw py::value_error(std::string(name) + " must be float32 or float64, got " +
                          std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
}

void check_positive(const Pair& p, const char* name, bool allow_zero = false) {
  for (int64_t v : p)
    if (v < 0 || (v == 0 && !allow_zero))
      throw py::value_error(std::string(name) + " must be " + (allow_zero ? "non-negative" : "positive") +
                            ", got (" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")");
}

ConvGeometry geometry(int64_t n, int64_t c, int64_t h, int64_t w, Pair kernel, Pair stride,
                      Pair padding, Pair dilation) {
  check_positive(kernel, "kernel_size");
  check_positive(stride, "stride");
  check_positive(padding, "padding", /*allow_zero=*/true);
  check_positive(dilation, "dilation");
  ConvGeometry g{n, c, h, w, kernel[0], kernel[1], stride[0], stride[1],
                 padding[0], padding[1], dilation[0], dilation[1], 0, 0};
  const int64_t span_h = dilation[0] * (kernel[0] - 1) + 1;
  const int64_t span_w = dilation[1] * (kernel[1] - 1) + 1;
  if (span_h > h + 2 * padding[0] || span_w > w + 2 * padding[1])
    throw py::value_error("kernel (" + std::to_string(span_h) + ", " + std::to_string(span_w) +
                          " with dilation) is larger than the padded input (" +
                          std::to_string(h + 2 * padding[0]) + ", " + std::to_string(w + 2 * padding[1]) + ")");
  g.out_h = (h + 2 * padding[0] - span_h) / stride[0] + 1;
  g.out_w = (w + 2 * padding[1] - span_w) / stride[1] + 1;
  return g;
}

template <typename T>
py::array run_im2col(const py::array& x, const ConvGeometry& g, bool batch_in_columns) {
  const int64_t rows = g.channels * g.kernel_h * g.kernel_w, positions = g.out_h * g.out_w;
  py::array_t<T> cols = batch_in_columns ? py::array_t<T>({rows, g.batch * positions})
                                         : py::array_t<T>({g.batch, rows, positions});
  const T* src = static_cast<const T*>(x.data());
  T* dst = cols.mutable_data();
  {
    py::gil_scoped_release release;
    ganforge::im2col<T>(src, dst, g, batch_in_columns);
  }
  return cols;
}

template <typename T>
py::array run_col2im(const py::array& cols, const ConvGeometry& g, bool batch_in_columns) {
  py::array_t<T> x({g.batch, g.channels, g.height, g.width});
  const T* src = static_cast<const T*>(cols.data());
  T* dst = x.mutable_data();
  {
    py::gil_scoped_release release;
    ganforge::col2im<T>(src, dst, g, batch_in_columns);
  }
  return x;
}

py::array im2col(const py::array& x, Pair kernel, Pair stride, Pair padding, Pair dilation, bool batch_in_columns) {
  check_float_contiguous(x, "x", 4);
  ConvGeometry g = geometry(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kernel, stride, padding, dilation);
  if (x.dtype().is(py::dtype::of<float>())) return run_im2col<float>(x, g, batch_in_columns);
  return run_im2col<double>(x, g, batch_in_columns);
}

py::array col2im(const py::array& cols, int64_t batch, int64_t channels, Pair image_size, Pair kernel, Pair stride,
                 Pair padding, Pair dilation, bool batch_in_columns) {
  check_float_contiguous(cols, "cols", batch_in_columns ? 2 : 3);
  if (channels <= 0) throw py::value_error("channels must be positive, got " + std::to_string(channels));
  if (batch <= 0) throw py::value_error("batch must be positive, got " + std::to_string(batch));
  check_positive(image_size, "image_size");
  ConvGeometry g = geometry(batch, channels, image_size[0], image_size[1], kernel, stride, padding, dilation);
  const int64_t rows = channels * g.kernel_h * g.kernel_w, area = g.out_h * g.out_w;
  const bool fits = batch_in_columns ? cols.shape(0) == rows && cols.shape(1) == batch * area
                                     : cols.shape(0) == batch && cols.shape(1) == rows && cols.shape(2) == area;
  if (!fits)
    throw py::value_error("cols has shape " + shape_of(cols) + " but this geometry needs " +
                          (batch_in_columns ? "(" + std::to_string(rows) + ", " + std::to_string(batch * area) + ")"
                                            : "(" + std::to_string(batch) + ", " + std::to_string(rows) + ", " +
                                                  std::to_string(area) + ")"));
  if (cols.dtype().is(py::dtype::of<float>())) return run_col2im<float>(cols, g, batch_in_columns);
  return run_col2im<double>(cols, g, batch_in_columns);
}

void check_same_dtype(const py::array& a, const py::array& b, const char* name_a, const char* name_b) {
  if (!a.dtype().is(b.dtype()))
    throw py::value_error(std::string(name_a) + " and " + name_b + " must have the same dtype, got " +
                          std::string(py::str(a.dtype())) + " and " + std::string(py::str(b.dtype())));
}

template <typename T>
py::tuple run_power_iteration(const py::array& w, const py::array& u, int iterations, double eps) {
  const int64_t rows = w.shape(0), cols = w.shape(1);
  py::array_t<T> u_out(rows), v_out(cols);
  std::copy(static_cast<const T*>(u.data()), static_cast<const T*>(u.data()) + rows, u_out.mutable_data());
  {
    py::gil_scoped_release release;
    ganforge::power_iteration<T>(static_cast<const T*>(w.data()), rows, cols, u_out.mutable_data(),
                                 v_out.mutable_data(), iterations, eps);
  }
  return py::make_tuple(u_out, v_out);
}

py::tuple power_iteration(const py::array& w, const py::array& u, int iterations, double eps) {
  check_float_contiguous(w, "weight_matrix", 2);
  check_float_contiguous(u, "u", 1);
  check_same_dtype(w, u, "weight_matrix", "u");
  if (u.shape(0) != w.shape(0))
    throw py::value_error("u has " + std::to_string(u.shape(0)) + " elements but weight_matrix has shape " +
                          shape_of(w) + ": u needs one per row");
  if (iterations < 1) throw py::value_error("iterations must be at least 1, got " + std::to_string(iterations));
  if (w.dtype().is(py::dtype::of<float>())) return run_power_iteration<float>(w, u, iterations, eps);
  return run_power_iteration<double>(w, u, iterations, eps);
}

template <typename T>
py::array run_per_sample_norms(const py::array& g) {
  const int64_t batch = g.shape(0), features = g.shape(1);
  py::array_t<T> norms(batch);
  {
    py::gil_scoped_release release;
    ganforge::per_sample_norms<T>(static_cast<const T*>(g.data()), batch, features, norms.mutable_data());
  }
  return norms;
}

py::array per_sample_norms(const py::array& g) {
  check_float_contiguous(g, "grad", 2);
  if (g.dtype().is(py::dtype::of<float>())) return run_per_sample_norms<float>(g);
  return run_per_sample_norms<double>(g);
}

// Element strides of a float32 array (NumPy gives them in bytes).
std::array<int64_t, 3> element_strides(const py::array& a) {
  std::array<int64_t, 3> strides{};
  for (py::ssize_t d = 0; d < 3; ++d) {
    if (a.strides(d) % static_cast<py::ssize_t>(sizeof(float)))
      throw py::value_error("gemm: an operand's strides must be whole elements, got " +
                            std::to_string(a.strides(d)) + " bytes");
    strides[d] = a.strides(d) / static_cast<py::ssize_t>(sizeof(float));
  }
  return strides;
}

// For each i: out[i] = a[i] @ b[i], or += with accumulate. a (B, M, K), b (B, K, N) and
// out (B, M, N) are float32 views with any strides; a batch stride of 0 in out sums the
// batch into one matrix (a weight gradient over the samples). With a bias (N floats,
// contiguous) or a slope, each finished product gets the epilogue of gemm.h: + bias, then
// leaky ReLU.
void gemm(const py::array& a, const py::array& b, py::array& out, bool accumulate, const py::object& bias,
          const py::object& slope) {
  if (!ganforge::gemm_supported()) throw std::runtime_error("gemm needs a CPU with AVX-512F");
  for (auto [x, name] : {std::pair{&a, "a"}, std::pair{&b, "b"}, std::pair{static_cast<const py::array*>(&out), "out"}}) {
    if (x->ndim() != 3) throw py::value_error(std::string("gemm: ") + name + " must be 3-D, got shape " + shape_of(*x));
    if (!x->dtype().is(py::dtype::of<float>()))
      throw py::value_error(std::string("gemm: ") + name + " must be float32, got " + std::string(py::str(x->dtype())));
  }
  if (!out.writeable()) throw py::value_error("gemm: out is read-only");
  const int64_t batch = a.shape(0), m = a.shape(1), k = a.shape(2), n = b.shape(2);
  if (b.shape(0) != batch || b.shape(1) != k || out.shape(0) != batch || out.shape(1) != m || out.shape(2) != n)
    throw py::value_error("gemm: shapes " + shape_of(a) + " @ " + shape_of(b) + " -> " + shape_of(out) +
                          " do not match (B, M, K) @ (B, K, N) -> (B, M, N)");
  const auto sa = element_strides(a), sb = element_strides(b), sc = element_strides(out);
  ganforge::Epilogue epilogue;
  py::array_t<float, py::array::c_style> bias_array;
  if (!bias.is_none()) {
    std::string got = std::string(py::str(bias.get_type().attr("__name__")));
    bool ok = false;
    if (py::isinstance<py::array>(bias)) {
      const auto values = py::reinterpret_borrow<py::array>(bias);
      ok = values.dtype().is(py::dtype::of<float>()) && values.ndim() == 1 && values.shape(0) == n;
      got = "shape " + shape_of(values) + " " + std::string(py::str(values.dtype()));
    }
    if (!ok)
      throw py::value_error("gemm: bias must be a 1-D float32 array of " + std::to_string(n) + " values, got " + got);
    bias_array = py::array_t<float, py::array::c_style>::ensure(bias);  // (a copy only if strided)
    epilogue.bias = bias_array.data();
  }
  if (!slope.is_none()) epilogue.activate = true, epilogue.slope = slope.cast<float>();
  if (epilogue.any() && (accumulate || (sc[0] == 0 && batch > 1)))
    throw py::value_error("gemm: a bias or slope applies to a finished product, not with accumulate or a summed batch");
  const float* pa = static_cast<const float*>(a.data());
  const float* pb = static_cast<const float*>(b.data());
  float* pc = static_cast<float*>(out.mutable_data());
  py::gil_scoped_release release;
  for (int64_t i = 0; i < batch; ++i)
    ganforge::sgemm(m, n, k, pa + i * sa[0], sa[1], sa[2], pb + i * sb[0], sb[1], sb[2], pc + i * sc[0], sc[1],
                    sc[2], accumulate || (sc[0] == 0 && i > 0), epilogue);
}

// One operand of gemm_gathered, unpacked from Python's (data, rows, cols, (height, width)):
// rows and cols are int64 (count, 3) tables of (base, y, x), and element (i, j) is pixel
// (y_i + y_j, x_i + x_j) of the height x width image at data[base_i + base_j].
struct GatheredTables {
  std::vector<int32_t> row[3], col[3];  // offset (base + y * width + x), y, x
  ganforge::GatheredOperand operand;
};

void gather_axis(const py::array_t<int64_t>& t, int64_t width, std::vector<int32_t> (&out)[3], int64_t& lo,
                 int64_t& hi, const std::string& name) {
  if (t.ndim() != 2 || t.shape(1) != 3)
    throw py::value_error("gemm_gathered: " + name + " must be an (n, 3) table of (base, y, x), got shape " +
                          shape_of(t));
  auto v = t.unchecked<2>();
  for (auto& column : out) column.resize(t.shape(0));
  lo = INT64_MAX, hi = INT64_MIN;
  for (py::ssize_t i = 0; i < t.shape(0); ++i) {
    const int64_t offset = v(i, 0) + v(i, 1) * width + v(i, 2);
    if (offset != int32_t(offset) || v(i, 1) != int32_t(v(i, 1)) || v(i, 2) != int32_t(v(i, 2)))
      throw py::value_error("gemm_gathered: " + name + " has an offset beyond 32 bits");
    out[0][i] = int32_t(offset), out[1][i] = int32_t(v(i, 1)), out[2][i] = int32_t(v(i, 2));
    lo = std::min(lo, v(i, 0)), hi = std::max(hi, v(i, 0));
  }
}

// The data and tables of one of gemm_gathered's operands, or of its output.
py::array gathered_tables(const py::tuple& spec, const char* name, GatheredTables& t, bool output) {
  if (output ? spec.size() != 5u && spec.size() != 6u : spec.size() != 4u)
    throw py::value_error(std::string("gemm_gathered: ") + name + " must be (data, rows, cols, (height, width)" +
                          (output ? ", row_group[, col_group])" : ")"));
  auto data = spec[0].cast<py::array>();
  if (!data.dtype().is(py::dtype::of<float>()) || !(data.flags() & py::array::c_style) ||
      (output && !data.writeable()))
    throw py::value_error(std::string("gemm_gathered: ") + name + "'s data must be a " +
                          (output ? "writable " : "") + "C-contiguous float32 array");
  if (data.size() > INT32_MAX)
    throw py::value_error(std::string("gemm_gathered: ") + name + " has more than 2^31 elements");
  auto image = spec[3].cast<Pair>();
  if (image[0] < 1 || image[1] < 1)
    throw py::value_error(std::string("gemm_gathered: ") + name + "'s image size must be positive");
  using Table = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
  int64_t row_lo, row_hi, col_lo, col_hi;
  gather_axis(spec[1].cast<Table>(), image[1], t.row, row_lo, row_hi, std::string(name) + "'s rows");
  gather_axis(spec[2].cast<Table>(), image[1], t.col, col_lo, col_hi, std::string(name) + "'s cols");
  // Every pixel inside the image must lie inside data, whichever row and column meet.
  if (!t.row[0].empty() && !t.col[0].empty() &&
      (row_lo + col_lo < 0 || row_hi + col_hi + image[0] * image[1] > data.size()))
    throw py::value_error(std::string("gemm_gathered: ") + name + "'s tables reach outside its data (" +
                          std::to_string(data.size()) + " elements)");
  t.operand = {static_cast<const float*>(data.data()),
               {t.row[0].data(), t.row[1].data(), t.row[2].data()},
               {t.col[0].data(), t.col[1].data(), t.col[2].data()},
               image[0],
               image[1]};
  return data;
}

// out (+)= a @ b for operands gathered from images (gemm.h): a, b and out are each
// (data, rows, cols, (height, width)) with int64 (count, 3) tables of (base, y, x), where
// element (i, j) is pixel (y_i + y_j, x_i + x_j) of the height x width image at
// data[base_i + base_j]; out has a fifth entry, its row_group, and may have a sixth, its
// col_group (gemm.h).
void gemm_gathered(const py::tuple& a, const py::tuple& b, const py::tuple& out, bool accumulate) {
  if (!ganforge::gemm_supported()) throw std::runtime_error("gemm_gathered needs a CPU with AVX-512F");
  GatheredTables ta, tb, tc;
  gathered_tables(a, "a", ta, false);
  gathered_tables(b, "b", tb, false);
  py::array c = gathered_tables(out, "out", tc, true);
  const int64_t m = ta.row[0].size(), k = ta.col[0].size(), n = tb.col[0].size();
  if (k != int64_t(tb.row[0].size()))
    throw py::value_error("gemm_gathered: a has " + std::to_string(k) + " columns but b has " +
                          std::to_string(tb.row[0].size()) + " rows");
  if (int64_t(tc.row[0].size()) != m || int64_t(tc.col[0].size()) != n)
    throw py::value_error("gemm_gathered: out has " + std::to_string(tc.row[0].size()) + " rows and " +
                          std::to_string(tc.col[0].size()) + " columns but a @ b is " + std::to_string(m) + " x " +
                          std::to_string(n));
  const int64_t row_group = out[4].cast<int64_t>(), col_group = out.size() > 5 ? out[5].cast<int64_t>() : 0;
  if (row_group < 0 || (row_group > 0 && m % row_group))
    throw py::value_error("gemm_gathered: out's row_group must be 0 or divide its " + std::to_string(m) +
                          " rows, got " + std::to_string(row_group));
  if (col_group < 0 || (col_group > 0 && n % col_group))
    throw py::value_error("gemm_gathered: out's col_group must be 0 or divide its " + std::to_string(n) +
                          " columns, got " + std::to_string(col_group));
  const ganforge::GatheredOutput output{static_cast<float*>(c.mutable_data()), tc.operand.row, tc.operand.col,
                                        tc.operand.height, tc.operand.width, row_group, col_group};
  py::gil_scoped_release release;
  ganforge::sgemm_gathered(m, n, k, ta.operand, tb.operand, output, accumulate);
}

// A gradient gy that a kernel reads beside x: same shape and dtype, C-contiguous.
void check_gradient_like(const py::array& x, const py::array& gy, const char* kernel) {
  if (!gy.dtype().is(x.dtype()) || gy.ndim() != x.ndim() || !std::equal(x.shape(), x.shape() + x.ndim(), gy.shape()) ||
      !(gy.flags() & py::array::c_style))
    throw py::value_error(std::string(kernel) + ": gy must be a C-contiguous array of x's shape and dtype, got " +
                          shape_of(gy));
}

// x (N, C, ...) as (batch, channels, length) for the batch-norm kernels, with checks.
std::array<int64_t, 3> batch_channels_length(const py::array& x) {
  if (x.ndim() < 2) throw py::value_error("batch_norm: x must be (N, C, ...), got shape " + shape_of(x));
  if (!(x.flags() & py::array::c_style)) throw py::value_error("batch_norm: x must be C-contiguous");
  int64_t length = 1;
  for (py::ssize_t d = 2; d < x.ndim(); ++d) length *= x.shape(d);
  return {x.shape(0), x.shape(1), length};
}

const void* optional_vector(const py::object& v, const py::array& x, const char* name) {
  if (v.is_none()) return nullptr;
  auto a = v.cast<py::array>();
  if (a.ndim() != 1 || a.shape(0) != x.shape(1) || !a.dtype().is(x.dtype()) || !(a.flags() & py::array::c_style))
    throw py::value_error(std::string("batch_norm: ") + name + " must be a contiguous (" + std::to_string(x.shape(1)) +
                          ",) vector of x's dtype, got " + shape_of(a) + " " + std::string(py::str(a.dtype())));
  return a.data();
}

template <typename T>
py::tuple run_batch_norm_forward(const py::array& x, const py::object& weight, const py::object& bias, double eps) {
  const auto [n, c, l] = batch_channels_length(x);
  py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim())), mean(c), var(c), inv_std(c);
  const T* w = static_cast<const T*>(optional_vector(weight, x, "weight"));
  const T* b = static_cast<const T*>(optional_vector(bias, x, "bias"));
  {
    py::gil_scoped_release release;
    ganforge::batch_norm_forward<T>(static_cast<const T*>(x.data()), n, c, l, w, b, eps, y.mutable_data(),
                                    mean.mutable_data(), var.mutable_data(), inv_std.mutable_data());
  }
  return py::make_tuple(y, mean, var, inv_std);
}

py::tuple batch_norm_forward(const py::array& x, const py::object& weight, const py::object& bias, double eps) {
  if (x.dtype().is(py::dtype::of<float>())) return run_batch_norm_forward<float>(x, weight, bias, eps);
  if (x.dtype().is(py::dtype::of<double>())) return run_batch_norm_forward<double>(x, weight, bias, eps);
  throw py::value_error("batch_norm: x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

template <typename T>
py::tuple run_batch_norm_backward(const py::array& x, const py::array& gy, const py::object& weight,
                                  const py::array& mean, const py::array& inv_std) {
  const auto [n, c, l] = batch_channels_length(x);
  py::array_t<T> gx(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim())), gweight(c), gbias(c);
  const T* w = static_cast<const T*>(optional_vector(weight, x, "weight"));
  optional_vector(mean, x, "mean");
  optional_vector(inv_std, x, "inv_std");
  {
    py::gil_scoped_release release;
    ganforge::batch_norm_backward<T>(static_cast<const T*>(x.data()), static_cast<const T*>(gy.data()), n, c, l, w,
                                     static_cast<const T*>(mean.data()), static_cast<const T*>(inv_std.data()),
                                     gx.mutable_data(), gweight.mutable_data(), gbias.mutable_data());
  }
  return py::make_tuple(gx, gweight, gbias);
}

py::tuple batch_norm_backward(const py::array& x, const py::array& gy, const py::object& weight, const py::array& mean,
                              const py::array& inv_std) {
  check_gradient_like(x, gy, "batch_norm");
  if (x.dtype().is(py::dtype::of<float>())) return run_batch_norm_backward<float>(x, gy, weight, mean, inv_std);
  if (x.dtype().is(py::dtype::of<double>())) return run_batch_norm_backward<double>(x, gy, weight, mean, inv_std);
  throw py::value_error("batch_norm: x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

template <typename T>
py::array run_leaky_relu(const py::array& x, const py::object& gy, double slope, double gain) {
  py::array_t<T> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const T* px = static_cast<const T*>(x.data());
  const T* pg = gy.is_none() ? nullptr : static_cast<const T*>(gy.cast<py::array>().data());
  T* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    if (pg) {
      ganforge::leaky_relu_backward<T>(px, pg, x.size(), T(slope), T(gain), po);
    } else {
      ganforge::leaky_relu_forward<T>(px, x.size(), T(slope), T(gain), po);
    }
  }
  return out;
}

// leaky_relu(x, slope) * gain, or its gradient with gy: the same kernel family, x's shape.
py::array leaky_relu(const py::array& x, double slope, const py::object& gy, double gain) {
  if (!(x.flags() & py::array::c_style)) throw py::value_error("leaky_relu: x must be C-contiguous");
  if (!gy.is_none()) {
    check_gradient_like(x, gy.cast<py::array>(), "leaky_relu");
  }
  if (x.dtype().is(py::dtype::of<float>())) return run_leaky_relu<float>(x, gy, slope, gain);
  if (x.dtype().is(py::dtype::of<double>())) return run_leaky_relu<double>(x, gy, slope, gain);
  throw py::value_error("leaky_relu: x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

template <typename T>
py::object run_prelu(const py::array& x, const py::array& slopes, const py::object& gy) {
  const int64_t batch = x.shape(0), channels = x.ndim() > 1 ? x.shape(1) : 1;
  const int64_t length = batch * channels > 0 ? x.size() / (batch * channels) : 0;
  const bool shared = slopes.size() == 1;
  const std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  const T* px = static_cast<const T*>(x.data());
  const T* ps = static_cast<const T*>(slopes.data());
  py::array_t<T> out(shape);
  T* po = out.mutable_data();
  if (gy.is_none()) {
    py::gil_scoped_release release;
    ganforge::prelu_forward<T>(px, batch, channels, length, ps, shared, po);
    return std::move(out);
  }
  py::array_t<T> gslopes(slopes.size());
  const T* pg = static_cast<const T*>(gy.cast<py::array>().data());
  T* pgs = gslopes.mutable_data();
  {
    py::gil_scoped_release release;
    ganforge::prelu_backward<T>(px, pg, batch, channels, length, ps, shared, po, pgs);
  }
  return py::make_tuple(out, gslopes);
}

// PReLU of x (N, C, ...) with slopes (C,) or (1,): y, or with gy the gradient (gx, gslopes).
py::object prelu(const py::array& x, const py::array& slopes, const py::object& gy) {
  if (x.ndim() < 1 || !(x.flags() & py::array::c_style) || !(slopes.flags() & py::array::c_style))
    throw py::value_error("prelu: x and slopes must be C-contiguous, x of 1 or more axes, got x of shape " +
                          shape_of(x));
  const int64_t channels = x.ndim() > 1 ? x.shape(1) : 1;
  if (slopes.ndim() != 1 || (slopes.size() != 1 && slopes.size() != channels))
    throw py::value_error("prelu: slopes must hold 1 slope or one per channel (" + std::to_string(channels) +
                          "), got shape " + shape_of(slopes));
  if (!slopes.dtype().is(x.dtype()))
    throw py::value_error("prelu: slopes must be x's dtype, " + std::string(py::str(x.dtype())) + ", got " +
                          std::string(py::str(slopes.dtype())));
  if (!gy.is_none()) check_gradient_like(x, gy.cast<py::array>(), "prelu");
  if (x.dtype().is(py::dtype::of<float>())) return run_prelu<float>(x, slopes, gy);
  if (x.dtype().is(py::dtype::of<double>())) return run_prelu<double>(x, slopes, gy);
  throw py::value_error("prelu: x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

// a + b or a * b, a's shape, for C-contiguous float32 a and b: b of a's size, or with
// per_row one value per row of a viewed as rows of `length` (row r takes b[r % b.size]).
py::array binary_rows(const py::array& a, const py::array& b, bool multiply, int64_t length, bool per_row,
                      const py::object& into) {
  const char* name = multiply ? "mul" : "add";
  for (const py::array* x : {&a, &b})
    if (!x->dtype().is(py::dtype::of<float>()) || !(x->flags() & py::array::c_style))
      throw py::value_error(std::string(name) + ": a and b must be C-contiguous float32 arrays, got " +
                            (x->flags() & py::array::c_style ? std::string(py::str(x->dtype()))
                                                             : std::string("a strided one")));
  const int64_t n = a.size(), period = b.size();
  if (!per_row && (length < 1 || period < 1 || n % period || (period != n && period % length)))
    throw py::value_error(std::string(name) + ": b's " + std::to_string(period) + " values are neither a " +
                          shape_of(a) + "'s nor rows of " + std::to_string(length) + " shared by its rows evenly");
  if (per_row && (length < 1 || n % length || period < 1 || (n / length) % period))
    throw py::value_error(std::string(name) + ": b's " + std::to_string(period) + " values do not repeat evenly "
                          "over the " + std::to_string(length > 0 ? n / length : 0) + " rows of " +
                          std::to_string(length) + " values of a " + shape_of(a));
  py::array out;
  if (into.is_none()) {
    out = py::array_t<float>(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
  } else {  // a itself (an in-place sum), or an array of its shape
    const bool is_array = py::isinstance<py::array>(into);
    if (is_array) out = py::reinterpret_borrow<py::array>(into);
    if (!is_array || !out.dtype().is(py::dtype::of<float>()) ||
        !(out.flags() & py::array::c_style) || !out.writeable() || out.size() != n ||
        shape_of(out) != shape_of(a) || out.data() == b.data())
      throw py::value_error(std::string(name) + ": out must be a writeable C-contiguous float32 array of a's shape " +
                            shape_of(a) + ", and not b");
  }
  const float* pa = static_cast<const float*>(a.data());
  const float* pb = static_cast<const float*>(b.data());
  float* po = static_cast<float*>(out.mutable_data());
  py::gil_scoped_release release;
  if (multiply) {
    ganforge::binary_rows<true>(pa, pb, n, length, period, per_row, po);
  } else {
    ganforge::binary_rows<false>(pa, pb, n, length, period, per_row, po);
  }
  return out;
}

// Reflection padding of the last two axes of a C-contiguous float array, images of
// height x width (gan_kernels.h), or with `backward`, its adjoint: x is then the padded
// gradient.
template <typename T>
py::array run_reflect_pad(const py::array& x, int64_t height, int64_t width, const std::array<int64_t, 4>& pad,
                          bool backward) {
  const auto [top, bottom, left, right] = pad;
  const int64_t ndim = x.ndim(), plane = x.shape(ndim - 2) * x.shape(ndim - 1);
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + ndim);
  shape[ndim - 2] = backward ? height : height + top + bottom;
  shape[ndim - 1] = backward ? width : width + left + right;
  py::array_t<T> out(shape);
  const T* px = static_cast<const T*>(x.data());
  T* po = out.mutable_data();
  if (plane > 0) {
    py::gil_scoped_release release;
    const int64_t planes = x.size() / plane;
    if (backward) {
      ganforge::reflect_pad_backward<T>(px, planes, height, width, top, bottom, left, right, po);
    } else {
      ganforge::reflect_pad<T>(px, planes, height, width, top, bottom, left, right, po);
    }
  }
  return out;
}

py::array reflect_pad(const py::array& x, const std::array<int64_t, 4>& pad, bool backward) {
  if (x.ndim() < 2 || !(x.flags() & py::array::c_style))
    throw py::value_error("reflect_pad: x must be a C-contiguous array of 2 or more axes, got shape " + shape_of(x));
  const auto [top, bottom, left, right] = pad;
  const int64_t rows = x.shape(x.ndim() - 2), cols = x.shape(x.ndim() - 1);
  const int64_t height = backward ? rows - top - bottom : rows, width = backward ? cols - left - right : cols;
  if (std::min({top, bottom, left, right}) < 0 || std::max(top, bottom) >= std::max<int64_t>(height, 1) ||
      std::max(left, right) >= std::max<int64_t>(width, 1))
    throw py::value_error("reflect_pad: each padding must be at least 0 and smaller than its side (" +
                          std::to_string(height) + " x " + std::to_string(width) + "), got (" + std::to_string(top) +
                          ", " + std::to_string(bottom) + ", " + std::to_string(left) + ", " + std::to_string(right) +
                          ")");
  if (x.dtype().is(py::dtype::of<float>())) return run_reflect_pad<float>(x, height, width, pad, backward);
  if (x.dtype().is(py::dtype::of<double>())) return run_reflect_pad<double>(x, height, width, pad, backward);
  throw py::value_error("reflect_pad: x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

// PixelShuffle of a C-contiguous (N, C r^2, H, W) x into (N, C, H r, W r), or with
// to_taps its inverse, (N, C, H r, W r) into (N, C r^2, H, W) (gan_kernels.h's shuffle_taps).
template <typename T>
py::array run_shuffle_taps(const py::array& x, int64_t r, bool to_taps) {
  const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  const std::vector<py::ssize_t> shape = to_taps ? std::vector<py::ssize_t>{n, c * r * r, h / r, w / r}
                                                 : std::vector<py::ssize_t>{n, c / (r * r), h * r, w * r};
  py::array_t<T> out(shape);
  const T* px = static_cast<const T*>(x.data());
  T* po = out.mutable_data();
  py::gil_scoped_release release;
  if (to_taps) {
    ganforge::shuffle_taps<T>(px, n * c, r, h / r, w / r, true, po);
  } else {
    ganforge::shuffle_taps<T>(px, n * (c / (r * r)), r, h, w, false, po);
  }
  return out;
}

py::array shuffle_taps(const py::array& x, int64_t r, bool to_taps) {
  if (x.ndim() != 4 || !(x.flags() & py::array::c_style))
    throw py::value_error("shuffle_taps: x must be a C-contiguous (N, C, H, W) array, got shape " + shape_of(x));
  if (r < 1) throw py::value_error("shuffle_taps: r must be at least 1, got " + std::to_string(r));
  const bool fits = to_taps ? x.shape(2) % r == 0 && x.shape(3) % r == 0 : x.shape(1) % (r * r) == 0;
  if (!fits)
    throw py::value_error("shuffle_taps: " + std::string(to_taps ? "H and W" : "C") + " must be divisible by " +
                          std::string(to_taps ? "r" : "r^2") + " (r = " + std::to_string(r) + "), got shape " +
                          shape_of(x));
  if (x.dtype().is(py::dtype::of<float>())) return run_shuffle_taps<float>(x, r, to_taps);
  if (x.dtype().is(py::dtype::of<double>())) return run_shuffle_taps<double>(x, r, to_taps);
  throw py::value_error("shuffle_taps: x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

// Each row of a C-contiguous float32 (rows, length) x summed, in NumPy's order
// (gan_kernels.h's sum_rows): (rows,).
py::array sum_rows(const py::array& x) {
  if (x.ndim() != 2 || !(x.flags() & py::array::c_style) || !x.dtype().is(py::dtype::of<float>()))
    throw py::value_error("sum_rows: x must be a C-contiguous float32 array of 2 axes, got " + shape_of(x) + " " +
                          std::string(py::str(x.dtype())));
  if (!ganforge::sum_rows_supported()) throw py::value_error("sum_rows: needs AVX-512F (sum_rows_supported)");
  py::array_t<float> out(x.shape(0));
  const float* px = static_cast<const float*>(x.data());
  float* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    ganforge::sum_rows(px, x.shape(0), x.shape(1), po);
  }
  return out;
}

// rows @ x @ cols.T over x's last two axes (gan_kernels.h's resample): x (..., H, W),
// rows (h, H), cols (w, W), all C-contiguous float32 -> (..., h, w).
py::array resample(const py::array& x, const py::array& rows, const py::array& cols) {
  if (x.ndim() < 2 || rows.ndim() != 2 || cols.ndim() != 2)
    throw py::value_error("resample: x must have 2 or more axes and rows and cols 2, got x " + shape_of(x) + ", rows " +
                          shape_of(rows) + ", cols " + shape_of(cols));
  const int64_t ndim = x.ndim(), height = x.shape(ndim - 2), width = x.shape(ndim - 1);
  if (rows.shape(1) != height || cols.shape(1) != width)
    throw py::value_error("resample: rows " + shape_of(rows) + " and cols " + shape_of(cols) +
                          " must take x's last two axes, got x " + shape_of(x));
  for (const py::array* a : {&x, &rows, &cols})
    if (!(a->flags() & py::array::c_style) || !a->dtype().is(py::dtype::of<float>()))
      throw py::value_error("resample: x, rows and cols must be C-contiguous float32 arrays, got " +
                            std::string(py::str(x.dtype())) + ", " + std::string(py::str(rows.dtype())) + ", " +
                            std::string(py::str(cols.dtype())));
  if (!ganforge::resample_supported(cols.shape(0)))
    throw py::value_error("resample: needs AVX-512F and an output at most " + std::to_string(ganforge::kResampleWidth) +
                          " wide, got " + std::to_string(cols.shape(0)) + " (resample_supported)");
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + ndim);
  shape[ndim - 2] = rows.shape(0);
  shape[ndim - 1] = cols.shape(0);
  py::array_t<float> out(shape);
  const int64_t planes = height * width > 0 ? x.size() / (height * width) : 0;
  if (out.size() > 0 && planes > 0) {
    const float *px = static_cast<const float*>(x.data()), *pr = static_cast<const float*>(rows.data()),
                *pc = static_cast<const float*>(cols.data());
    float* po = out.mutable_data();
    py::gil_scoped_release release;
    ganforge::resample(px, planes, height, width, pr, rows.shape(0), pc, cols.shape(0), po);
  } else if (out.size() > 0) {
    std::fill_n(out.mutable_data(), out.size(), 0.0f);  // an empty image resamples to zeros, as the product does
  }
  return out;
}

template <typename T>
py::array run_sum_leading(const py::array& x) {
  const int64_t rows = x.shape(0);
  py::array_t<T> out(std::vector<py::ssize_t>(x.shape() + 1, x.shape() + x.ndim()));
  const T* px = static_cast<const T*>(x.data());
  T* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    ganforge::sum_leading<T>(px, rows, x.size() / rows, po);
  }
  return out;
}

// x summed over its first axis (gan_kernels.h's sum_leading): x.shape[1:].
py::array sum_leading(const py::array& x) {
  if (x.ndim() < 1 || !(x.flags() & py::array::c_style))
    throw py::value_error("sum_leading: x must be a C-contiguous array of 1 or more axes, got shape " + shape_of(x));
  if (x.shape(0) == 0) throw py::value_error("sum_leading: x has no rows to sum (shape " + shape_of(x) + ")");
  if (x.dtype().is(py::dtype::of<float>())) return run_sum_leading<float>(x);
  if (x.dtype().is(py::dtype::of<double>())) return run_sum_leading<double>(x);
  throw py::value_error("sum_leading: x must be float32 or float64, got " + std::string(py::str(x.dtype())));
}

template <typename T>
void run_adam_step(py::array& param, const py::array& grad, py::array& exp_avg, py::array& exp_avg_sq,
                   const std::array<double, 7>& s) {
  const ganforge::AdamScalars<T> scalars{T(s[0]), T(s[1]), T(s[2]), T(s[3]), T(s[4]), T(s[5]), T(s[6])};
  T* p = static_cast<T*>(param.mutable_data());
  const T* g = static_cast<const T*>(grad.data());
  T* m = static_cast<T*>(exp_avg.mutable_data());
  T* v = static_cast<T*>(exp_avg_sq.mutable_data());
  py::gil_scoped_release release;
  ganforge::adam_step<T>(p, g, m, v, param.size(), scalars);
}

// One Adam step in place on param, exp_avg and exp_avg_sq (gan_kernels.h); `scalars` are
// (beta1, 1 - beta1, beta2, 1 - beta2, sqrt(1 - beta2^step), eps, lr / (1 - beta1^step)).
void adam_step(py::array param, const py::array& grad, py::array exp_avg, py::array exp_avg_sq,
               const std::array<double, 7>& scalars) {
  const std::pair<const char*, const py::array*> arrays[] = {
      {"param", &param}, {"grad", &grad}, {"exp_avg", &exp_avg}, {"exp_avg_sq", &exp_avg_sq}};
  for (const auto& [name, a] : arrays) {
    if (!a->dtype().is(param.dtype()) || a->ndim() != param.ndim() ||
        !std::equal(param.shape(), param.shape() + param.ndim(), a->shape()) || !(a->flags() & py::array::c_style))
      throw py::value_error(std::string("adam_step: ") + name + " must be a C-contiguous array of param's shape " +
                            shape_of(param) + " and dtype, got " + shape_of(*a) + " " + std::string(py::str(a->dtype())));
    if (a != &grad && !a->writeable()) throw py::value_error(std::string("adam_step: ") + name + " must be writable");
  }
  if (param.dtype().is(py::dtype::of<float>())) return run_adam_step<float>(param, grad, exp_avg, exp_avg_sq, scalars);
  if (param.dtype().is(py::dtype::of<double>())) return run_adam_step<double>(param, grad, exp_avg, exp_avg_sq, scalars);
  throw py::value_error("adam_step: param must be float32 or float64, got " + std::string(py::str(param.dtype())));
}

// A float32 array of exactly this shape, C-contiguous (and writable for an output).
void check_float32_shape(const py::array& a, const char* name, const std::vector<py::ssize_t>& shape, bool output,
                         const char* function = "conv_direct") {
  const bool ok = a.dtype().is(py::dtype::of<float>()) && (a.flags() & py::array::c_style) &&
                  (!output || a.writeable()) && a.ndim() == py::ssize_t(shape.size()) &&
                  std::equal(shape.begin(), shape.end(), a.shape());
  if (ok) return;
  std::string want = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
  throw py::value_error(std::string(function) + ": " + name + " must be a " + (output ? "writable " : "") +
                        "C-contiguous float32 array of shape " + want + "), got " + shape_of(a) + " " +
                        std::string(py::str(a.dtype())));
}

// conv_direct's int32 tables, converted from any integer array.
using Int32Table = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// A table of where runs of pairs start: from 0 up to the number of pairs, never down.
void check_runs(const Int32Table& start, py::ssize_t pairs, const char* name) {
  const int32_t* s = start.data();
  for (py::ssize_t i = 0; i + 1 < start.size(); ++i)
    if (s[i] > s[i + 1]) throw py::value_error(std::string(name) + " must not decrease");
  if (s[0] != 0 || s[start.size() - 1] != pairs)
    throw py::value_error(std::string(name) + " must run from 0 to the " + std::to_string(pairs) + " pairs");
}

// y (P_out, O, N) = the convolution of x (P_in, C, N) with w, pixel by pixel from the
// pairs (pair_start, in_pixel, tap) (conv_direct.h). w is (O, C/groups, KH, KW), or a
// transposed convolution's (C, O/groups, KH, KW). Every pair is checked against the sizes
// first.
void conv_direct(const py::array& x, const py::array& w, bool transposed, int64_t groups, const py::tuple& pairs,
                 py::array out) {
  if (!ganforge::gemm_supported()) throw std::runtime_error("conv_direct needs a CPU with AVX-512F");
  if (x.ndim() != 3 || w.ndim() != 4 || out.ndim() != 3)
    throw py::value_error("conv_direct: x and out must be 3-D (pixels, channels, batch) and w 4-D, got x " +
                          shape_of(x) + ", w " + shape_of(w) + ", out " + shape_of(out));
  if (groups < 1 || x.shape(1) % groups || (!transposed && w.shape(0) % groups))
    throw py::value_error("conv_direct: groups must be positive and divide x's " + std::to_string(x.shape(1)) +
                          " channels and w's " + std::to_string(w.shape(0)) + " outputs, got " + std::to_string(groups));
  const int64_t in_pixels = x.shape(0), channels = x.shape(1) / groups, batch = x.shape(2);
  const int64_t out_channels = transposed ? w.shape(1) : w.shape(0) / groups, taps = w.shape(2) * w.shape(3);
  const int64_t out_pixels = out.shape(0);
  if (w.shape(transposed ? 0 : 1) != (transposed ? x.shape(1) : channels))
    throw py::value_error("conv_direct: w " + shape_of(w) + " does not take x's " + std::to_string(x.shape(1)) +
                          " channels in " + std::to_string(groups) + " group(s)");
  check_float32_shape(x, "x", {x.shape(0), x.shape(1), x.shape(2)}, false);
  check_float32_shape(w, "w", {w.shape(0), w.shape(1), w.shape(2), w.shape(3)}, false);
  check_float32_shape(out, "out", {out_pixels, groups * out_channels, batch}, true);
  if (pairs.size() != 3u) throw py::value_error("conv_direct: pairs must be (pair_start, in_pixel, tap)");
  const auto start = pairs[0].cast<Int32Table>(), in_pixel = pairs[1].cast<Int32Table>(),
             tap = pairs[2].cast<Int32Table>();
  if (start.ndim() != 1 || start.size() != out_pixels + 1 || in_pixel.ndim() != 1 || tap.ndim() != 1 ||
      in_pixel.size() != tap.size())
    throw py::value_error("conv_direct: pairs must be 1-D: pair_start with out's " + std::to_string(out_pixels) +
                          " pixels + 1 entries, in_pixel and tap of one length; got " + shape_of(start) + ", " +
                          shape_of(in_pixel) + ", " + shape_of(tap));
  check_runs(start, in_pixel.size(), "conv_direct: pair_start");
  const int32_t* s = start.data();
  for (py::ssize_t k = 0; k < in_pixel.size(); ++k)
    if (in_pixel.data()[k] < 0 || in_pixel.data()[k] >= in_pixels || tap.data()[k] < 0 || tap.data()[k] >= taps)
      throw py::value_error("conv_direct: pair " + std::to_string(k) + " (in_pixel " +
                            std::to_string(in_pixel.data()[k]) + ", tap " + std::to_string(tap.data()[k]) +
                            ") is outside x's " + std::to_string(in_pixels) + " pixels or w's " +
                            std::to_string(taps) + " taps");
  const ganforge::DirectConv conv{static_cast<const float*>(x.data()),
                                  channels,
                                  in_pixels,
                                  batch,
                                  static_cast<const float*>(w.data()),
                                  transposed ? taps : channels * taps,
                                  transposed ? out_channels * taps : taps,
                                  taps,
                                  static_cast<float*>(out.mutable_data()),
                                  out_channels,
                                  out_pixels,
                                  groups,
                                  s,
                                  in_pixel.data(),
                                  tap.data()};
  py::gil_scoped_release release;
  ganforge::conv_direct(conv);
}

// out (T, C, O) = the weight gradient of a convolution of x (P_in, C, N) whose output
// gradient is gy (P_out, N, O), from its pairs grouped by tap into runs (run_start,
// out_pixel, in_pixel) (conv_direct.h). Every pair is checked against the sizes first.
void conv_direct_weight_grad(const py::array& x, const py::array& gy, const py::tuple& pairs, py::array out) {
  if (!ganforge::gemm_supported()) throw std::runtime_error("conv_direct_weight_grad needs a CPU with AVX-512F");
  if (x.ndim() != 3 || gy.ndim() != 3 || out.ndim() != 3)
    throw py::value_error("conv_direct_weight_grad: x (pixels, channels, batch), gy (pixels, batch, channels) and "
                          "out (taps, channels, out_channels) must be 3-D, got x " + shape_of(x) + ", gy " +
                          shape_of(gy) + ", out " + shape_of(out));
  const int64_t in_pixels = x.shape(0), channels = x.shape(1), batch = x.shape(2);
  const int64_t out_pixels = gy.shape(0), out_channels = gy.shape(2), taps = out.shape(0);
  check_float32_shape(x, "x", {in_pixels, channels, batch}, false, "conv_direct_weight_grad");
  check_float32_shape(gy, "gy", {out_pixels, batch, out_channels}, false, "conv_direct_weight_grad");
  check_float32_shape(out, "out", {taps, channels, out_channels}, true, "conv_direct_weight_grad");
  if (pairs.size() != 3u)
    throw py::value_error("conv_direct_weight_grad: pairs must be (run_start, out_pixel, in_pixel)");
  const auto start = pairs[0].cast<Int32Table>(), out_pixel = pairs[1].cast<Int32Table>(),
             in_pixel = pairs[2].cast<Int32Table>();
  if (start.ndim() != 1 || taps < 1 || (start.size() - 1) % taps || start.size() < 2 || out_pixel.ndim() != 1 ||
      in_pixel.ndim() != 1 || out_pixel.size() != in_pixel.size())
    throw py::value_error("conv_direct_weight_grad: pairs must be 1-D: run_start with a run per tap and chunk + 1 "
                          "entries (" + std::to_string(taps) + " taps), out_pixel and in_pixel of one length; got " +
                          shape_of(start) + ", " + shape_of(out_pixel) + ", " + shape_of(in_pixel));
  check_runs(start, out_pixel.size(), "conv_direct_weight_grad: run_start");
  for (py::ssize_t k = 0; k < in_pixel.size(); ++k)
    if (out_pixel.data()[k] < 0 || out_pixel.data()[k] >= out_pixels || in_pixel.data()[k] < 0 ||
        in_pixel.data()[k] >= in_pixels)
      throw py::value_error("conv_direct_weight_grad: pair " + std::to_string(k) + " (out_pixel " +
                            std::to_string(out_pixel.data()[k]) + ", in_pixel " + std::to_string(in_pixel.data()[k]) +
                            ") is outside gy's " + std::to_string(out_pixels) + " pixels or x's " +
                            std::to_string(in_pixels));
  const ganforge::DirectWeightGrad grad{static_cast<const float*>(x.data()),
                                        channels,
                                        in_pixels,
                                        batch,
                                        static_cast<const float*>(gy.data()),
                                        out_channels,
                                        out_pixels,
                                        taps,
                                        (start.size() - 1) / taps,
                                        start.data(),
                                        out_pixel.data(),
                                        in_pixel.data(),
                                        static_cast<float*>(out.mutable_data())};
  py::gil_scoped_release release;
  ganforge::conv_direct_weight_grad(grad);
}

// a.T for a 2-D or 3-D float32 array: (rows, cols) -> (cols, rows), or (rows, middle,
// cols) -> (cols, middle, rows), as a new C-contiguous array.
py::array transpose(const py::array& in) {
  if (in.ndim() != 2 && in.ndim() != 3)
    throw py::value_error("transpose: a must be 2-D or 3-D, got shape " + shape_of(in));
  check_float_contiguous(in, "a", in.ndim());
  if (!in.dtype().is(py::dtype::of<float>())) throw py::value_error("transpose: a must be float32");
  const int64_t rows = in.shape(0), cols = in.shape(in.ndim() - 1), middle = in.ndim() == 3 ? in.shape(1) : 1;
  py::array_t<float> out(in.ndim() == 3 ? std::vector<py::ssize_t>{cols, middle, rows}
                                        : std::vector<py::ssize_t>{cols, rows});
  const float* src = static_cast<const float*>(in.data());
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    ganforge::transpose(src, rows, middle, cols, dst);
  }
  return out;
}

// Flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) on the calling thread, and
// through WorkerPool::run on ganforge's kernel threads: a float32 below 1.2e-38 becomes 0
// instead of taking the processor's slow path (a 256 x 256 product with such inputs was
// measured 200x slower in NumPy's BLAS). Returns the previous setting.
bool set_flush_denormal(bool on) {
  const unsigned bits = 0x8040;
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? (csr | bits) : (csr & ~bits));
  return (csr & bits) == bits;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ganforge's compiled CPU kernels";
  m.def("set_flush_denormal", &set_flush_denormal, py::arg("on"),
        "Flush denormal floats to zero on this thread and ganforge's kernel threads; returns the previous mode.");
  m.def("num_threads", &ganforge::num_threads, "Threads of the memory-bound kernels that take it (GANFORGE_NUM_THREADS, or 1).");
  m.def("im2col", &im2col, py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("batch_in_columns") = false,
        "Unfold x (N, C, H, W) into columns (N, C*KH*KW, OH*OW), or (C*KH*KW, N*OH*OW) with batch_in_columns.");
  m.def("col2im", &col2im, py::arg("cols"), py::arg("batch"), py::arg("channels"), py::arg("image_size"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("batch_in_columns") = false,
        "Scatter-add columns (N, C*KH*KW, OH*OW), or (C*KH*KW, N*OH*OW) with batch_in_columns, back into an "
        "image (N, C, H, W); the adjoint of im2col.");
  m.def("power_iteration", &power_iteration, py::arg("weight_matrix"), py::arg("u"), py::arg("iterations"),
        py::arg("eps"), "Spectral-norm power iteration on a (rows, cols) matrix; returns the new (u, v).");
  m.def("gemm_supported", &ganforge::gemm_supported, "Whether this CPU can run gemm (AVX-512F).");
  m.def("gemm_threads", &ganforge::gemm_threads,
        "Threads the GEMM uses (GANFORGE_GEMM_THREADS or the CPUs this process may run on).");
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("accumulate") = false,
        py::arg("bias") = py::none(), py::arg("slope") = py::none(),
        "out[i] = a[i] @ b[i] (or += with accumulate) for float32 (B, M, K), (B, K, N), (B, M, N) views of any "
        "strides; out with batch stride 0 sums over the batch. bias (N float32 values) is added to each finished "
        "product, and with a slope, leaky ReLU follows (slope 0: ReLU).");
  m.def("gemm_gathered", &gemm_gathered, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("accumulate") = false,
        "out (+)= a @ b for float32 operands gathered from images (an implicit im2col): a, b and out are "
        "(data, rows, cols, (height, width)) with (n, 3) int64 tables of (base, y, x); out has a fifth entry, "
        "row_group (0: one element per place; g: elements may share a place and are added), and may have a sixth, "
        "col_group (h: the columns that share a place lie in one group of h, so threads may split the columns).");
  m.def("conv_direct", &conv_direct, py::arg("x"), py::arg("w"), py::arg("transposed"), py::arg("groups"),
        py::arg("pairs"), py::arg("out"),
        "out (P_out, O, N) = a convolution of x (P_in, C, N), batch innermost, computed pixel by pixel from the "
        "int32 pairs (pair_start, in_pixel, tap): output pixel p sums W's tap t over x's pixel q for each of its "
        "pairs. w is (O, C/groups, KH, KW), or with transposed a transposed convolution's (C, O/groups, KH, KW).");
  m.def("conv_direct_weight_grad", &conv_direct_weight_grad, py::arg("x"), py::arg("gy"), py::arg("pairs"),
        py::arg("out"),
        "out (T, C, O) = the weight gradient of a convolution of x (P_in, C, N), batch innermost, whose output "
        "gradient is gy (P_out, N, O), from the int32 pairs (run_start, out_pixel, in_pixel) grouped by tap, each "
        "tap's in the same number of runs.");
  m.def("binary_rows", &binary_rows, py::arg("a"), py::arg("b"), py::arg("multiply"), py::arg("length"),
        py::arg("per_row"), py::arg("out") = py::none(),
        "a * b (multiply) or a + b for C-contiguous float32 arrays, a's shape, a viewed as rows of `length`: b of "
        "a's size, or rows of `length` each shared by a.size / b.size neighbouring rows of a, or with per_row one "
        "value per row, row r taking b[r % b.size]. Into `out` if given (a itself for an in-place sum).");
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
        "Batch norm of x (N, C, ...) over its batch statistics: (y, mean, var, inv_std), the last three per channel.");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("x"), py::arg("gy"), py::arg("weight"), py::arg("mean"),
        py::arg("inv_std"), "Batch norm's gradient: (gx, gweight, gbias).");
  m.def("leaky_relu", &leaky_relu, py::arg("x"), py::arg("slope"), py::arg("gy") = py::none(), py::arg("gain") = 1.0,
        "(x where x > 0 else slope x) times gain (slope 0: ReLU); with gy, the gradient: gy times gain where x > 0, "
        "else that times slope.");
  m.def("shuffle_taps", &shuffle_taps, py::arg("x"), py::arg("r"), py::arg("to_taps") = false,
        "PixelShuffle of a C-contiguous float32/float64 (N, C r^2, H, W) x into (N, C, H r, W r); with "
        "to_taps, PixelUnshuffle (N, C, H r, W r) -> (N, C r^2, H, W). Planes split between threads.");
  m.def("prelu", &prelu, py::arg("x"), py::arg("slopes"), py::arg("gy") = py::none(),
        "PReLU of x (N, C, ...): x where x > 0, else its channel's slope (slopes (C,), or (1,) for all) times x; with "
        "gy, the gradient (gx, gslopes), each slope's summed in double.");
  m.def("reflect_pad", &reflect_pad, py::arg("x"), py::arg("pad"), py::arg("backward") = false,
        "x's last two axes padded by reflection, pad = (top, bottom, left, right), as np.pad(mode='reflect'); with "
        "backward, the adjoint: x is a padded gradient, folded back onto the entries its borders mirror.");
  m.def("resample", &resample, py::arg("x"), py::arg("rows"), py::arg("cols"),
        "rows @ x @ cols.T over x's last two axes (float32), multiplying only the matrices' nonzero entries");
  m.def("sum_rows", &sum_rows, py::arg("x"),
        "each row of a (rows, length) float32 array summed in NumPy's pairwise order (its result bit for bit), on "
        "the GEMM's threads");
  m.def("sum_rows_supported", &ganforge::sum_rows_supported, "Whether sum_rows runs on this CPU (AVX-512F)");
  m.def("resample_supported", &ganforge::resample_supported, py::arg("out_width"),
        "Whether resample takes an output this wide on this CPU (AVX-512F, at most 64 wide)");
  m.def("sum_leading", &sum_leading, py::arg("x"),
        "x summed over its first axis, the rows added in order as NumPy's x.sum(axis=0) adds them (its result bit "
        "for bit), on the GEMM's threads.");
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("scalars"), "One Adam step in place, bit for bit as ganforge's NumPy Adam computes it.");
  m.def("transpose", &transpose, py::arg("a"),
        "a.T for a C-contiguous 2-D or 3-D float32 array (the first and last axes swapped), as a new C-contiguous "
        "array (on the GEMM's threads).");
  m.def("per_sample_norms", &per_sample_norms, py::arg("grad"),
        "The 2-norm of each row of a (batch, features) matrix (the gradient penalty's reduction).");
}

#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>

namespace ganforge {

// True when this CPU has the instructions sgemm's kernels need (AVX-512F).
bool gemm_supported();

// C = A B, or C += A B with `accumulate`, for A (m x k), B (k x n), C (m x n), float32.
// Element (i, j) of each operand sits at ptr[i * rows + j * cols] (strides in elements,
// any sign or layout, as long as C's elements do not overlap).
//
// An epilogue is applied to each element of C once its sum is complete, by the thread that
// computed it, while that part of C is still in its cache: a linear layer's bias and
// activation, with no pass of their own over the output (a separate one reads C back from
// both cores' caches: 12 us for a 256 x 256 bias add in an MLP's step, against 3 alone).
// Each element gets v = C + bias[j] (one rounding, as NumPy's C + bias), then, with
// `activate`, v where v > 0, else slope v (the leaky_relu kernel's arithmetic), so the
// results are those of the separate passes bit for bit.
struct Epilogue {
  const float* bias = nullptr;  // n values, or none
  bool activate = false;
  float slope = 0.0f;
  bool any() const { return bias != nullptr || activate; }
};

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rows, int64_t a_cols, const float* b,
           int64_t b_rows, int64_t b_cols, float* c, int64_t c_rows, int64_t c_cols, bool accumulate,
           const Epilogue& epilogue = Epilogue{});

// One side (the rows, or the columns) of a gathered operand: for each row (or column) an
// offset into the data and a pixel position (y, x). 32-bit, as AVX-512's gathers want.
struct GatherAxis {
  const int32_t* offset;
  const int32_t* y;
  const int32_t* x;
};

// A matrix read from an image without being built: element (i, j) is the pixel
// (row.y[i] + col.y[j], row.x[i] + col.x[j]) at data[row.offset[i] + col.offset[j]], or
// zero when that pixel lies outside height x width. A plain matrix is the case
// height = width = 1 with every y and x 0.
struct GatheredOperand {
  const float* data;
  GatherAxis row, col;
  int64_t height, width;
  float at(int64_t i, int64_t j) const {
    const uint32_t y = uint32_t(row.y[i] + col.y[j]), x = uint32_t(row.x[i] + col.x[j]);
    return y < uint64_t(height) && x < uint64_t(width) ? data[row.offset[i] + col.offset[j]] : 0.0f;
  }
};

// Where a gathered GEMM's C goes: element (i, j) at data[row.offset[i] + col.offset[j]],
// dropped when pixel (row.y[i] + col.y[j], row.x[i] + col.x[j]) lies outside height x
// width. No two elements of one row share a place. row_group 0: no two elements at all. row_group g > 0: elements may share
// one (a transposed convolution's taps adding into its output, a fused col2im); they are
// all added to what is there, and rows are shared between threads only in whole groups
// of g, which must hold every row that can reach a given place. col_group h > 0 says
// the same of the columns (every column that can reach a place lies in one group of h,
// as one sample's positions do in NCHW), so that threads may split the columns too, in
// whole groups; 0: they may not (with row_group > 0).
struct GatheredOutput {
  float* data;
  GatherAxis row, col;
  int64_t height, width, row_group, col_group;
};

// C (+)= A B where A (m x k) and B (k x n) are gathered operands. This is how the
// convolutions run as one GEMM each, with no im2col buffer (ops/conv_gathered.py).
void sgemm_gathered(int64_t m, int64_t n, int64_t k, const GatheredOperand& a, const GatheredOperand& b,
                    const GatheredOutput& c, bool accumulate);

// out (cols x middle x rows) = in (rows x middle x cols) with its first and last axes
// swapped (middle = 1: a matrix transpose), both contiguous float32, on the GEMM's
// threads: how the convolutions move a batch between NCHW, as (N, C*H*W) or (N, C, H*W),
// and the batch-innermost layouts (C*H*W, N) or (H*W, C, N) (ops/conv_gathered.py).
void transpose(const float* in, int64_t rows, int64_t middle, int64_t cols, float* out);

// 64-byte aligned storage for the packed operands (one AVX-512 vector per cache line),
// left uninitialized: the packing writes every element that the micro-kernel reads.
// (Zero-filling a std::vector of up to 3 MB on every call was 1.3% of a dcgan28 training
// step's CPU time.)
class PackBuffer {
 public:
  explicit PackBuffer(std::size_t floats)
      : data_(static_cast<float*>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64))) {
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~PackBuffer() { std::free(data_); }
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  float* data() const { return data_; }

 private:
  float* data_;
};

}  // namespace ganforge

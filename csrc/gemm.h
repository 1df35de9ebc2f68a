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
void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rows, int64_t a_cols, const float* b,
           int64_t b_rows, int64_t b_cols, float* c, int64_t c_rows, int64_t c_cols, bool accumulate);

// 64-byte aligned storage for the packed operands (one AVX-512 vector per cache line).
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(std::size_t n) {
    const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    if (void* p = std::aligned_alloc(64, bytes)) return static_cast<T*>(p);
    throw std::bad_alloc();
  }
  void deallocate(T* p, std::size_t) { std::free(p); }
  bool operator==(const AlignedAllocator&) const { return true; }
  bool operator!=(const AlignedAllocator&) const { return false; }
};

}  // namespace ganforge

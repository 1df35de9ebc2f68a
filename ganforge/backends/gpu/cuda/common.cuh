// Helpers shared by the CUDA kernels. NVRTC (CuPy's RawModule) and nvcc (CMake) both
// compile the .cu files with this directory on the include path.
#pragma once

namespace ganforge {

// The sum of one value per thread over a block of up to 1024 threads, in a fixed order
// (the same result on every run), returned to every thread.
template <typename T>
__device__ T block_sum(T value) {
  __shared__ T partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  value = threadIdx.x < warps ? partial[threadIdx.x] : T(0);
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) partial[0] = value;
  }
  __syncthreads();
  return partial[0];
}

}  // namespace ganforge

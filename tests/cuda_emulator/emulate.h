// Just enough of CUDA to run ganforge's kernels (ganforge/backends/gpu/cuda/*.cu) on the CPU, so that
// a machine with no GPU can check their logic against the reference: each block of a
// launch runs as blockDim.x std::threads (blocks one after another), __syncthreads is a
// barrier over the block, a warp shuffle a barrier over 32 threads, and __shared__
// memory a static shared by the threads of the (only) running block.
//
// This checks indexing, masking, tiling and reductions. It cannot check what only a GPU
// shows: timing, memory-model subtleties, register or shared-memory limits.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace emulator {

struct Warp {
  std::barrier<> barrier{32};
  unsigned long long slots[32];
};

struct Block {
  explicit Block(unsigned threads) : barrier(threads), warps((threads + 31) / 32) {}
  std::barrier<> barrier;
  std::vector<Warp> warps;
};

inline thread_local dim3 thread_index, block_index, block_dim, grid_dim;
inline thread_local Block* block = nullptr;

}  // namespace emulator

#define threadIdx (emulator::thread_index)
#define blockIdx (emulator::block_index)
#define blockDim (emulator::block_dim)
#define gridDim (emulator::grid_dim)

inline void __syncthreads() { emulator::block->barrier.arrive_and_wait(); }

template <typename T>
T __shfl_down_sync(unsigned /*mask*/, T value, int offset) {
  static_assert(sizeof(T) <= sizeof(unsigned long long));
  const unsigned lane = threadIdx.x % 32;
  emulator::Warp& warp = emulator::block->warps[threadIdx.x / 32];
  std::memcpy(&warp.slots[lane], &value, sizeof(T));
  warp.barrier.arrive_and_wait();
  T result = value;
  if (lane + offset < 32) std::memcpy(&result, &warp.slots[lane + offset], sizeof(T));
  warp.barrier.arrive_and_wait();  // no lane overwrites its slot before every lane has read
  return result;
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

using std::max;
using std::min;
using std::sqrt;

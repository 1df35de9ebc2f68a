#pragma once
// A parallel loop over [0, n) on short-lived std::threads.
//
// Why not OpenMP: after a parallel region, OpenMP's worker threads spin for a while,
// and the next thing ganforge does is usually a BLAS call whose own threads then fight
// them for the cores (a 10x slowdown was measured on 2 cores). Threads that exist only
// for the duration of the call cannot do that.
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

namespace ganforge {

// GANFORGE_NUM_THREADS, or 1. The kernels here are memory-bound, and they run between
// BLAS calls whose worker threads keep spinning for a while: on the 2-core machine this
// was measured on, a second kernel thread made a dcgan28 conv layer 2.2x slower (4.1 ms
// instead of 1.8). On machines with many more cores, set GANFORGE_NUM_THREADS.
inline int num_threads() {
  static const int count = []() -> int {
    if (const char* env = std::getenv("GANFORGE_NUM_THREADS")) {
      int requested = std::atoi(env);
      if (requested > 0) return requested;
    }
    return 1;
  }();
  return count;
}

// The compute-bound kernels (the GEMM) want every core they may run on:
// GANFORGE_GEMM_THREADS, or the CPUs this process is allowed to use.
inline int gemm_threads() {
  static const int count = []() -> int {
    if (const char* env = std::getenv("GANFORGE_GEMM_THREADS")) {
      int requested = std::atoi(env);
      if (requested > 0) return requested;
    }
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) return std::max(1, CPU_COUNT(&allowed));
    return std::max(1u, std::thread::hardware_concurrency());
  }();
  return count;
}

// body(begin, end) on at most `threads` contiguous chunks of [0, n); below
// `min_per_thread` items a chunk is not worth a thread.
template <typename Body>
void parallel_for_threads(int64_t n, int64_t min_per_thread, int64_t threads, Body body) {
  const int64_t workers = std::min<int64_t>(threads, std::max<int64_t>(1, n / std::max<int64_t>(1, min_per_thread)));
  if (workers <= 1) {
    body(int64_t(0), n);
    return;
  }
  const int64_t chunk = (n + workers - 1) / workers;
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int64_t w = 1; w < workers; ++w) {
    const int64_t begin = w * chunk, end = std::min(n, begin + chunk);
    if (begin < end) pool.emplace_back(body, begin, end);
  }
  body(int64_t(0), std::min(n, chunk));
  for (auto& t : pool) t.join();
}

// body(begin, end) on contiguous chunks of [0, n) for the memory-bound kernels; below
// `min_per_thread` items a chunk is not worth a thread, so small loops run on the
// calling thread alone.
template <typename Body>
void parallel_for(int64_t n, int64_t min_per_thread, Body body) {
  parallel_for_threads(n, min_per_thread, num_threads(), body);
}

}  // namespace ganforge

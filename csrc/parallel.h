#pragma once
// A parallel loop over [0, n) on a pool of worker threads that stay alive between calls
// (polling for a moment, then asleep).
//
// Why not OpenMP: after a parallel region, OpenMP's worker threads spin for a while
// (GOMP_SPINCOUNT, up to hundreds of milliseconds), and the next thing ganforge does is
// often a BLAS call whose own threads then fight them for the cores (a 10x slowdown was
// measured on 2 cores). ganforge's workers poll for a fraction of a millisecond only.
#include <sched.h>
#include <unistd.h>
#include <xmmintrin.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

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

// Threads for a compute-bound call of `flops` floating-point operations: one per 2^22 of
// them (a few hundred microseconds' work, against tens to start or wake a thread), at
// most gemm_threads().
inline int64_t gemm_threads_for(int64_t flops) {
  return std::min<int64_t>(gemm_threads(), std::max<int64_t>(1, flops >> 22));
}

// How long a thread that waits (a worker for its next task, the caller for the workers
// to finish) keeps polling before it goes to sleep: GANFORGE_SPIN_US microseconds, or 2000.
// On the development machine (a virtual one, where an idle core halts) waking a sleeping
// thread took 35-55 us, as long as starting a new one, while a training step's parallel
// calls mostly come closer together than 200 us; polling took 3-6% off a dcgan28 step.
// The gaps of NumPy work between the kernels of StyleGAN2's or CycleGAN's steps are often
// longer: with 2000 rather than 200, StyleGAN2's 16 steps took 0.83 and 0.92 of their time,
// CycleGAN's at batch 4 0.90, the gan MLPs' 0.96, SRGAN's and dcgan28's 0.99
// (bench/ab_builds.py, one build with each setting, in turns; with the builds the other
// way round StyleGAN2's took 0.96: the second build is favoured, docs/benchmarks.md).
inline int spin_us() {
  static const int us = [] {
    const char* env = std::getenv("GANFORGE_SPIN_US");
    return env ? std::max(0, std::atoi(env)) : 2000;
  }();
  return us;
}

// Polls done() for spin_us() at most; whether it became true.
template <typename Done>
bool poll_until(Done done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us());
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();  // let the core know this is a wait loop
#endif
  }
  return true;
}

// Threads that live as long as the process and wait for work between parallel calls, so
// that each call does not pay for starting and joining threads.
class WorkerPool {
 public:
  // The pool of this process. A forked child gets a pool of its own: the parent's
  // threads do not exist there.
  static WorkerPool& instance() {
    static WorkerPool* pool = nullptr;
    static pid_t owner = 0;
    static std::mutex creating;
    std::lock_guard<std::mutex> lock(creating);
    if (pool == nullptr || owner != getpid()) {
      pool = new WorkerPool;  // never destroyed: its threads may still be asleep at exit
      owner = getpid();
    }
    return *pool;
  }

  // task(w) for every w in [0, workers), w = 0 on the calling thread; returns once all
  // have finished. False, with nothing run, if the pool is already running a task (a
  // call from another thread, or from inside a task).
  bool run(int64_t workers, const std::function<void(int64_t)>& task) {
    std::unique_lock<std::mutex> in_use(running_, std::try_to_lock);
    if (!in_use.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(state_);
      while (threads_ < workers - 1) std::thread(&WorkerPool::serve, this, ++threads_).detach();
      task_ = &task;
      workers_ = workers;
      mxcsr_ = _mm_getcsr();  // the caller's floating-point mode (flush denormals or not) for the workers
      pending_.store(workers - 1);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    task(0);
    if (!poll_until([this] { return pending_.load() == 0; })) {
      std::unique_lock<std::mutex> lock(state_);
      finished_.wait(lock, [this] { return pending_.load() == 0; });
    }
    return true;
  }

 private:
  void serve(int64_t index) {
    // A thread started by a run takes part in it: that run's generation is not yet seen.
    uint64_t seen = generation_.load() - 1;
    for (;;) {
      if (!poll_until([&] { return generation_.load() != seen; })) {
        std::unique_lock<std::mutex> lock(state_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
      }
      const std::function<void(int64_t)>* task;
      {
        std::lock_guard<std::mutex> lock(state_);  // the run's generation, size and task, read together
        seen = generation_.load();
        if (index >= workers_) continue;
        task = task_;
        _mm_setcsr(mxcsr_);
      }
      (*task)(index);
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(state_);  // so that the caller cannot miss the notification
        finished_.notify_one();
      }
    }
  }

  std::mutex running_, state_;
  std::condition_variable wake_, finished_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t workers_ = 0, threads_ = 0;
  unsigned mxcsr_ = 0;
  std::atomic<int64_t> pending_{0};
  std::atomic<uint64_t> generation_{0};
};

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
  const std::function<void(int64_t)> task = [&](int64_t w) {
    const int64_t begin = w * chunk, end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  };
  if (WorkerPool::instance().run(workers, task)) return;
  // The pool is busy (two Python threads in the kernels at once, or a parallel loop
  // inside another): short-lived threads of this call's own.
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int64_t w = 1; w < workers; ++w) pool.emplace_back(task, w);
  task(0);
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

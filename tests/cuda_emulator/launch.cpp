// The emulator's one entry point, shaped like cuLaunchKernel: a kernel (by name, from the
// .cu file this is compiled with), a grid, a block size and an array of pointers to the
// arguments. ctypes calls it from tests/test_gpu_kernels.py.
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>

// The .cu file comes in through -include, after emulate.h.

namespace emulator {

template <typename... Args, std::size_t... I>
void call(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(args[I])...);
}

template <typename... Args>
std::function<void(void**)> invoker(void (*kernel)(Args...)) {
  return [kernel](void** args) { call(kernel, args, std::index_sequence_for<Args...>{}); };
}

void run(const std::function<void(void**)>& kernel, dim3 grid, unsigned threads, void** args) {
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        Block current(threads);
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            thread_index = {t, 0, 0};
            block_index = {x, y, z};
            block_dim = {threads, 1, 1};
            grid_dim = grid;
            block = &current;
            kernel(args);
            // A thread that has returned no longer holds the others up, as on a GPU.
            current.warps[t / 32].barrier.arrive_and_drop();
            current.barrier.arrive_and_drop();
          });
        for (auto& thread : pool) thread.join();
      }
}

}  // namespace emulator

extern "C" int emulate_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned threads, void** args) {
  static const std::map<std::string, std::function<void(void**)>> kernels = {
#define GANFORGE_EMULATED(kernel) {#kernel, emulator::invoker(&kernel)},
#include "kernel_list.h"
  };
  const auto found = kernels.find(name);
  if (found == kernels.end()) return 1;
  emulator::run(found->second, dim3{gx, gy, gz}, threads, args);
  return 0;
}

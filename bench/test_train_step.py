"""One training step of dcgan28, wgangp28 and sngan28 (bench/BENCH_MODELS.md): ganforge against
PyTorch CPU's twin (bench/torch_steps.py), in the same run, on the same number of
threads. Each entry reports the median step, the ratio to PyTorch, GFLOP/s against the
measured float32 GEMM ceiling (the step's FLOPs as ganforge's profiler counts them in its GEMM-
shaped ops: the work both frameworks must do; PyTorch's own counter cannot follow the
double backward of wgangp28) and the peak resident memory of building the model and
training it, measured in a fresh process per framework and model.

    pytest bench/test_train_step.py --benchmark-only --benchmark-json bench/results/train_step.json

(`make bench-steps` runs exactly that; the JSON holds pytest-benchmark's machine description.)
(Alternating the two frameworks step by step was tried and rejected: OpenBLAS's and
PyTorch's thread pools then wait on each other, and both steps slow down, PyTorch's by 2x.
bench/in_turns.py alternates them in blocks instead, leaving the first steps of each
block untimed: the steadier comparison on a machine whose speed drifts.)
"""
import functools
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from ganforge.gan import benchmarks
from ganforge.profiler import Profile

MODELS = ["dcgan28", "wgangp28", "sngan28"]
PEER = os.environ.get("GANFORGE_PEER", os.path.join(os.path.dirname(__file__), "torch_steps.py"))


@functools.cache
def peer_module():
    """PyTorch's twin steps, loaded once per session."""
    if not os.path.exists(PEER):
        pytest.skip(f"PyTorch's twin steps are not at {PEER}: set GANFORGE_PEER to torch_steps.py")
    spec = importlib.util.spec_from_file_location("torch_steps", PEER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PEAK_MEMORY = """
import json, os, sys
from ganforge.backends.cpu.runtime import hold_freed_memory
hold_freed_memory()  # as the benchmark process has it (conftest.py), for both frameworks
def status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
framework, model, peer_path = sys.argv[1:4]
if framework == "torch":
    import importlib.util, torch
    torch.set_num_threads(int(sys.argv[4]))
    spec = importlib.util.spec_from_file_location("torch_steps", peer_path)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    build = lambda: peer.step_fn(model, *peer.make(model, "cpu"), "cpu")
else:
    from ganforge.gan import benchmarks
    build = lambda: benchmarks.build(model)[2]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # forget the imports' high-water mark
before = status_kb("VmRSS")
step = build()
for _ in range(5):
    step()
print(json.dumps({"peak_mb": (status_kb("VmHWM") - before) / 1024}))
"""


def peak_memory_mb(framework, model, threads):
    """Peak resident memory of building `model` and training it 5 steps, above the memory
    of the interpreter and the framework's import, in a fresh process (Linux only)."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY, framework, model, PEER, str(threads)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"measuring the peak memory of {framework} {model} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def step_flops(model):
    """FLOPs of one step in GEMM-shaped ops, counted by ganforge's profiler."""
    _, _, step, _ = benchmarks.build(model)
    step()
    with Profile() as counter:
        step()
    return counter.total_flops()


@pytest.mark.parametrize("framework", ["ganforge", "torch"])
@pytest.mark.parametrize("model", MODELS)
def test_train_step(benchmark, timed_after_warm_up, torch, ceiling_gflops, model, framework):
    peer = peer_module()
    if framework == "torch":
        torch.manual_seed(0)
        G, D, shape, batch = peer.make(model, "cpu")
        step = peer.step_fn(model, G, D, shape, batch, "cpu")
    else:
        _, _, step, batch = benchmarks.build(model)
    for _ in range(3):  # warm-up: allocator, BLAS buffers, spectral-norm vectors
        step()
    benchmark.group = f"{model}: one D step and one G step, batch {batch}"
    threads = torch.get_num_threads()
    benchmark.extra_info.update(framework=framework, flops=step_flops(model), threads=threads,
                                peak_mb=peak_memory_mb(framework, model, threads))
    timed_after_warm_up(step, rounds=30)


"""Shared set-up for the benchmarks: PyTorch on as many threads as NumPy's BLAS, a
measured float32 GEMM ceiling, and a closing table for every benchmark group: each entry's
median, its ratio to PyTorch, its achieved GFLOP/s against the ceiling and, where
measured, the peak memory it adds."""
import math
import os
import time

import numpy as np
import pytest

from ganforge.backends.cpu import runtime as cpu

# The benchmarks run with glibc holding freed memory for reuse, as ganforge's command line
# does (ganforge/backends/cpu/runtime.py): both frameworks share this process, and so the setting.
cpu.hold_freed_memory()


def blas_threads():
    """The thread count NumPy's BLAS uses (threadpoolctl when present, else the core count)."""
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return pool["num_threads"]
    except ImportError:
        pass
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


@pytest.fixture(scope="session")
def torch():
    torch = pytest.importorskip("torch", reason="PyTorch CPU is the reference: pip install torch==2.13.0")
    torch.set_num_threads(blas_threads())
    return torch


_ceiling = {}


def sgemm_ceiling():
    """The float32 GEMM rate on 2048x2048 operands, in GFLOP/s (best of 5), of NumPy's BLAS
    and, where the CPU has AVX-512, of ganforge's own kernel (csrc/gemm.cpp), which runs
    the float32 convolutions then: the most a GEMM-based convolution here can reach."""
    if "gflops" not in _ceiling:
        a, b = (np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32) for _ in range(2))
        warm_up(lambda: a @ b)
        best = min(_timed(lambda: a @ b) for _ in range(5))
        _ceiling["numpy"] = 2 * 2048 ** 3 / best / 1e9
        _ceiling["gflops"] = _ceiling["numpy"]
        from ganforge.backends.cpu import native
        if native.available()[0] and native.module().gemm_supported():
            out = np.empty((1, 2048, 2048), dtype=np.float32)
            own = lambda: native.module().gemm(a[None], b[None], out)  # noqa: E731
            warm_up(own)
            best = min(_timed(own) for _ in range(5))
            _ceiling["ganforge"] = 2 * 2048 ** 3 / best / 1e9
            _ceiling["gflops"] = max(_ceiling["numpy"], _ceiling["ganforge"])
    return _ceiling["gflops"]


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# Whatever ran just before a benchmark can still hold a core: OpenBLAS keeps its worker
# threads spinning for a while after each call (measured here: a ganforge GEMM ran at half
# speed right after a NumPy matmul, and at full speed with OPENBLAS_NUM_THREADS=1), and
# PyTorch's OpenMP threads wait the same way. So every benchmark first runs its own step
# for WARM_UP_S seconds, which outlasts that and leaves the CPU in the state the step
# itself keeps it in, and only then times its rounds.
WARM_UP_S = 0.5


def warm_up(fn):
    """Run fn repeatedly for WARM_UP_S seconds."""
    start = time.perf_counter()
    while time.perf_counter() - start < WARM_UP_S:
        fn()


@pytest.fixture
def timed_after_warm_up(benchmark):
    """timed(step, rounds): benchmark.pedantic(step) after warm-up rounds worth WARM_UP_S
    seconds (above); returns the step's result."""
    def timed(step, rounds):
        once = _timed(step)
        return benchmark.pedantic(step, rounds=rounds, warmup_rounds=max(1, math.ceil(WARM_UP_S / max(once, 1e-6))))
    return timed


@pytest.fixture(scope="session")
def ceiling_gflops():
    return sgemm_ceiling()


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups = {}
    for bench in session.benchmarks:
        label = bench.extra_info.get("framework")
        if label:
            groups.setdefault(bench.group, {})[label] = bench
    if not groups:
        return
    title = "ganforge against PyTorch, same run (median; ratio < 1 means faster than PyTorch)"
    terminalreporter.section(title)
    if _ceiling:
        line = f"measured float32 GEMM ceiling: NumPy's BLAS {_ceiling['numpy']:.0f} GFLOP/s"
        if "ganforge" in _ceiling:
            line += f", ganforge's own (which runs its float32 convolutions) {_ceiling['ganforge']:.0f} GFLOP/s"
        terminalreporter.write_line(line + "; percentages are of the higher")
    for group, entries in sorted(groups.items()):
        torch_entry = entries.get("torch")
        terminalreporter.write_line(group)
        for label, bench in sorted(entries.items(), key=lambda kv: kv[0] == "torch"):
            median = bench.stats.median
            text = f"    {label:10s} {median * 1e3:9.3f} ms"
            if torch_entry is not None and label != "torch":
                text += f"   ratio {median / torch_entry.stats.median:5.2f}"
            flops = bench.extra_info.get("flops")
            if flops:
                text += f"   {flops / median / 1e9:6.1f} GFLOP/s"
                if _ceiling:
                    text += f" ({100 * flops / median / 1e9 / _ceiling['gflops']:3.0f}% of GEMM)"
            peak = bench.extra_info.get("peak_mb")
            if peak is not None:
                text += f"   peak {peak:6.1f} MB"
            per_op = bench.extra_info.get("ops")
            if per_op:
                text += f"   {median / per_op * 1e6:.2f} us per op"
            terminalreporter.write_line(text)

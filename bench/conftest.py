"""Shared set-up for the benchmarks: PyTorch on as many threads as NumPy's BLAS, and
a closing table of ganforge/PyTorch ratios for every benchmark group."""
import os

import pytest


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


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups = {}
    for bench in session.benchmarks:
        framework = bench.extra_info.get("framework")
        if framework:
            groups.setdefault(bench.group, {})[framework] = bench
    rows = [(group, entries["ganforge"], entries["torch"]) for group, entries in sorted(groups.items())
            if {"ganforge", "torch"} <= set(entries)]
    if not rows:
        return
    terminalreporter.section("ganforge / PyTorch, same run (median times; < 1 means ganforge is faster)")
    for group, ours, theirs in rows:
        ratio = ours.stats.median / theirs.stats.median
        extra = ours.extra_info.get("per_op_us"), theirs.extra_info.get("per_op_us")
        per_op = ""
        if all(v is not None for v in extra):
            per_op = (f"   per op: ganforge {ours.stats.median / extra[0] * 1e6:.2f} us vs "
                      f"torch {theirs.stats.median / extra[1] * 1e6:.2f} us")
        terminalreporter.write_line(f"{group:40s} ratio {ratio:5.2f}  "
                                    f"(ganforge {ours.stats.median * 1e3:.3f} ms, torch {theirs.stats.median * 1e3:.3f} ms)"
                                    + per_op)

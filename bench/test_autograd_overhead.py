"""Autograd overhead: a chain of 1000 small elementwise ops, forward + backward.

The tensors are tiny (16 floats), so the array work is negligible and the time is
the framework's own per-op cost: building the graph, dispatching, walking it back.
Run: pytest bench/test_autograd_overhead.py --benchmark-only
"""
import numpy as np
import pytest

import ganforge as gf

CHAIN = 1000
SIZE = 16


def chain(x, ops):
    """1000 ops cycling through mul, add, tanh, sub and sigmoid."""
    y = x
    for k in range(CHAIN // 5):
        y = ops["sigmoid"](ops["tanh"](y * 1.01 + 0.1) - 0.2)
        del k
    return y


def ganforge_step(x):
    ops = {"tanh": gf.tanh, "sigmoid": gf.sigmoid}
    y = chain(x, ops)
    x.grad = None
    y.sum().backward()
    return x.grad


def torch_step(torch, x):
    ops = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}
    y = chain(x, ops)
    x.grad = None
    y.sum().backward()
    return x.grad


# 5 ops per loop turn (mul, add, tanh, sub, sigmoid) plus the final sum.
OPS_PER_STEP = CHAIN + 1


@pytest.mark.benchmark(group="chain of 1000 elementwise ops, fwd+bwd")
def test_ganforge_chain(benchmark):
    x = gf.tensor(np.linspace(-1, 1, SIZE), dtype="float32", requires_grad=True)
    benchmark.extra_info.update(framework="ganforge", ops=OPS_PER_STEP)
    grad = benchmark(ganforge_step, x)
    assert grad is not None and np.all(np.isfinite(grad.numpy()))


@pytest.mark.benchmark(group="chain of 1000 elementwise ops, fwd+bwd")
def test_torch_chain(benchmark, torch):
    x = torch.linspace(-1, 1, SIZE, dtype=torch.float32, requires_grad=True)
    benchmark.extra_info.update(framework="torch", ops=OPS_PER_STEP)
    grad = benchmark(torch_step, torch, x)
    assert grad is not None


def test_both_frameworks_compute_the_same_gradient(torch):
    x = gf.tensor(np.linspace(-1, 1, SIZE), dtype="float64", requires_grad=True)
    t = torch.linspace(-1, 1, SIZE, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(ganforge_step(x).numpy(), torch_step(torch, t).numpy(), rtol=1e-10)


def test_interleaved_ratio(torch, record_property):
    """The same comparison with the two frameworks alternating step by step, so that a
    noisy machine slows both alike; prints the ratio of medians that the docs quote."""
    import statistics
    import time

    x = gf.tensor(np.linspace(-1, 1, SIZE), dtype="float32", requires_grad=True)
    t = torch.linspace(-1, 1, SIZE, dtype=torch.float32, requires_grad=True)
    ours, theirs = [], []
    for _ in range(10):  # warm-up
        ganforge_step(x), torch_step(torch, t)
    for _ in range(300):
        start = time.perf_counter()
        ganforge_step(x)
        middle = time.perf_counter()
        torch_step(torch, t)
        ours.append(middle - start)
        theirs.append(time.perf_counter() - middle)
    ratio = statistics.median(ours) / statistics.median(theirs)
    record_property("ratio", ratio)
    print(f"\ninterleaved, 300 rounds: ganforge {statistics.median(ours) * 1e3:.3f} ms, "
          f"torch {statistics.median(theirs) * 1e3:.3f} ms per chain of {OPS_PER_STEP} ops; ratio {ratio:.2f}")
    assert ratio > 0

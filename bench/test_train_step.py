"""One training step of dcgan28, wgangp28 and sngan28 (BENCH_MODELS.md): ganforge against
PyTorch CPU's twin (shared/peer/torch_steps.py), in the same run, on the same number of
threads. Each entry reports the median step, the ratio to PyTorch, GFLOP/s against the
measured sgemm ceiling (FLOPs counted by PyTorch's FlopCounterMode on its own step) and
the peak resident memory the steps add on top of the built model.

    pytest bench/test_train_step.py --benchmark-only --benchmark-json bench/results/train_step.json

(`make bench-steps` runs exactly that; the JSON holds pytest-benchmark's machine description.)
"""
import importlib.util
import os

import pytest

from ganforge import benchmarks

MODELS = ["dcgan28", "wgangp28", "sngan28"]
PEER = os.environ.get("GANFORGE_PEER", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peer",
                                                    "torch_steps.py"))


def peer_module():
    if not os.path.exists(PEER):
        pytest.skip(f"PyTorch's twin steps are not at {PEER}: set GANFORGE_PEER to torch_steps.py")
    spec = importlib.util.spec_from_file_location("torch_steps", PEER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_added_mb(step, steps=3):
    """Peak resident memory of `steps` steps above the memory in use before them (Linux:
    writing 5 to clear_refs resets the high-water mark)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _status_kb("VmRSS")
    for _ in range(steps):
        step()
    return (_status_kb("VmHWM") - before) / 1024


_flops = {}


def step_flops(torch, peer, model):
    """FLOPs of one step, counted on PyTorch's (the same model and the same step)."""
    if model not in _flops:
        from torch.utils.flop_counter import FlopCounterMode
        G, D, shape, batch = peer.make(model, "cpu")
        step = peer.step_fn(model, G, D, shape, batch, "cpu")
        step()
        with FlopCounterMode(display=False) as counter:
            step()
        _flops[model] = counter.get_total_flops()
    return _flops[model]


@pytest.mark.parametrize("framework", ["ganforge", "torch"])
@pytest.mark.parametrize("model", MODELS)
def test_train_step(benchmark, torch, model, framework):
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
    benchmark.extra_info.update(framework=framework, flops=step_flops(torch, peer, model),
                                peak_mb=peak_added_mb(step), threads=torch.get_num_threads())
    benchmark.pedantic(step, rounds=15, warmup_rounds=1)

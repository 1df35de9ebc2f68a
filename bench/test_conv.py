"""conv2d and conv_transpose2d, forward + backward (input and weight gradients), at every
layer shape of dcgan28 (batch 64) and dcgan64 (batch 128) from bench/BENCH_MODELS.md:
ganforge's `ref` kernels, its `cpp` kernels, and PyTorch CPU, in one run.

    pytest bench/test_conv.py --benchmark-only          (dcgan64 is marked slow: add -m slow)
"""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F

# (model, transposed, in_channels, out_channels, kernel, stride, padding, input size, batch)
LAYERS = [
    ("dcgan28 G1", True, 100, 256, 7, 1, 0, 1, 64),
    ("dcgan28 G2", True, 256, 128, 4, 2, 1, 7, 64),
    ("dcgan28 G3", True, 128, 1, 4, 2, 1, 14, 64),
    ("dcgan28 D1", False, 1, 64, 4, 2, 1, 28, 64),
    ("dcgan28 D2", False, 64, 128, 4, 2, 1, 14, 64),
    ("dcgan28 D3", False, 128, 1, 7, 1, 0, 7, 64),
    ("dcgan64 G1", True, 100, 512, 4, 1, 0, 1, 128),
    ("dcgan64 G2", True, 512, 256, 4, 2, 1, 4, 128),
    ("dcgan64 G3", True, 256, 128, 4, 2, 1, 8, 128),
    ("dcgan64 G4", True, 128, 64, 4, 2, 1, 16, 128),
    ("dcgan64 G5", True, 64, 3, 4, 2, 1, 32, 128),
    ("dcgan64 D1", False, 3, 64, 4, 2, 1, 64, 128),
    ("dcgan64 D2", False, 64, 128, 4, 2, 1, 32, 128),
    ("dcgan64 D3", False, 128, 256, 4, 2, 1, 16, 128),
    ("dcgan64 D4", False, 256, 512, 4, 2, 1, 8, 128),
    ("dcgan64 D5", False, 512, 1, 4, 1, 0, 4, 128),
]


def layer_params():
    for layer in LAYERS:
        marks = [pytest.mark.slow] if layer[0].startswith("dcgan64") else []
        yield pytest.param(layer, id=layer[0].replace(" ", "-"), marks=marks)


def shapes(layer):
    _, transposed, cin, cout, k, stride, padding, size, batch = layer
    x_shape = (batch, cin, size, size)
    w_shape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
    out = (size - 1) * stride - 2 * padding + k if transposed else (size + 2 * padding - k) // stride + 1
    return x_shape, w_shape, out


def flops(layer):
    """Multiply-adds of the forward pass, times 2 for FLOPs, times 3 for forward + two gradients."""
    _, transposed, cin, cout, k, _, _, size, batch = layer
    _, _, out = shapes(layer)
    positions = size * size if transposed else out * out
    return 3 * 2 * batch * positions * cin * cout * k * k


def group(layer):
    name, transposed, cin, cout, k, stride, padding, size, batch = layer
    kind = "ConvT" if transposed else "Conv"
    return f"{name}: {kind}({cin},{cout},{k},{stride},{padding}) on {size}x{size}, batch {batch}"


@pytest.mark.parametrize("impl", ["ref", "cpp"])
@pytest.mark.parametrize("layer", layer_params())
def test_ganforge_conv(benchmark, timed_after_warm_up, layer, impl, ceiling_gflops):
    if impl == "cpp" and not gf.backends.cpu.native.available()[0]:
        pytest.skip(gf.backends.cpu.native.available()[1])
    x_shape, w_shape, _ = shapes(layer)
    transposed, stride, padding = layer[1], layer[5], layer[6]
    rng = np.random.default_rng(0)
    x = gf.tensor(rng.standard_normal(x_shape), dtype="float32", requires_grad=True)
    w = gf.tensor(rng.standard_normal(w_shape) * 0.05, dtype="float32", requires_grad=True)
    op = F.conv_transpose2d if transposed else F.conv2d

    def step():
        y = op(x, w, None, stride, padding, impl=impl)
        return gf.grad(y, [x, w], gf.ones_like(y))

    benchmark.group = group(layer)
    benchmark.extra_info.update(framework=impl, flops=flops(layer))
    gx, gw = timed_after_warm_up(step, rounds=3 if layer[0].startswith("dcgan64") else 10)
    assert gx.shape == x_shape and gw.shape == w_shape


@pytest.mark.parametrize("layer", layer_params())
def test_torch_conv(benchmark, timed_after_warm_up, layer, torch, ceiling_gflops):
    x_shape, w_shape, _ = shapes(layer)
    transposed, stride, padding = layer[1], layer[5], layer[6]
    x = torch.randn(*x_shape, requires_grad=True)
    w = (torch.randn(*w_shape) * 0.05).requires_grad_(True)
    op = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d

    def step():
        y = op(x, w, None, stride, padding)
        return torch.autograd.grad(y, [x, w], torch.ones_like(y))

    benchmark.group = group(layer)
    benchmark.extra_info.update(framework="torch", flops=flops(layer))
    timed_after_warm_up(step, rounds=3 if layer[0].startswith("dcgan64") else 10)

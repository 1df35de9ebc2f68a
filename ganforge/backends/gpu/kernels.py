"""The Triton and CUDA kernels (triton/, cuda/), registered beside their `ref` twins.

Each function below takes the same arrays as the registry op's `ref` implementation
(ganforge/ops/conv.py, ops/spectral.py, ops/penalty.py), makes them contiguous,
allocates the outputs and launches. `triton` runs on CuPy arrays compiled, and on NumPy
arrays under Triton's interpreter (it is never picked on the CPU unless asked for, with
`impl="triton"` or GANFORGE_KERNELS=triton: that is how the tests run it without a GPU).
`cuda` runs on CuPy arrays only.
"""
import math

import numpy as np

from ... import dispatch
from ...backend import tf32_enabled, xp_of
from ...ops.conv import output_size
from . import runtime

# The CUDA kernels' launch shape (cuda/*.cu are written for it).
THREADS = 256
CONV_TILE = 64


def _prepared(op, *arrays):
    """The arrays, checked (float32/float64, 32-bit indexable) and made contiguous."""
    for a in arrays:
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{op}: the GPU kernels take float32 or float64 arrays, got {a.dtype}")
        if a.size >= 2**31:
            raise ValueError(f"{op}: an array of {a.size} values is too large for the kernels' 32-bit indexing")
    xp = xp_of(*arrays)
    return [xp.ascontiguousarray(a) for a in arrays]


# --- Triton ------------------------------------------------------------------------------

def _conv_precision():
    """tl.dot's input precision for float32 convolutions (float64 is always exact)."""
    return "tf32" if tf32_enabled() else "ieee"


def conv2d_triton(x, w, stride, padding, dilation, groups):
    x, w = _prepared("conv2d", x, w)
    launch = runtime.TritonLaunch("conv", x)
    out_size = output_size(x.shape[2:], w.shape[2:], stride, padding, dilation)
    return launch.module.conv2d(launch, x, w, out_size, stride, padding, dilation, groups,
                                precision=_conv_precision())


def conv_transpose2d_triton(x, w, out_size, stride, padding, dilation, groups):
    x, w = _prepared("conv_transpose2d", x, w)
    launch = runtime.TritonLaunch("conv", x)
    return launch.module.conv_transpose2d(launch, x, w, out_size, stride, padding, dilation, groups,
                                          precision=_conv_precision())


def conv2d_weight_grad_triton(x, gy, weight_shape, stride, padding, dilation, groups):
    x, gy = _prepared("conv2d_weight_grad", x, gy)
    launch = runtime.TritonLaunch("conv", x)
    return launch.module.conv2d_weight_grad(launch, x, gy, tuple(weight_shape), stride, padding, dilation, groups,
                                            precision=_conv_precision())


def spectral_norm_triton(weight_matrix, u, n_iterations, eps):
    weight_matrix, u = _prepared("spectral_norm", weight_matrix, u)
    launch = runtime.TritonLaunch("spectral_norm", weight_matrix)
    return launch.module.power_iteration(launch, weight_matrix, u, n_iterations, eps, scale=True)


# --- CUDA --------------------------------------------------------------------------------

def _blocks(count, per_block=THREADS):
    return (max(1, math.ceil(count / per_block)),)


def _shape_args(x_shape, o, out_size, kernel_size, stride, padding, dilation, groups):
    """The 16 ints every conv entry point takes: N, C, H, W, O, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, G."""
    return [np.int32(v) for v in (*x_shape, o, *out_size, *kernel_size, *stride, *padding, *dilation, groups)]


def conv2d_cuda(x, w, stride, padding, dilation, groups):
    x, w = _prepared("conv2d", x, w)
    o, kernel_size = w.shape[0], w.shape[2:]
    out_size = output_size(x.shape[2:], kernel_size, stride, padding, dilation)
    y = xp_of(x).empty((x.shape[0], o) + out_size, dtype=x.dtype)
    grid = (math.ceil(x.shape[0] * out_size[0] * out_size[1] / CONV_TILE), math.ceil(o // groups / CONV_TILE), groups)
    runtime.cuda_function("conv", "conv2d_forward", x.dtype)(
        grid, (THREADS,), (x, w, y, *_shape_args(x.shape, o, out_size, kernel_size, stride, padding, dilation, groups)))
    return y


def conv_transpose2d_cuda(x, w, out_size, stride, padding, dilation, groups):
    x, w = _prepared("conv_transpose2d", x, w)
    o_per_group, kernel_size = w.shape[1], w.shape[2:]
    o = o_per_group * groups
    y = xp_of(x).empty((x.shape[0], o) + tuple(out_size), dtype=x.dtype)
    args = (x, w, y, *_shape_args(x.shape, o, out_size, kernel_size, stride, padding, dilation, groups))
    if tuple(dilation) == (1, 1):  # one dense GEMM per output phase (see conv.cu)
        (sh, sw), (oh, ow) = stride, out_size
        rows = x.shape[0] * math.ceil(oh / sh) * math.ceil(ow / sw)
        grid = (math.ceil(rows / CONV_TILE), math.ceil(o_per_group / CONV_TILE), groups * sh * sw)
        runtime.cuda_function("conv", "conv_transpose2d_phase", x.dtype)(grid, (THREADS,), args)
        return y
    grid = (math.ceil(x.shape[0] * out_size[0] * out_size[1] / CONV_TILE), math.ceil(o_per_group / CONV_TILE), groups)
    runtime.cuda_function("conv", "conv_transpose2d_forward", x.dtype)(grid, (THREADS,), args)
    return y


def conv2d_weight_grad_cuda(x, gy, weight_shape, stride, padding, dilation, groups, target_blocks=264):
    x, gy = _prepared("conv2d_weight_grad", x, gy)
    o, c_per_group, kh, kw = weight_shape
    tiles = math.ceil(o // groups / CONV_TILE) * math.ceil(c_per_group * kh * kw / CONV_TILE) * groups
    slices = math.ceil(gy.shape[0] * gy.shape[2] * gy.shape[3] / 16)
    split = max(1, min(target_blocks // tiles, slices // 4))  # fill the GPU; at least 4 slices per block
    gw = (xp_of(x).zeros if split > 1 else xp_of(x).empty)(tuple(weight_shape), dtype=x.dtype)
    grid = (math.ceil(o // groups / CONV_TILE), math.ceil(c_per_group * kh * kw / CONV_TILE), groups * split)
    runtime.cuda_function("conv", "conv2d_weight_grad", x.dtype)(
        grid, (THREADS,), (x, gy, gw, *_shape_args(x.shape, o, gy.shape[2:], (kh, kw), stride, padding, dilation,
                                                    groups), np.int32(split)))
    return gw


def spectral_norm_cuda(weight_matrix, u, n_iterations, eps):
    weight_matrix, u = _prepared("spectral_norm", weight_matrix, u)
    xp, dtype = xp_of(weight_matrix), weight_matrix.dtype
    rows, cols = weight_matrix.shape
    t, v, s = xp.empty(cols, dtype), xp.empty(cols, dtype), xp.empty(rows, dtype)
    sigma, normalized = xp.empty((), dtype), xp.empty_like(weight_matrix)
    u = u.copy()
    size = (np.int32(rows), np.int32(cols))
    for i in range(n_iterations):
        runtime.cuda_function("spectral_norm", "transposed_product", dtype)(
            _blocks(cols), (THREADS,), (weight_matrix, u, t, *size))
        runtime.cuda_function("spectral_norm", "product", dtype)(
            _blocks(rows, THREADS // 32), (THREADS,), (weight_matrix, t, v, s, *size, dtype.type(eps)))
        last = i == n_iterations - 1
        # W / sigma only after the last step; a null pointer (0) tells the kernel to skip it.
        runtime.cuda_function("spectral_norm", "normalize", dtype)(
            _blocks(rows * cols if last else rows), (THREADS,),
            (weight_matrix, s, u, sigma, normalized if last else np.uintp(0), *size, dtype.type(eps)))
    return u, v, sigma, normalized


def gradient_penalty_cuda(grad, target, one_sided):
    grad, = _prepared("gradient_penalty", grad)
    xp, dtype = xp_of(grad), grad.dtype
    n, features = grad.shape
    norms, value = xp.empty(n, dtype), xp.empty((), dtype)
    runtime.cuda_function("grad_penalty", "norms", dtype)((n,), (THREADS,), (grad, norms, np.int64(features)))
    runtime.cuda_function("grad_penalty", "penalty", dtype)(
        (1,), (THREADS,), (norms, value, np.int32(n), dtype.type(target), np.int32(one_sided)))
    return value, norms


def gradient_penalty_backward_cuda(grad, norms, gy, target, one_sided):
    grad, norms, gy = _prepared("gradient_penalty_backward", grad, norms, gy.astype(grad.dtype, copy=False))
    n, features = grad.shape
    out = xp_of(grad).empty_like(grad)
    runtime.cuda_function("grad_penalty", "backward", grad.dtype)(
        _blocks(grad.size), (THREADS,),
        (grad, norms, gy, out, np.int64(n), np.int64(features), grad.dtype.type(target), np.int32(one_sided)))
    return out


def gradient_penalty_interpolate_cuda(real, fake, eps):
    real, fake, eps = _prepared("gradient_penalty_interpolate", real, fake, eps.astype(real.dtype, copy=False))
    out = xp_of(real).empty_like(real)
    runtime.cuda_function("grad_penalty", "interpolate", real.dtype)(
        _blocks(real.size), (THREADS,), (real, fake, eps, out, np.int64(real.shape[0]), np.int64(real[0].size)))
    return out


# --- registration ------------------------------------------------------------------------

# op -> (its triton implementation, its cuda implementation)
GPU_KERNELS = {
    "conv2d": (conv2d_triton, conv2d_cuda),
    "conv_transpose2d": (conv_transpose2d_triton, conv_transpose2d_cuda),
    "conv2d_weight_grad": (conv2d_weight_grad_triton, conv2d_weight_grad_cuda),
    "spectral_norm": (spectral_norm_triton, spectral_norm_cuda),
    # The gradient penalty is CUDA's alone: on an H100 the Triton one took 0.56-0.65x eager
    # PyTorch's time, CUDA's 0.08-0.16x (docs/benchmarks.md), so Triton's was removed.
    "gradient_penalty": (None, gradient_penalty_cuda),
    "gradient_penalty_backward": (None, gradient_penalty_backward_cuda),
    "gradient_penalty_interpolate": (None, gradient_penalty_interpolate_cuda),
}

for _op, (_triton, _cuda) in GPU_KERNELS.items():
    if _triton is not None:
        dispatch.register(_op, "triton", _triton, ("cuda", "cpu"), runtime.triton_available)
    dispatch.register(_op, "cuda", _cuda, ("cuda",), runtime.cuda_available)

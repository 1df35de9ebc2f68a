"""Batch normalization in training mode, as one op (chainer's BatchNormalization shape).

Written as a chain of ops, batch norm costs a dozen passes over the activations forward
and as many backward, each with its own temporary: measured on dcgan28's layers, 4-5x the
time of the fused arithmetic below (5.6 against 2.2 ms forward on 64x128x7x7). Here the
forward is a pass for the statistics and one for the output, and the backward is the
textbook formula, with x_hat = (x - mean) / std and M values per channel:

    gbeta = sum(gy)        ggamma = sum(gy x_hat)
    gx    = gamma / (M std) (M gy - gbeta - x_hat ggamma)

That backward holds x_hat and std fixed, which is exact for the gradient itself but not
for its own derivative (x_hat and std depend on x). So when a graph of the gradient is
being recorded (create_graph=True: R1 or a gradient penalty through a critic with batch
norm), the backward instead differentiates the same normalization written in ops.
"""
import functools

import numpy as np

from .. import dispatch
from .. import functional as F
from ..autograd import Function, gradient_in_ops, is_grad_enabled
from ..backend import device_of, xp_of


def channel_axes(ndim):
    return (0,) + tuple(range(2, ndim))


def per_channel(vector, ndim):
    """A per-channel vector (C,), array or Tensor, shaped to broadcast over (N, C, ...)."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


# --- the kernels: `ref` in NumPy/CuPy; `cpp` (backends/cpu/kernels.py, csrc/gan_kernels.cpp)
# does both passes of each direction per channel, channels split between threads, sums in double

def batch_norm_ref(x, weight, bias, eps):
    """(y, mean, var, inv_std), the statistics per channel."""
    axes = channel_axes(x.ndim)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)
    inv_std = 1 / xp_of(x).sqrt(var + eps)
    y = centered * inv_std
    if weight is not None:
        y = y * per_channel(weight, x.ndim)
    if bias is not None:
        y = y + per_channel(bias, x.ndim)
    return y, mean.ravel(), var.ravel(), inv_std.ravel()


def batch_norm_backward_ref(x, gy, weight, mean, inv_std):
    """(gx, gweight, gbias): the formula in the module docstring."""
    axes = channel_axes(x.ndim)
    count = x.size // x.shape[1]
    x_hat = (x - per_channel(mean, x.ndim)) * per_channel(inv_std, x.ndim)
    gbeta = gy.sum(axis=axes, keepdims=True)
    ggamma = (gy * x_hat).sum(axis=axes, keepdims=True)
    scale = per_channel(inv_std, x.ndim) / count
    if weight is not None:
        scale = scale * per_channel(weight, x.ndim)
    gx = scale * (count * gy - gbeta - x_hat * ggamma)
    return gx, ggamma.ravel(), gbeta.ravel()


dispatch.register("batch_norm", "ref", batch_norm_ref, ("cpu", "cuda"))
dispatch.register("batch_norm_backward", "ref", batch_norm_backward_ref, ("cpu", "cuda"))


def batch_norm_in_ops(x, weight=None, bias=None, eps=1e-5):
    """The same normalization as a chain of ops, every dependence on x in the graph."""
    axes = channel_axes(x.ndim)
    return F.normalized(x, F.mean(x, axes, keepdims=True), F.var(x, axes, keepdims=True, ddof=0), eps, weight, bias,
                        per_channel=True)


class BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the batch's own statistics,
    per channel; inputs (x,) or (x, weight, bias). After the forward, .mean and .var hold
    the batch statistics, one per channel (for the running averages)."""

    def __init__(self, eps=1e-5, impl=None):
        self.eps, self.impl = eps, impl

    def forward(self, x, weight=None, bias=None):
        y, self.mean, self.var, self.inv_std = dispatch.call("batch_norm", x, weight, bias, self.eps,
                                                             device=device_of(x), impl=self.impl)
        return y

    def backward(self, gy):
        if is_grad_enabled():
            return gradient_in_ops(self, functools.partial(batch_norm_in_ops, eps=self.eps), gy)
        x = self.inputs[0]._data
        weight = self.inputs[1]._data if len(self.inputs) > 1 else None
        gx, gweight, gbias = dispatch.call("batch_norm_backward", x, gy._data, weight, self.mean, self.inv_std,
                                           device=device_of(x), impl=self.impl)
        gx = F.constant(gx)
        if len(self.inputs) == 1:
            return gx
        return gx, F.constant(gweight), F.constant(gbias)

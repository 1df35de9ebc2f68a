"""The gradient penalty of WGAN-GP (Gulrajani et al.): mean over samples of
(||g_i|| - target)^2, or only its part above the target when one-sided (Petzka et al.).

Its forward reduces each sample's gradient to a norm through the kernel registry
(`per_sample_norms`: `ref` here, `cpp` in csrc/gan_kernels.cpp); its backward is
written in ops, so the penalty can sit inside a graph that is differentiated again.
"""
import numpy as np

from .. import dispatch, native
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of


def per_sample_norms_ref(grad):
    """The 2-norm of each row of a (batch, features) array."""
    return xp_of(grad).sqrt((grad * grad).sum(axis=1))


def per_sample_norms_cpp(grad):
    return native.module().per_sample_norms(np.ascontiguousarray(grad))


dispatch.register("per_sample_norms", "ref", per_sample_norms_ref, ("cpu", "cuda"))
dispatch.register("per_sample_norms", "cpp", per_sample_norms_cpp, ("cpu",), native.available)


class GradientPenalty(Function):
    def __init__(self, target=1.0, one_sided=False, impl=None):
        self.target, self.one_sided, self.impl = target, one_sided, impl

    def forward(self, grad):
        flat = grad.reshape(grad.shape[0], -1)
        norms = dispatch.call("per_sample_norms", flat, device=device_of(grad), impl=self.impl)
        excess = norms - self.target
        if self.one_sided:
            excess = xp_of(grad).maximum(excess, 0)
        return (excess * excess).mean().astype(grad.dtype)

    def backward(self, gy):
        # d/dg_i of mean((|g_i| - t)^2) = 2 (|g_i| - t) / N * g_i / |g_i|
        grad, = self.inputs
        n = grad.shape[0]
        flat = F.reshape(grad, (n, -1))
        norms = F.norm(flat, axis=1, keepdims=True)
        excess = norms - self.target
        if self.one_sided:
            excess = F.relu(excess)
        safe_norms = F.where(norms._data == 0, F.constant(1, dtype=norms.dtype, device=norms.device), norms)
        return F.reshape(gy * (2.0 / n) * excess / safe_norms * flat, grad.shape)

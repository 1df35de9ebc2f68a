"""The gradient penalty of WGAN-GP (Gulrajani et al.): mean over samples of
(||g_i|| - target)^2, or only its part above the target when one-sided (Petzka et al.).

Three registry ops make it up, each fused into one or two CUDA kernels on the GPU
(backends/gpu/cuda/grad_penalty.cu):

    gradient_penalty_interpolate   x_hat = fake + eps_i (real - fake)
    gradient_penalty               (mean_i excess_i^2, ||g_i||)
    gradient_penalty_backward      gy 2 excess_i / (N ||g_i||) g_i

The backward kernel runs inside an op of its own (GradientPenaltyGrad) whose backward
is written in ops, so the penalty can sit inside a graph that is differentiated again.
"""
import numpy as np

from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of


def excess_of(norms, target, one_sided):
    excess = norms - target
    return xp_of(norms).maximum(excess, 0) if one_sided else excess


def penalty_of(norms, target, one_sided, dtype):
    """(mean of excess^2, the norms): what the `gradient_penalty` op returns."""
    excess = excess_of(norms, target, one_sided)
    return (excess * excess).mean().astype(dtype), norms


def penalty_ref(grad, target, one_sided):
    """(mean of (||g_i|| - target)^2, the norms ||g_i||) for a (batch, features) gradient."""
    return penalty_of(xp_of(grad).sqrt((grad * grad).sum(axis=1)), target, one_sided, grad.dtype)


def penalty_backward_ref(grad, norms, gy, target, one_sided):
    """d penalty / d grad, scaled by the incoming gradient gy (a 0-d array)."""
    xp = xp_of(grad)
    # A zero gradient has no direction; its term is 0, the limit along any direction.
    safe_norms = xp.where(norms == 0, 1, norms)
    scale = gy * 2 * excess_of(norms, target, one_sided) / (grad.shape[0] * safe_norms)
    return (scale[:, None] * grad).astype(grad.dtype, copy=False)


def interpolate_ref(real, fake, eps):
    """fake + eps_i (real - fake) for (batch, features) arrays and eps (batch,)."""
    return fake + eps[:, None] * (real - fake)


dispatch.register("gradient_penalty", "ref", penalty_ref, ("cpu", "cuda"))
dispatch.register("gradient_penalty_backward", "ref", penalty_backward_ref, ("cpu", "cuda"))
dispatch.register("gradient_penalty_interpolate", "ref", interpolate_ref, ("cpu", "cuda"))


def flat(a):
    return a.reshape(a.shape[0], -1)


class GradientPenalty(Function):
    def __init__(self, target=1.0, one_sided=False, impl=None):
        self.target, self.one_sided, self.impl = target, one_sided, impl

    def forward(self, grad):
        penalty, self.norms = dispatch.call("gradient_penalty", flat(grad), self.target, self.one_sided,
                                            device=device_of(grad), impl=self.impl)
        return penalty

    def backward(self, gy):
        grad, = self.inputs
        return GradientPenaltyGrad(self.norms, self.target, self.one_sided, self.impl)(grad, gy)


class GradientPenaltyGrad(Function):
    """d/dg of gy * mean_i (||g_i|| - t)^2, that is gy * s_i g_i with s_i = 2 e_i / (N ||g_i||),
    e_i = ||g_i|| - t (clipped at 0 when one-sided). Its own gradient, for an incoming h:

        d/dg_i:  gy 2/N (e_i/||g_i|| h_i + [e_i > 0 or two-sided] t <g_i, h_i> / ||g_i||^3 g_i)
        d/dgy:   sum_i s_i <g_i, h_i>
    """

    def __init__(self, norms, target, one_sided, impl=None):
        self.norms, self.target, self.one_sided, self.impl = norms, target, one_sided, impl

    def forward(self, grad, gy):
        out = dispatch.call("gradient_penalty_backward", flat(grad), self.norms, gy, self.target, self.one_sided,
                            device=device_of(grad), impl=self.impl)
        return out.reshape(grad.shape)

    def backward(self, h):
        grad, gy = self.inputs
        n = grad.shape[0]
        g, h = F.reshape(grad, (n, -1)), F.reshape(h, (n, -1))
        norms = F.norm(g, axis=1, keepdims=True)
        safe_norms = F.where(norms._data == 0, F.constant(1, dtype=norms.dtype, device=norms.device), norms)
        excess = norms - self.target
        if self.one_sided:
            excess = F.relu(excess)
        # t / ||g||^3, where the excess is live (its derivative vanishes where it is clipped)
        live = F.constant(excess._data > 0, dtype=g.dtype, device=g.device) if self.one_sided else 1.0
        curvature = live * self.target / (safe_norms * safe_norms * safe_norms)
        along = F.sum(g * h, axis=1, keepdims=True)
        scale = (2.0 / n) * excess / safe_norms
        g_grad = gy * (scale * h + (2.0 / n) * curvature * along * g)
        gy_grad = F.sum(scale * along)
        return F.reshape(g_grad, grad.shape), gy_grad

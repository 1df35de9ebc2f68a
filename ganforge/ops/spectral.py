"""Spectral normalization's op: W / sigma, where sigma = u^T W v estimates W's largest
singular value by power iteration (Miyato et al. 2018), with u and v held constant in
the gradient as PyTorch does. The module-level hook is in ganforge/nn/spectral.py.

The registry op `spectral_norm` runs the power iteration and the division: `ref` here,
`cpp` in backends/cpu/kernels.py, and fused kernels on the GPU (backends/gpu/).
"""
import numpy as np

from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of


def power_iteration_ref(weight_matrix, u, n_iterations, eps):
    """n rounds of v = W^T u / |W^T u|, u = W v / |W v|; returns the new (u, v)."""
    xp = xp_of(weight_matrix)
    for _ in range(n_iterations):
        v = weight_matrix.T @ u
        v = v / max(float(xp.linalg.norm(v)), eps)
        u = weight_matrix @ v
        u = u / max(float(xp.linalg.norm(u)), eps)
    return u, v


def spectral_norm_with(power_iteration):
    """The registry op `spectral_norm`: (W, u, n, eps) -> (u, v, sigma, W / sigma) after n
    power-iteration steps, sigma = u^T W v, built on a (u, v) power iteration."""
    def spectral_norm_step(weight_matrix, u, n_iterations, eps):
        u, v = power_iteration(weight_matrix, u, n_iterations, eps)
        sigma = u @ (weight_matrix @ v)
        return u, v, sigma, weight_matrix / sigma
    return spectral_norm_step


# The fast kernels (C++, and fused ones on the GPU) register from ganforge/backends/.
dispatch.register("spectral_norm", "ref", spectral_norm_with(power_iteration_ref), ("cpu", "cuda"))


def weight_matrix(weight, dim):
    """The weight as a matrix with axis `dim` as its rows (an array view when it can be)."""
    if dim != 0:
        weight = xp_of(weight).moveaxis(weight, dim, 0)
    return weight.reshape(weight.shape[0], -1)


def from_weight_matrix(matrix, shape, dim):
    """weight_matrix's inverse: the matrix back in the weight's own shape."""
    if dim == 0:
        return matrix.reshape(shape)
    moved = (shape[dim],) + tuple(n for a, n in enumerate(shape) if a != dim)
    return xp_of(matrix).moveaxis(matrix.reshape(moved), 0, dim)


class SpectralNormalize(Function):
    """W / sigma, where sigma = u^T W v with u and v held constant (PyTorch's semantics).

    With n_iterations > 0 the forward first refines u and v by power iteration (the
    registry op `spectral_norm`, fused on the GPU) and leaves them in .u and .v for the
    module's buffers. The backward is written in ops, so it can be differentiated again:

        d(W / sigma) = dW / sigma - W <dW, u v^T> / sigma^2
        gW = gy / sigma - <gy, W> u v^T / sigma^2
    """

    def __init__(self, u, v, n_iterations, eps, dim):
        # Copies: the backward must see the u and v of this forward, whatever later
        # forwards write into the module's buffers.
        self.u, self.v = u.copy(), v.copy()
        self.n_iterations, self.eps, self.dim = n_iterations, eps, dim

    def forward(self, weight):
        matrix = weight_matrix(weight, self.dim)
        if self.n_iterations:
            self.u, self.v, sigma, normalized = dispatch.call("spectral_norm", matrix, self.u, self.n_iterations,
                                                              self.eps, device=device_of(weight))
            return from_weight_matrix(normalized, weight.shape, self.dim).astype(weight.dtype, copy=False)
        sigma = self.u @ (matrix @ self.v)
        return weight / sigma

    def uv(self):
        """u v^T, laid out like the weight."""
        weight = self.inputs[0]
        outer = weight.xp.outer(self.u, self.v)
        return F.constant(from_weight_matrix(outer, weight.shape, self.dim), dtype=weight.dtype, device=weight.device)

    def backward(self, gy):
        weight, = self.inputs
        uv = self.uv()
        sigma = F.sum(weight * uv)
        return gy / sigma - F.sum(gy * weight) * uv / (sigma * sigma)

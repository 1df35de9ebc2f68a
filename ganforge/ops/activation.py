"""Activations. Masks and slopes are constants in the gradient graph, so the
second derivative of ReLU-like ops is zero, as it is almost everywhere."""
from .. import functional as F
from ..autograd import Function
from ..backend import xp_of


class ReLU(Function):
    def forward(self, x):
        return xp_of(x).maximum(x, 0)

    def backward(self, gy):
        x = self.inputs[0]._data
        return gy * F.constant(x > 0, dtype=gy.dtype)


class LeakyReLU(Function):
    def __init__(self, slope=0.01):
        self.slope = slope

    def forward(self, x):
        return xp_of(x).where(x > 0, x, x * x.dtype.type(self.slope))

    def backward(self, gy):
        x = self.inputs[0]._data
        return gy * F.constant(xp_of(x).where(x > 0, 1.0, self.slope), dtype=gy.dtype)


class Sigmoid(Function):
    saves_output = True

    def forward(self, x):
        xp = xp_of(x)
        # Stable on both tails: exp of a non-positive number only.
        e = xp.exp(-abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    def backward(self, gy):
        y = self.output()
        return gy * y * (1 - y)


class Tanh(Function):
    saves_output = True

    def forward(self, x):
        return xp_of(x).tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (1 - y * y)


class Softplus(Function):
    """log(1 + exp(beta x)) / beta, computed as logaddexp so it never overflows."""

    def __init__(self, beta=1.0):
        self.beta = beta

    def forward(self, x):
        beta = x.dtype.type(self.beta)
        return xp_of(x).logaddexp(0, beta * x) / beta

    def backward(self, gy):
        x, = self.inputs
        return gy * F.sigmoid(x * self.beta)


class ELU(Function):
    saves_output = True

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def forward(self, x):
        xp = xp_of(x)
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0))).astype(x.dtype, copy=False)

    def backward(self, gy):
        # For x <= 0, d/dx alpha (e^x - 1) = y + alpha, written with y so that it has a gradient.
        x = self.inputs[0]._data
        return gy * F.where(x > 0, F.constant(1, dtype=gy.dtype, device=gy.device), self.output() + self.alpha)

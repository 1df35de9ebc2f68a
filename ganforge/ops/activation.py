"""Activations. Masks and slopes are constants in the gradient graph, so the
second derivative of ReLU-like ops is zero, as it is almost everywhere."""
import numpy as np

from .. import dispatch
from .. import functional as F
from ..autograd import Function, gradient_in_ops, is_grad_enabled
from ..backend import device_of, xp_of


# ReLU and LeakyReLU share two kernels: `ref` in NumPy/CuPy below, `cpp` in
# backends/cpu/kernels.py over csrc/gan_kernels.cpp (one pass, both cores, AVX-512 for float32).

def leaky_relu_ref(x, slope, gain=1.0):
    """x where x > 0, else slope x; times gain unless it is 1 (StyleGAN2's sqrt 2)."""
    xp, slope = xp_of(x), x.dtype.type(slope)
    if slope == 0:
        y = xp.maximum(x, 0)
    elif 0 < slope <= 1:  # then max(x, slope x) is the same thing, without where() and in one array
        y = xp.asarray(x * slope)  # (an array even for 0-d x, whose product is a scalar)
        y = xp.maximum(y, x, out=y)
    else:
        y = xp.where(x > 0, x, x * slope)
    return y if gain == 1 else xp.asarray(y * x.dtype.type(gain))


def slope_mask(x, slope):
    """The slope where x <= 0, else 1, in x's dtype. Built with arithmetic: NumPy's where()
    is ten times slower here (5 ms against 0.5 for a 64x64x14x14 batch)."""
    mask = (x > 0).astype(x.dtype)
    if slope:
        mask += (1 - mask) * x.dtype.type(slope)
    return mask


def leaky_relu_backward_ref(x, gy, slope, gain=1.0):
    """The gradients of the gain's product, then of the activation: (gy gain) times 1 or slope."""
    if gain != 1:
        gy = gy * gy.dtype.type(gain)
    return gy * slope_mask(x, slope)


dispatch.register("leaky_relu", "ref", leaky_relu_ref, ("cpu", "cuda"))
dispatch.register("leaky_relu_backward", "ref", leaky_relu_backward_ref, ("cpu", "cuda"))


# PReLU: a LeakyReLU whose slope is learned, one per channel (axis 1) or one for all.

def _slopes_over(weight, x):
    """weight (C,) or (1,) shaped to broadcast over x (N, C, ...) along its channels."""
    return weight.reshape(()) if weight.shape[0] == 1 else weight.reshape((1, -1) + (1,) * (x.ndim - 2))


def prelu_ref(x, weight):
    return xp_of(x).where(x > 0, x, _slopes_over(weight, x) * x)


def prelu_backward_ref(x, gy, weight):
    """(gx, gweight): gy times 1 where x > 0, else the slope; and for each slope, gy min(x, 0)
    summed over the values it scales."""
    xp = xp_of(x)
    gx = gy * xp.where(x > 0, x.dtype.type(1), _slopes_over(weight, x))
    share = gy * xp.minimum(x, 0)
    gweight = share.sum() if weight.shape[0] == 1 else share.sum(axis=(0,) + tuple(range(2, x.ndim)))
    return gx, xp.asarray(gweight, dtype=weight.dtype).reshape(weight.shape)


dispatch.register("prelu", "ref", prelu_ref, ("cpu", "cuda"))
dispatch.register("prelu_backward", "ref", prelu_backward_ref, ("cpu", "cuda"))


def prelu_in_ops(x, weight):
    """PReLU as a chain of ops, relu(x) + slope (x - relu(x)): its graph is the fused op's
    gradient's, to any order and to the slopes too."""
    positive = F.relu(x)
    return positive + _slopes_over(weight, x) * (x - positive)


class PReLU(Function):
    """x where x > 0, else slope x; inputs (x, weight), the slopes (C,) or (1,). One pass
    each way where the chain of ops above takes four forward and eight backward (SRGAN's
    generator spent 140 ms of a 96 px step in them)."""

    def forward(self, x, weight):
        return dispatch.call("prelu", x, weight, device=device_of(x))

    def backward(self, gy):
        if is_grad_enabled():  # a graph of the gradient is wanted: the slopes' part depends on x
            return gradient_in_ops(self, prelu_in_ops, gy)
        x, weight = (t._data for t in self.inputs)
        gx, gweight = dispatch.call("prelu_backward", x, gy._data, weight, device=device_of(x))
        return F.constant(gx), F.constant(gweight)


class LeakyReLU(Function):
    """x where x > 0, else slope x, times gain: StyleGAN2 scales its activations by sqrt 2,
    and a product of its own would be one more pass over the array, each way."""

    def __init__(self, slope=0.01, gain=1.0):
        self.slope, self.gain = slope, gain

    def forward(self, x):
        return dispatch.call("leaky_relu", x, self.slope, self.gain, device=device_of(x))

    def backward(self, gy):
        return LeakyReLUGrad(self.inputs[0]._data, self.slope, self.gain)(gy)


class LeakyReLUGrad(Function):
    """gy times the gain, times the slope where x <= 0: LeakyReLU's gradient as an op of
    gy, so that a gradient of it (a penalty's) can be taken. It is linear in gy, and x is
    a constant here (the second derivative is zero almost everywhere), so its own
    gradient is itself, applied to the incoming gradient."""

    needs_inputs = False  # only x (kept here) is read, not gy

    def __init__(self, x, slope, gain=1.0):
        self.x, self.slope, self.gain = x, slope, gain

    def forward(self, gy):
        return dispatch.call("leaky_relu_backward", self.x, gy, self.slope, self.gain, device=device_of(gy))

    def backward(self, ggx):
        return LeakyReLUGrad(self.x, self.slope, self.gain)(ggx)


class ReLU(LeakyReLU):
    def __init__(self):
        super().__init__(slope=0.0)


_overflow_limits = {}


def _exp_overflow_limit(dtype):
    """A negative x for which e^-x is still finite in `dtype` (one unit inside the edge)."""
    if dtype not in _overflow_limits:
        _overflow_limits[dtype] = dtype.type(1 - np.log(np.finfo(dtype).max))
    return _overflow_limits[dtype]


class Sigmoid(Function):
    saves_output = True

    def forward(self, x):
        # 1 / (1 + e^-x) is accurate on both tails; x is clipped only where e^-x would
        # overflow, and sigmoid is below the smallest float there anyway.
        xp = xp_of(x)
        return 1 / (1 + xp.exp(-xp.maximum(x, _exp_overflow_limit(x.dtype))))

    def backward(self, gy):
        return SigmoidGrad()(self.output(), gy)


class SigmoidGrad(Function):
    """gy * y (1 - y) in one op: sigmoid's gradient, from its output y."""

    def forward(self, y, gy):
        return gy * y * (1 - y)

    def backward(self, ggx):
        y, gy = self.inputs
        gy_grad = SigmoidGrad()(y, ggx) if self.needs_input_grad[1] else None
        y_grad = ggx * gy * (1 - 2 * y) if self.needs_input_grad[0] else None
        return y_grad, gy_grad


class Tanh(Function):
    saves_output = True

    def forward(self, x):
        return xp_of(x).tanh(x)

    def backward(self, gy):
        return TanhGrad()(self.output(), gy)


class TanhGrad(Function):
    """gy * (1 - y^2) in one op: tanh's gradient, from its output y."""

    def forward(self, y, gy):
        return gy * (1 - y * y)

    def backward(self, ggx):
        y, gy = self.inputs
        gy_grad = TanhGrad()(y, ggx) if self.needs_input_grad[1] else None
        y_grad = -2 * ggx * gy * y if self.needs_input_grad[0] else None
        return y_grad, gy_grad


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

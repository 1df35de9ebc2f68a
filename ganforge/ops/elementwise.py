"""Arithmetic and elementwise math. Binary ops broadcast; `F.sum_to` undoes it."""
from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of


# Addition and multiplication are most of a convolutional GAN's elementwise work (biases,
# StyleGAN2's styles, demodulation and gains), so they go through the kernel registry: on
# the CPU a compiled pass on both cores takes the large float32 ones
# (backends/cpu/kernels.py).
def add_ref(a, b, out=None):
    return a + b if out is None else xp_of(a, b).add(a, b, out=out)


def mul_ref(a, b):
    return a * b


dispatch.register("add", "ref", add_ref, ("cpu", "cuda"))
dispatch.register("mul", "ref", mul_ref, ("cpu", "cuda"))


class Add(Function):
    needs_inputs = False

    def forward(self, a, b):
        return dispatch.call("add", a, b, device=device_of(a))

    def backward(self, gy):
        a, b = self.inputs
        ga = F.sum_to(gy, a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(gy, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Sub(Function):
    needs_inputs = False

    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        a, b = self.inputs
        ga = F.sum_to(gy, a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(-gy, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Mul(Function):
    def forward(self, a, b):
        return dispatch.call("mul", a, b, device=device_of(a))

    def backward(self, gy):
        a, b = self.inputs
        ga = F.sum_to(gy * b, a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(gy * a, b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        return a / b

    def backward(self, gy):
        a, b = self.inputs
        ga = F.sum_to(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    needs_inputs = False

    def forward(self, a):
        return -a

    def backward(self, gy):
        return -gy


class Pow(Function):
    """a ** b; d/da = b a^(b-1), d/db = a^b log a (needed only when b requires grad)."""
    saves_output = True

    def forward(self, a, b):
        return a ** b

    def backward(self, gy):
        a, b = self.inputs
        ga = F.sum_to(gy * b * a ** (b - 1), a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(gy * self.output() * F.log(a), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Exp(Function):
    saves_output = True

    def forward(self, a):
        return xp_of(a).exp(a)

    def backward(self, gy):
        return gy * self.output()


class Log(Function):
    def forward(self, a):
        return xp_of(a).log(a)

    def backward(self, gy):
        a, = self.inputs
        return gy / a


class Sqrt(Function):
    saves_output = True

    def forward(self, a):
        return xp_of(a).sqrt(a)

    def backward(self, gy):
        return gy / (2 * self.output())


class Abs(Function):
    def forward(self, a):
        return abs(a)

    def backward(self, gy):
        a, = self.inputs
        return gy * F.constant(xp_of(a._data).sign(a._data))


class Clamp(Function):
    """Gradient 1 inside [min, max] (bounds included, as in PyTorch), 0 outside."""

    def __init__(self, min=None, max=None):
        self.min, self.max = min, max

    def forward(self, a):
        return xp_of(a).clip(a, self.min, self.max)

    def backward(self, gy):
        a = self.inputs[0]._data
        inside = xp_of(a).ones(a.shape, dtype=bool)
        if self.min is not None:
            inside &= a >= self.min
        if self.max is not None:
            inside &= a <= self.max
        return gy * F.constant(inside.astype(a.dtype))


class Maximum(Function):
    """Where a == b the gradient is split evenly, as in PyTorch."""

    def forward(self, a, b):
        return xp_of(a, b).maximum(a, b)

    def backward(self, gy):
        return _split_by_winner(self, gy, self.inputs[0]._data > self.inputs[1]._data)


class Minimum(Function):
    def forward(self, a, b):
        return xp_of(a, b).minimum(a, b)

    def backward(self, gy):
        return _split_by_winner(self, gy, self.inputs[0]._data < self.inputs[1]._data)


def _split_by_winner(fn, gy, a_wins):
    a, b = fn.inputs
    ties = a._data == b._data
    share_a = F.constant(a_wins + 0.5 * ties, dtype=gy.dtype)
    ga = F.sum_to(gy * share_a, a.shape) if fn.needs_input_grad[0] else None
    gb = F.sum_to(gy * (1 - share_a), b.shape) if fn.needs_input_grad[1] else None
    return ga, gb


class Where(Function):
    """where(condition, a, b); the condition is a constant boolean array."""

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        return xp_of(a, b).where(self.condition, a, b)

    def backward(self, gy):
        a, b = self.inputs
        zero = F.constant(0, dtype=gy.dtype, device=gy.device)
        ga = F.sum_to(F.where(self.condition, gy, zero), a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(F.where(self.condition, zero, gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb



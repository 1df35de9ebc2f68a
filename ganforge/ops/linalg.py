"""Matrix products, with NumPy's batch broadcasting over leading axes."""
from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of
from .activation import LeakyReLUGrad, leaky_relu_ref


def matmul_ref(a, b):
    return xp_of(a, b).matmul(a, b)


def linear_ref(x, weight, bias=None, slope=None):
    """x @ weight.T + bias over x's last axis, then, unless slope is None, leaky ReLU."""
    y = xp_of(x, weight).matmul(x, weight.T)
    if bias is not None:
        y = y + bias
    return y if slope is None else leaky_relu_ref(y, slope)


dispatch.register("matmul", "ref", matmul_ref, ("cpu", "cuda"))
dispatch.register("linear", "ref", linear_ref, ("cpu", "cuda"))


class MatMul(Function):
    """a @ b for a.ndim, b.ndim >= 2 (functional.matmul handles 1-D operands)."""

    def forward(self, a, b):
        return dispatch.call("matmul", a, b, device=device_of(a))

    def backward(self, gy):
        a, b = self.inputs
        ga = F.sum_to(F.matmul(gy, F.swapaxes(b, -1, -2)), a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(F.matmul(F.swapaxes(a, -1, -2), gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Linear(Function):
    """x @ weight.T + bias, over x's last axis (nn.Linear): one op where matmul, transpose
    and add would be three, with six more in their backward. For the small MLPs of 2-D
    GANs, the per-op bookkeeping of those costs as much as the products. On the CPU the
    GEMM's threads add the bias as they finish their parts of the product."""

    slope = None  # no activation

    def forward(self, x, weight, bias=None):
        return dispatch.call("linear", x, weight, bias, self.slope, device=device_of(x))

    def backward(self, gy):
        x, weight = self.inputs[0], self.inputs[1]
        needs = self.needs_input_grad
        gx = F.matmul(gy, weight) if needs[0] else None
        if x.ndim != 2:  # the weight's and bias's gradients sum over every leading axis of x
            x, gy = F.reshape(x, (-1, x.shape[-1])), F.reshape(gy, (-1, gy.shape[-1]))
        gw = F.matmul(F.transpose(gy), x) if needs[1] else None
        gb = F.sum(gy, axis=0) if len(needs) > 2 and needs[2] else None
        return gx, gw, gb


class LinearLeakyReLU(Linear):
    """leaky_relu(x @ weight.T + bias, slope) as one op, for 0 <= slope <= 1 (0: ReLU).
    nn.Sequential runs a Linear and the LeakyReLU or ReLU right after it this way: on the
    CPU the GEMM's threads then apply the activation too, and the output is not read back
    in a pass of its own. The backward takes the mask from the output: for such slopes,
    y > 0 exactly where x @ weight.T + bias > 0."""

    saves_output = True

    def __init__(self, slope):
        if not 0 <= slope <= 1:
            raise ValueError(f"LinearLeakyReLU: the slope must lie in [0, 1] for the output to give the mask, "
                             f"got {slope}; use Linear and LeakyReLU")
        self.slope = slope

    def backward(self, gy):
        return super().backward(LeakyReLUGrad(self.output()._data, self.slope)(gy))

"""Matrix products, with NumPy's batch broadcasting over leading axes."""
from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of


def matmul_ref(a, b):
    return xp_of(a, b).matmul(a, b)


dispatch.register("matmul", "ref", matmul_ref, ("cpu", "cuda"))


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
    GANs, the per-op bookkeeping of those costs as much as the products."""

    def forward(self, x, weight, bias=None):
        y = dispatch.call("matmul", x, weight.T, device=device_of(x))
        if bias is None:
            return y
        if bias.dtype == y.dtype:
            y += bias  # into the product's own fresh array: no second output array
            return y
        return y + bias  # (mixed precision promotes, as NumPy does)

    def backward(self, gy):
        x, weight = self.inputs[0], self.inputs[1]
        needs = self.needs_input_grad
        gx = F.matmul(gy, weight) if needs[0] else None
        if x.ndim != 2:  # the weight's and bias's gradients sum over every leading axis of x
            x, gy = F.reshape(x, (-1, x.shape[-1])), F.reshape(gy, (-1, gy.shape[-1]))
        gw = F.matmul(F.transpose(gy), x) if needs[1] else None
        gb = F.sum(gy, axis=0) if len(needs) > 2 and needs[2] else None
        return gx, gw, gb

"""Matrix products, with NumPy's batch broadcasting over leading axes."""
from .. import functional as F
from ..autograd import Function
from ..backend import xp_of


class MatMul(Function):
    """a @ b for a.ndim, b.ndim >= 2 (functional.matmul handles 1-D operands)."""

    def forward(self, a, b):
        return xp_of(a, b).matmul(a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = F.sum_to(F.matmul(gy, F.swapaxes(b, -1, -2)), a.shape) if self.needs_input_grad[0] else None
        gb = F.sum_to(F.matmul(F.swapaxes(a, -1, -2), gy), b.shape) if self.needs_input_grad[1] else None
        return ga, gb

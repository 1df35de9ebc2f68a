"""Reductions over axes. `axis` is None (all) or a tuple of non-negative ints,
normalized by ganforge.functional before it gets here."""
from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of


def sum_leading_ref(x):
    return x.sum(axis=0)


# Summing over the batch (a Linear's bias gradient, and the first half of a conv bias's)
# reads the whole gradient; NumPy does it on one core, in the order of the rows, which
# the compiled twin keeps (backends/cpu/kernels.py).
dispatch.register("sum_leading", "ref", sum_leading_ref, ("cpu", "cuda"))


def sum_leading(x, keepdims=False):
    """x summed over its first axis."""
    y = dispatch.call("sum_leading", x, device=device_of(x))
    return y[None] if keepdims else y


def sum_trailing_ref(x, count):
    return x.sum(axis=tuple(range(x.ndim - count, x.ndim)))


# Summing each image plane (the gradients of per-sample, per-channel scales such as
# StyleGAN2's styles, and a conv bias's second half) is one short row per (sample,
# channel); NumPy sums them on one core, in a pairwise order the compiled twin keeps.
dispatch.register("sum_trailing", "ref", sum_trailing_ref, ("cpu", "cuda"))


def trailing_count(ndim, axis):
    """How many trailing axes `axis` (a tuple) names, if it names exactly the last few and
    leaves one or more in front; else 0."""
    count = len(axis)
    return count if 0 < count < ndim and axis == tuple(range(ndim - count, ndim)) else 0


def sum_trailing(x, count, keepdims=False):
    """x summed over its last `count` axes."""
    y = dispatch.call("sum_trailing", x, count, device=device_of(x))
    return y.reshape(y.shape + (1,) * count) if keepdims else y


def keepdims_shape(shape, axis):
    """The shape of a reduction over `axis` with keepdims=True."""
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else size for i, size in enumerate(shape))


def _spread(gy, x, axis):
    """gy, shaped like a reduction over `axis`, broadcast back to x's shape."""
    return F.broadcast_to(F.reshape(gy, keepdims_shape(x.shape, axis)), x.shape)


class Sum(Function):
    needs_inputs = False

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        if self.axis == (0,) and x.ndim > 1:
            return sum_leading(x, self.keepdims)
        if self.axis is not None and trailing_count(x.ndim, self.axis):
            return sum_trailing(x, len(self.axis), self.keepdims)
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        return _spread(gy, self.inputs[0], self.axis)


class _Extremum(Function):
    """max/min: the gradient goes to the arg-extreme elements, split evenly among ties."""
    reduce = None

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        if x.size == 0:
            raise ValueError(f"{type(self).__name__.lower()} of an empty tensor (shape {x.shape})")
        return getattr(x, self.reduce)(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        x = self.inputs[0]._data
        extreme = getattr(x, self.reduce)(axis=self.axis, keepdims=True)
        winners = (x == extreme).astype(x.dtype)
        share = winners / winners.sum(axis=self.axis, keepdims=True)
        return _spread(gy, self.inputs[0], self.axis) * F.constant(share)


class Max(_Extremum):
    reduce = "max"


class Min(_Extremum):
    reduce = "min"


class Norm(Function):
    """The 2-norm sqrt(sum x^2). Its gradient x / ||x|| is taken as 0 where ||x|| = 0
    (PyTorch's choice), which keeps gradient penalties finite."""
    saves_output = True

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        return xp_of(x).sqrt((x * x).sum(axis=self.axis, keepdims=self.keepdims))

    def backward(self, gy):
        x, y = self.inputs[0], self.output()
        safe_y = F.where(y._data == 0, F.constant(1, dtype=y.dtype, device=y.device), y)
        return _spread(gy / safe_y, x, self.axis) * x

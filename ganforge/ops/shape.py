"""Ops that move elements around without arithmetic: their gradients move them back."""
import numpy as np

from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, scatter_add, xp_of
from .reduce import sum_leading, sum_trailing, trailing_count


class Reshape(Function):
    needs_inputs = False

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, gy):
        return F.reshape(gy, self.inputs[0].shape)


class Transpose(Function):
    needs_inputs = False

    def __init__(self, axes):
        self.axes = tuple(axes)

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        return F.permute(gy, tuple(np.argsort(self.axes)))


class BroadcastTo(Function):
    needs_inputs = False

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        return xp_of(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return F.sum_to(gy, self.inputs[0].shape)


class SumTo(Function):
    """Sum a broadcast array back down to `shape`: the adjoint of BroadcastTo."""
    needs_inputs = False


    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        lead = x.ndim - len(self.shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, size in enumerate(self.shape)
                                          if size == 1 and x.shape[lead + i] != 1)
        if len(axes) > 1 and axes[0] == 0:
            # A bias's gradient, (N, C, H, W) -> (1, C, 1, 1): NumPy reduces over axes 0, 2
            # and 3 at once element by element; adding the N slabs first, whole, and then
            # the rows of what is left was 2.5-5x faster on dcgan28's layers.
            x = sum_leading(x, keepdims=True)
            axes = axes[1:]
        if trailing_count(x.ndim, axes):  # per (sample, channel) over H and W: one row each
            return sum_trailing(x, len(axes)).reshape(self.shape)
        y = x.sum(axis=axes, keepdims=True)
        return y.reshape(self.shape)

    def backward(self, gy):
        return F.broadcast_to(gy, self.inputs[0].shape)


def is_basic_index(index):
    """True when no position can be selected twice (slices, ints, None, ..., boolean masks)."""
    parts = index if isinstance(index, tuple) else (index,)
    for part in parts:
        if part is None or part is Ellipsis or isinstance(part, (int, np.integer, slice)):
            continue
        if getattr(part, "dtype", None) is not None and part.dtype == bool:
            continue
        return False
    return True


class GetItem(Function):
    needs_inputs = False

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        return x[self.index]

    def backward(self, gy):
        return F.getitem_grad(gy, self.index, self.inputs[0].shape)


class GetItemGrad(Function):
    """Scatter gy into zeros shaped like the indexed tensor (adding where an integer
    index repeats a position). Its own gradient is plain indexing."""
    needs_inputs = False


    def __init__(self, index, shape):
        self.index, self.shape = index, tuple(shape)

    def forward(self, gy):
        gx = xp_of(gy).zeros(self.shape, dtype=gy.dtype)
        if is_basic_index(self.index):
            gx[self.index] = gy
        else:
            scatter_add(gx, self.index, gy)
        return gx

    def backward(self, ggx):
        return F.getitem(ggx, self.index)


class Concat(Function):
    needs_inputs = False

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        return xp_of(*xs).concatenate(xs, axis=self.axis)

    def backward(self, gy):
        grads, start = [], 0
        for x, needed in zip(self.inputs, self.needs_input_grad):
            stop = start + x.shape[self.axis]
            index = (slice(None),) * self.axis + (slice(start, stop),)
            grads.append(F.getitem(gy, index) if needed else None)
            start = stop
        return tuple(grads)


class PadConstant(Function):
    """Pad with a constant; `pad_width` is ((before, after),) per axis, all axes given."""
    needs_inputs = False


    def __init__(self, pad_width, value=0):
        self.pad_width, self.value = tuple(pad_width), value

    def forward(self, x):
        return xp_of(x).pad(x, self.pad_width, mode="constant", constant_values=self.value)

    def backward(self, gy):
        index = tuple(slice(before, size - after) for (before, after), size in zip(self.pad_width, gy.shape))
        return F.getitem(gy, index)


def _copy_taps(taps, pixels, r, to_pixels):
    """Between contiguous (N, C r^2, H, W) taps and (N, C, H r, W r) pixels, one (i, j) tap
    at a time, in the direction `to_pixels` says. Each is a strided copy of whole rows: a
    reshape of the permuted 6-axis view copies element by element along an axis of r, at
    2.5x the time (21 against 8.4 ms for SRGAN's (16, 256, 48, 48))."""
    n, c, h, w = taps.shape
    tap_view = taps.reshape(n, c // (r * r), r, r, h, w)
    pixel_view = pixels.reshape(n, c // (r * r), h, r, w, r)
    for i in range(r):
        for j in range(r):
            if to_pixels:
                pixel_view[:, :, :, i, :, j] = tap_view[:, :, i, j]
            else:
                tap_view[:, :, i, j] = pixel_view[:, :, :, i, :, j]


def pixel_shuffle_ref(x, r):
    n, c, h, w = x.shape
    out = xp_of(x).empty((n, c // (r * r), h * r, w * r), dtype=x.dtype)
    _copy_taps(x, out, r, to_pixels=True)
    return out


def pixel_unshuffle_ref(y, r):
    n, c, hr, wr = y.shape
    out = xp_of(y).empty((n, c * r * r, hr // r, wr // r), dtype=y.dtype)
    _copy_taps(out, y, r, to_pixels=False)
    return out


dispatch.register("pixel_shuffle", "ref", pixel_shuffle_ref, ("cpu", "cuda"))
dispatch.register("pixel_unshuffle", "ref", pixel_unshuffle_ref, ("cpu", "cuda"))


class _TapShuffle(Function):
    """PixelShuffle and PixelUnshuffle: each the other's inverse and adjoint."""
    needs_inputs = False

    def __init__(self, r):
        self.r = r


class PixelShuffle(_TapShuffle):
    """(N, C r^2, H, W) -> (N, C, H r, W r): output pixel (h r + i, w r + j) of channel c
    is input channel c r^2 + i r + j at (h, w)."""

    def forward(self, x):
        return dispatch.call("pixel_shuffle", x, self.r, device=device_of(x))

    def backward(self, gy):
        return PixelUnshuffle(self.r)(gy)


class PixelUnshuffle(_TapShuffle):
    """The inverse (and adjoint) of PixelShuffle: (N, C, H r, W r) -> (N, C r^2, H, W)."""

    def forward(self, y):
        return dispatch.call("pixel_unshuffle", y, self.r, device=device_of(y))

    def backward(self, gx):
        return PixelShuffle(self.r)(gx)


def pad_reflect_ref(x, pad_width):
    return xp_of(x).pad(x, pad_width, mode="reflect")


def pad_reflect_backward_ref(gy, pad_width):
    """Each padded entry of gy added onto the entry it mirrors, one axis after another."""
    for axis, (before, after) in enumerate(pad_width):
        if not before and not after:
            continue
        size = gy.shape[axis] - before - after

        def at(start, stop, step=1):
            return (slice(None),) * axis + (slice(start, stop, step),)
        gx = gy[at(before, before + size)].copy()
        if before:  # padded entries 0..before-1 mirror entries before..1
            gx[at(1, before + 1)] += gy[at(before - 1, None, -1)]
        if after:  # padded entries past the end mirror entries size-2 down to size-1-after
            gx[at(size - 1 - after, size - 1)] += gy[at(before + size + after - 1, before + size - 1, -1)]
        gy = gx
    return gy


# CycleGAN pads every convolution's input by reflection; np.pad takes 4-6x PyTorch's time
# for it, so the CPU has a compiled pass for both directions (backends/cpu/kernels.py).
dispatch.register("pad_reflect", "ref", pad_reflect_ref, ("cpu", "cuda"))
dispatch.register("pad_reflect_backward", "ref", pad_reflect_backward_ref, ("cpu", "cuda"))


class PadReflect(Function):
    """Pad by reflection (the edge is not repeated: [a b c] -> [c b | a b c | b a]);
    `pad_width` is ((before, after),) per axis, each smaller than its axis."""
    needs_inputs = False

    def __init__(self, pad_width):
        self.pad_width = tuple(pad_width)

    def forward(self, x):
        return dispatch.call("pad_reflect", x, self.pad_width, device=device_of(x))

    def backward(self, gy):
        return PadReflectGrad(self.pad_width)(gy)


class PadReflectGrad(Function):
    """The adjoint of PadReflect: the padded gradient folded back, each border added onto
    the entries it mirrors. Linear, so its own gradient is PadReflect again."""
    needs_inputs = False

    def __init__(self, pad_width):
        self.pad_width = tuple(pad_width)

    def forward(self, gy):
        return dispatch.call("pad_reflect_backward", gy, self.pad_width, device=device_of(gy))

    def backward(self, ggx):
        return PadReflect(self.pad_width)(ggx)


class Flip(Function):
    needs_inputs = False

    def __init__(self, axes):
        self.axes = tuple(axes)

    def forward(self, x):
        return xp_of(x).flip(x, self.axes)

    def backward(self, gy):
        return F.flip(gy, self.axes)

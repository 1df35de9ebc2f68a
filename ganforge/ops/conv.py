"""Sliding windows: unfold (im2col) and fold (col2im), each the other's gradient.

A convolution is unfold followed by one matrix product, so these two kernels are the
ones every convolution stands on. Both go through the kernel registry: `ref` is the
NumPy/CuPy code below, `cpp` the compiled one in csrc/im2col.cpp.
"""
import numpy as np

from .. import dispatch, native
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of


def pair(value, name):
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value}")
    return value


def output_size(image_size, kernel_size, stride, padding, dilation):
    """Output (height, width) of a sliding window, checking that the window fits."""
    out = []
    for size, k, s, p, d, axis in zip(image_size, kernel_size, stride, padding, dilation, ("height", "width")):
        if k <= 0 or s <= 0 or d <= 0 or p < 0:
            raise ValueError(f"kernel_size, stride and dilation must be positive and padding non-negative; got "
                             f"kernel_size={kernel_size}, stride={stride}, padding={padding}, dilation={dilation}")
        span = d * (k - 1) + 1
        if span > size + 2 * p:
            raise ValueError(f"kernel {axis} {span} (with dilation) is larger than the padded input "
                             f"{axis} {size + 2 * p}")
        out.append((size + 2 * p - span) // s + 1)
    return tuple(out)


# --- the reference kernels ------------------------------------------------------------

def _window(start, count, stride):
    return slice(start, start + stride * (count - 1) + 1, stride)


def im2col_ref(x, kernel_size, stride, padding, dilation):
    """(N, C, H, W) -> (N, C*KH*KW, OH*OW): one strided copy per kernel offset."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = output_size((h, w), kernel_size, stride, padding, dilation)
    padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = padded[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)]
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im_ref(cols, channels, image_size, kernel_size, stride, padding, dilation):
    """The adjoint of im2col: add every column back where it was read from."""
    xp = xp_of(cols)
    n = cols.shape[0]
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = image_size, kernel_size, stride, padding, dilation
    oh, ow = output_size(image_size, kernel_size, stride, padding, dilation)
    cols = cols.reshape(n, channels, kh, kw, oh, ow)
    padded = xp.zeros((n, channels, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # Within one kernel offset the windows never overlap, so += is a true scatter-add.
            padded[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]


def im2col_cpp(x, kernel_size, stride, padding, dilation):
    return native.module().im2col(np.ascontiguousarray(x), kernel_size, stride, padding, dilation)


def col2im_cpp(cols, channels, image_size, kernel_size, stride, padding, dilation):
    return native.module().col2im(np.ascontiguousarray(cols), channels, image_size, kernel_size, stride,
                                  padding, dilation)


dispatch.register("im2col", "ref", im2col_ref, ("cpu", "cuda"))
dispatch.register("col2im", "ref", col2im_ref, ("cpu", "cuda"))
dispatch.register("im2col", "cpp", im2col_cpp, ("cpu",), native.available)
dispatch.register("col2im", "cpp", col2im_cpp, ("cpu",), native.available)


# --- the ops --------------------------------------------------------------------------

class Unfold(Function):
    needs_inputs = False

    def __init__(self, kernel_size, stride=1, padding=0, dilation=1, impl=None):
        self.geometry = (pair(kernel_size, "kernel_size"), pair(stride, "stride"),
                         pair(padding, "padding"), pair(dilation, "dilation"))
        self.impl = impl

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"unfold expects an (N, C, H, W) input, got shape {x.shape}")
        output_size(x.shape[2:], *self.geometry)  # a clear error before any kernel runs
        return dispatch.call("im2col", x, *self.geometry, device=device_of(x), impl=self.impl)

    def backward(self, gy):
        return F.fold(gy, self.inputs[0].shape[2:], *self.geometry)


class Fold(Function):
    needs_inputs = False

    def __init__(self, image_size, kernel_size, stride=1, padding=0, dilation=1, impl=None):
        self.image_size = pair(image_size, "output_size")
        self.geometry = (pair(kernel_size, "kernel_size"), pair(stride, "stride"),
                         pair(padding, "padding"), pair(dilation, "dilation"))
        self.impl = impl

    def forward(self, cols):
        (kh, kw) = self.geometry[0]
        oh, ow = output_size(self.image_size, *self.geometry)
        if cols.ndim != 3 or cols.shape[1] % (kh * kw) or cols.shape[2] != oh * ow:
            raise ValueError(f"fold expects (N, C*{kh}*{kw}, {oh * ow}) columns for an output of size "
                             f"{self.image_size}, got shape {cols.shape}")
        channels = cols.shape[1] // (kh * kw)
        return dispatch.call("col2im", cols, channels, self.image_size, *self.geometry,
                             device=device_of(cols), impl=self.impl)

    def backward(self, gy):
        return F.unfold(gy, *self.geometry)

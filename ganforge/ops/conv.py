"""Convolution: sliding windows (unfold/im2col, fold/col2im) and the three convolutions
built on them, each one's gradient written with the three.

A convolution is im2col followed by one matrix product; that is what the `ref` kernels
below do, in NumPy or CuPy. The fast implementations of the same registry ops live in
ganforge/backends/ (cpu/conv.py, gpu/kernels.py); ganforge/dispatch.py chooses.
"""
import numpy as np

from .. import dispatch
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of
from .norm import per_channel


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


def im2col_ref(x, kernel_size, stride, padding, dilation, batch_in_columns=False):
    """(N, C, H, W) -> (N, C*KH*KW, OH*OW): column l is the window under output position l,
    a row per channel and kernel tap. With batch_in_columns, (C*KH*KW, N*OH*OW): the
    samples' columns side by side (a layout the CPU kernels multiply faster)."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = output_size((h, w), kernel_size, stride, padding, dilation)
    padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):  # tap (i, j) of every window at once: a strided slice
            cols[:, :, i, j] = padded[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)]
    cols = cols.reshape(n, c * kh * kw, oh * ow)
    return cols.transpose(1, 0, 2).reshape(c * kh * kw, n * oh * ow) if batch_in_columns else cols


def col2im_ref(cols, channels, image_size, kernel_size, stride, padding, dilation, batch_in_columns=False):
    """The adjoint of im2col: add every column back where it was read from."""
    xp = xp_of(cols)
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = image_size, kernel_size, stride, padding, dilation
    oh, ow = output_size(image_size, kernel_size, stride, padding, dilation)
    if batch_in_columns:
        cols = cols.reshape(cols.shape[0], -1, oh * ow).transpose(1, 0, 2)
    n = cols.shape[0]
    cols = cols.reshape(n, channels, kh, kw, oh, ow)
    padded = xp.zeros((n, channels, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # Within one kernel tap the windows never overlap, so += is a true scatter-add.
            padded[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]


dispatch.register("im2col", "ref", im2col_ref, ("cpu", "cuda"))
dispatch.register("col2im", "ref", col2im_ref, ("cpu", "cuda"))


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


# --- convolution: three primitives, each one's gradient written with the three ----------
#
#   y  = conv2d(x, W)             gx = conv_transpose2d(gy, W)      gW = conv2d_weight_grad(x, gy)
#   y  = conv_transpose2d(x, W)   gx = conv2d(gy, W)                gW = conv2d_weight_grad(gy, x)
#   gW = conv2d_weight_grad(x, gy)  gx = conv_transpose2d(gy, ggW)  ggy = conv2d(x, ggW)
#
# so gradients of any order of any conv net stay inside these three (stylegan2-ada's
# conv2d_gradfix idea). Each is an im2col/col2im plus one batched matrix product per group.

def conv2d_ref(x, w, stride, padding, dilation, groups):
    """y[n, o] = sum over c and the taps of w[o, c, tap] * x[n, c] under the window:
    im2col, then (O/G, C/G*KH*KW) @ (C/G*KH*KW, OH*OW) per sample and group."""
    n, g = x.shape[0], groups
    o, _, kh, kw = w.shape
    oh, ow = output_size(x.shape[2:], (kh, kw), stride, padding, dilation)
    cols = im2col_ref(x, (kh, kw), stride, padding, dilation)
    y = w.reshape(g, o // g, -1) @ cols.reshape(n, g, -1, oh * ow)  # (N, G, O/G, OH*OW)
    return y.reshape(n, o, oh, ow)


def conv_transpose2d_ref(x, w, out_size, stride, padding, dilation, groups):
    """conv2d's adjoint: each input pixel spreads w's taps over its window (cols = W^T x),
    and col2im adds the overlapping windows up."""
    n, c, h, wd = x.shape
    _, o_per_group, kh, kw = w.shape
    g = groups
    w_t = w.reshape(g, c // g, o_per_group * kh * kw).transpose(0, 2, 1)
    cols = w_t @ x.reshape(n, g, c // g, h * wd)  # (N, G, O/G*KH*KW, H*W)
    return col2im_ref(cols.reshape(n, -1, h * wd), g * o_per_group, out_size, (kh, kw), stride, padding, dilation)


def conv2d_weight_grad_ref(x, gy, weight_shape, stride, padding, dilation, groups):
    """dL/dW for y = conv2d(x, W): gy times the window each output saw, summed over samples
    and positions, which is one matrix product once those two share an axis."""
    n, g = x.shape[0], groups
    o = weight_shape[0]
    cols = im2col_ref(x, weight_shape[2:], stride, padding, dilation)
    positions = cols.shape[2]
    gy_rows = gy.reshape(n, g, o // g, positions).transpose(1, 2, 0, 3).reshape(g, o // g, n * positions)
    cols_rows = cols.reshape(n, g, -1, positions).transpose(1, 0, 3, 2).reshape(g, n * positions, -1)
    return (gy_rows @ cols_rows).reshape(weight_shape)


for _op, _ref in (("conv2d", conv2d_ref), ("conv_transpose2d", conv_transpose2d_ref),
                  ("conv2d_weight_grad", conv2d_weight_grad_ref)):
    dispatch.register(_op, "ref", _ref, ("cpu", "cuda"))


def transposed_output_size(size, kernel_size, stride, padding, dilation, output_padding):
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for n, k, s, p, d, op in zip(size, kernel_size, stride, padding, dilation, output_padding))


def output_padding_for(image_size, out_size, kernel_size, stride, padding, dilation):
    """The output_padding that makes conv_transpose2d give back exactly `image_size`
    from a conv2d output of `out_size` (the rows a strided conv2d skipped)."""
    base = transposed_output_size(out_size, kernel_size, stride, padding, dilation, (0, 0))
    return tuple(n - b for n, b in zip(image_size, base))


def plus_bias(y, bias):
    """y + bias per channel. In place: y is the convolution's own new array (a kernel
    never returns one of its inputs), so the sum needs no second output-sized array. The
    registry's add does it: on the CPU both cores take a large one, where NumPy's `+=`
    broadcasts element by element on one (StyleGAN2's, SRGAN's and CycleGAN's bias adds,
    1-1.5% of their steps, take 38-44% of NumPy's time that way)."""
    if bias is None:
        return y
    bias = per_channel(bias, y.ndim)
    if bias.dtype != y.dtype:
        return y + bias
    return dispatch.call("add", y, bias, out=y, device=device_of(y))


class _Convolution(Function):
    def __init__(self, stride=1, padding=0, dilation=1, groups=1, impl=None):
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        if int(groups) < 1:
            raise ValueError(f"groups must be positive, got {groups}")
        self.groups, self.impl = int(groups), impl

    def geometry(self, kernel_size):
        return (kernel_size, self.stride, self.padding, self.dilation)

    def bias_grad(self, gy):
        """The gradient of the per-channel bias (a third input, if given): gy summed over
        all but the channel axis."""
        if len(self.inputs) < 3 or not self.needs_input_grad[2]:
            return None
        return F.reshape(F.sum_to(gy, (1, gy.shape[1], 1, 1)), (gy.shape[1],))

    def options(self):
        """The arguments the gradient convolutions share with this one."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    impl=self.impl)


# --- the ops ----------------------------------------------------------------------------

class Conv2d(_Convolution):
    """Cross-correlation of x (N, C, H, W) with W (O, C/groups, KH, KW)."""

    def forward(self, x, w, bias=None):
        output_size(x.shape[2:], *self.geometry(w.shape[2:]))  # a clear error before any kernel runs
        return plus_bias(dispatch.call("conv2d", x, w, self.stride, self.padding, self.dilation, self.groups,
                                       device=device_of(x), impl=self.impl), bias)

    def backward(self, gy):
        x, w = self.inputs[:2]
        gx = gw = None
        if self.needs_input_grad[0]:
            extra = output_padding_for(x.shape[2:], gy.shape[2:], w.shape[2:], self.stride, self.padding,
                                       self.dilation)
            gx = F.conv_transpose2d(gy, w, output_padding=extra, **self.options())
        if self.needs_input_grad[1]:
            gw = F.conv2d_weight_grad(x, gy, w.shape, **self.options())
        return gx, gw, self.bias_grad(gy)


class ConvTranspose2d(_Convolution):
    """The adjoint of conv2d: x (N, C, H, W) with W (C, O/groups, KH, KW) -> (N, O, H', W')."""

    def __init__(self, stride=1, padding=0, output_padding=0, dilation=1, groups=1, impl=None):
        super().__init__(stride, padding, dilation, groups, impl)
        self.output_padding = pair(output_padding, "output_padding")
        for extra, s in zip(self.output_padding, self.stride):
            # (PyTorch also allows output_padding up to the dilation; those extra rows lie out of
            # every window's reach and are always zero, so ganforge does not support them.)
            if not 0 <= extra < s:
                raise ValueError(f"conv_transpose2d: output_padding {extra} must be non-negative and smaller "
                                 f"than the stride {s}")

    def forward(self, x, w, bias=None):
        out = transposed_output_size(x.shape[2:], w.shape[2:], self.stride, self.padding, self.dilation,
                                     self.output_padding)
        if min(out) < 1:
            raise ValueError(f"conv_transpose2d: an input of size {x.shape[2:]} with kernel {w.shape[2:]}, "
                             f"stride {self.stride}, padding {self.padding} and dilation {self.dilation} gives "
                             f"an output of size {out}; use less padding")
        return plus_bias(dispatch.call("conv_transpose2d", x, w, out, self.stride, self.padding, self.dilation,
                                       self.groups, device=device_of(x), impl=self.impl), bias)

    def backward(self, gy):
        x, w = self.inputs[:2]
        gx = F.conv2d(gy, w, **self.options()) if self.needs_input_grad[0] else None
        gw = F.conv2d_weight_grad(gy, x, w.shape, **self.options()) if self.needs_input_grad[1] else None
        return gx, gw, self.bias_grad(gy)


class Conv2dWeightGrad(_Convolution):
    """The gradient of conv2d with respect to its weight: sum over the batch of gy x cols(x)^T."""

    def __init__(self, weight_shape, stride=1, padding=0, dilation=1, groups=1, impl=None):
        super().__init__(stride, padding, dilation, groups, impl)
        self.weight_shape = tuple(weight_shape)

    def forward(self, x, gy):
        return dispatch.call("conv2d_weight_grad", x, gy, self.weight_shape, self.stride, self.padding,
                             self.dilation, self.groups, device=device_of(x), impl=self.impl)

    def backward(self, ggw):
        x, gy = self.inputs
        gx = ggy = None
        if self.needs_input_grad[0]:
            extra = output_padding_for(x.shape[2:], gy.shape[2:], self.weight_shape[2:], self.stride,
                                       self.padding, self.dilation)
            gx = F.conv_transpose2d(gy, ggw, output_padding=extra, **self.options())
        if self.needs_input_grad[1]:
            ggy = F.conv2d(x, ggw, **self.options())
        return gx, ggy

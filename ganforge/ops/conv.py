"""Sliding windows: unfold (im2col) and fold (col2im), each the other's gradient.

A convolution is unfold followed by one matrix product, so these two kernels are the
ones every convolution stands on. Both go through the kernel registry: `ref` is the
NumPy/CuPy code below, `cpp` the compiled one in csrc/im2col.cpp.
"""
import functools

import numpy as np

from .. import dispatch, native
from .. import functional as F
from ..autograd import Function
from ..backend import device_of, xp_of
from . import conv_gathered
from .gemm import NativeGemm, ReferenceGemm


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
    """(N, C, H, W) -> (N, C*KH*KW, OH*OW): one strided copy per kernel offset.
    With batch_in_columns, (C*KH*KW, N*OH*OW): every sample's columns side by side."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh, ow = output_size((h, w), kernel_size, stride, padding, dilation)
    padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((c, kh, kw, n, oh, ow) if batch_in_columns else (n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)]
            if batch_in_columns:
                cols[:, i, j] = window.transpose(1, 0, 2, 3)
            else:
                cols[:, :, i, j] = window
    return cols.reshape(c * kh * kw, n * oh * ow) if batch_in_columns else cols.reshape(n, c * kh * kw, oh * ow)


def col2im_ref(cols, channels, image_size, kernel_size, stride, padding, dilation, batch_in_columns=False):
    """The adjoint of im2col: add every column back where it was read from."""
    xp = xp_of(cols)
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = image_size, kernel_size, stride, padding, dilation
    oh, ow = output_size(image_size, kernel_size, stride, padding, dilation)
    if batch_in_columns:
        n = cols.shape[1] // (oh * ow)
        cols = cols.reshape(channels, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
    else:
        n = cols.shape[0]
        cols = cols.reshape(n, channels, kh, kw, oh, ow)
    padded = xp.zeros((n, channels, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # Within one kernel offset the windows never overlap, so += is a true scatter-add.
            padded[:, :, _window(i * dh, oh, sh), _window(j * dw, ow, sw)] += cols[:, :, i, j]
    return padded[:, :, ph:ph + h, pw:pw + w]


def im2col_cpp(x, kernel_size, stride, padding, dilation, batch_in_columns=False):
    return native.module().im2col(np.ascontiguousarray(x), kernel_size, stride, padding, dilation, batch_in_columns)


def col2im_cpp(cols, channels, image_size, kernel_size, stride, padding, dilation, batch_in_columns=False):
    positions = np.prod(output_size(image_size, kernel_size, stride, padding, dilation))
    batch = cols.shape[1] // positions if batch_in_columns else cols.shape[0]
    return native.module().col2im(np.ascontiguousarray(cols), batch, channels, image_size, kernel_size, stride,
                                  padding, dilation, batch_in_columns)


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


# --- convolution: three primitives, each one's gradient written with the three ----------
#
#   y  = conv2d(x, W)             gx = conv_transpose2d(gy, W)      gW = conv2d_weight_grad(x, gy)
#   y  = conv_transpose2d(x, W)   gx = conv2d(gy, W)                gW = conv2d_weight_grad(gy, x)
#   gW = conv2d_weight_grad(x, gy)  gx = conv_transpose2d(gy, ggW)  ggy = conv2d(x, ggW)
#
# so gradients of any order of any conv net stay inside these three (stylegan2-ada's
# conv2d_gradfix idea). Each is an im2col/col2im plus one batched matrix product per group.

def transposed_output_size(size, kernel_size, stride, padding, dilation, output_padding):
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for n, k, s, p, d, op in zip(size, kernel_size, stride, padding, dilation, output_padding))


def output_padding_for(image_size, out_size, kernel_size, stride, padding, dilation):
    """The output_padding that makes conv_transpose2d give back exactly `image_size`
    from a conv2d output of `out_size` (the rows a strided conv2d skipped)."""
    base = transposed_output_size(out_size, kernel_size, stride, padding, dilation, (0, 0))
    return tuple(n - b for n, b in zip(image_size, base))


# Two ways to run a convolution's GEMMs over a batch. With many output positions per
# sample, one GEMM per sample (NumPy's broadcasting matmul) is efficient and its results
# land in (N, C, L) layout directly. With few (a 7x7 map is a 49-column GEMM), such
# GEMMs are too thin for BLAS to run well, so the columns of the whole batch are laid
# side by side, (C*KH*KW, N*L), and one large GEMM per group does the work, at the price
# of transposing the other operand or the result between (N, C, L) and (C, N*L).
BATCH_IN_COLUMNS_BELOW = 128  # output positions per sample (measured: bench/test_conv.py)


def batch_major(a, groups):
    """(N, G*A, L) -> (G, A, N*L): the samples of each channel side by side."""
    n, channels, positions = a.shape
    return a.reshape(n, groups, channels // groups, positions).transpose(1, 2, 0, 3).reshape(
        groups, channels // groups, n * positions)


def sample_major(a, n, spatial):
    """(G, A, N*L) -> contiguous (N, G*A, *spatial): batch_major's inverse."""
    g, per_group, _ = a.shape
    xp = xp_of(a)
    return xp.ascontiguousarray(a.reshape(g * per_group, n, -1).transpose(1, 0, 2)).reshape((n, g * per_group) + spatial)


def covers_whole_image(image_size, kernel_size, padding, dilation, groups):
    """True when the only window is the whole unpadded image (DCGAN's first and last
    layers): im2col is then a reshape, and the convolution a plain matrix product."""
    return groups == 1 and tuple(image_size) == tuple(kernel_size) and padding == (0, 0) and dilation == (1, 1)


def columns_outer_sum(a, cols, gemm):
    """a (N, G, A, L) and cols (N, G, B, L) -> (G, A, B): the sum over samples and positions
    of a times cols^T, per group (the weight gradient)."""
    return xp_of(cols).stack([gemm.sum_of_products(a[:, group], cols[:, group].transpose(0, 2, 1))
                              for group in range(cols.shape[1])])


def plus_bias(y, bias):
    """y + bias per channel. In place: y is the convolution's own new array (a kernel
    never returns one of its inputs), so the sum needs no second output-sized array."""
    if bias is None:
        return y
    bias = bias.reshape(1, -1, 1, 1)
    if bias.dtype != y.dtype:
        return y + bias
    y += bias
    return y


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


# --- the convolutions as im2col/col2im and GEMMs ---------------------------------------
#
# The registry ops `conv2d`, `conv_transpose2d` and `conv2d_weight_grad` take arrays and
# the geometry. Here, `ref` (both devices) runs the NumPy/CuPy unfold kernels above and
# NumPy's/CuPy's matmul. `cpp` runs, in float32 on a CPU with AVX-512, one GEMM of
# ganforge's own straight over the images (ops/conv_gathered.py), and otherwise the C++
# unfold kernels with NumPy's matmul (ops/gemm.py); `triton` and `cuda` (implicit GEMMs, kernels/)
# register in ganforge/gpu_kernels.py.

def conv2d_ref(x, w, stride, padding, dilation, groups, unfold="ref", gemm=ReferenceGemm):
    n = x.shape[0]
    o, c_per_group, kh, kw = w.shape
    g = groups
    geometry = ((kh, kw), stride, padding, dilation)
    oh, ow = output_size(x.shape[2:], *geometry)
    if covers_whole_image(x.shape[2:], (kh, kw), padding, dilation, g):
        return gemm.matmul(x.reshape(n, -1), w.reshape(o, -1).T).reshape(n, o, 1, 1)
    if gemm.gathers(x, w, dims=(o // g, c_per_group * kh * kw, n * oh * ow)):
        return conv_gathered.conv2d(x, w, stride, padding, dilation, groups)
    w = w.reshape(g, o // g, c_per_group * kh * kw)
    folded = oh * ow < BATCH_IN_COLUMNS_BELOW
    cols = dispatch.call("im2col", x, *geometry, batch_in_columns=folded, device=device_of(x), impl=unfold)
    if folded:
        y = gemm.matmul(w, cols.reshape(g, c_per_group * kh * kw, n * oh * ow))
        return sample_major(y, n, (oh, ow))
    y = gemm.matmul(w, cols.reshape(n, g, c_per_group * kh * kw, oh * ow))  # (N, G, O/G, L)
    return y.reshape(n, o, oh, ow)


def conv_transpose2d_ref(x, w, out_size, stride, padding, dilation, groups, unfold="ref", gemm=ReferenceGemm):
    n, c, h, wd = x.shape
    _, o_per_group, kh, kw = w.shape
    g = groups
    if covers_whole_image(out_size, (kh, kw), padding, dilation, g) and (h, wd) == (1, 1):
        return gemm.matmul(x.reshape(n, c), w.reshape(c, -1)).reshape(n, o_per_group, kh, kw)
    if gemm.gathers(x, w, dims=(o_per_group * kh * kw, c // g, n * h * wd)):
        return conv_gathered.conv_transpose2d(x, w, out_size, stride, padding, dilation, groups)
    # Each input pixel spreads W's taps over its window: columns = W^T x, then col2im adds them up.
    w_t = w.reshape(g, c // g, o_per_group * kh * kw).transpose(0, 2, 1)
    folded = h * wd < BATCH_IN_COLUMNS_BELOW
    if folded:
        cols = gemm.matmul(w_t, batch_major(x.reshape(n, c, h * wd), g))
        cols = cols.reshape(g * o_per_group * kh * kw, n * h * wd)
    else:
        cols = gemm.matmul(w_t, x.reshape(n, g, c // g, h * wd))  # (N, G, O/G*KH*KW, H*W)
        cols = cols.reshape(n, g * o_per_group * kh * kw, h * wd)
    return dispatch.call("col2im", cols, g * o_per_group, out_size, (kh, kw), stride, padding, dilation,
                         batch_in_columns=folded, device=device_of(x), impl=unfold)


def conv2d_weight_grad_ref(x, gy, weight_shape, stride, padding, dilation, groups, unfold="ref",
                           gemm=ReferenceGemm):
    n = x.shape[0]
    o, c_per_group, kh, kw = weight_shape
    g = groups
    positions = gy.shape[2] * gy.shape[3]
    if covers_whole_image(x.shape[2:], (kh, kw), padding, dilation, g):
        return gemm.matmul(gy.reshape(n, o).T, x.reshape(n, -1)).reshape(weight_shape)
    if gemm.gathers(x, gy, dims=(o // g, n * positions, c_per_group * kh * kw)):
        return conv_gathered.conv2d_weight_grad(x, gy, weight_shape, stride, padding, dilation, groups)
    folded = positions < BATCH_IN_COLUMNS_BELOW
    cols = dispatch.call("im2col", x, (kh, kw), stride, padding, dilation, batch_in_columns=folded,
                         device=device_of(x), impl=unfold)
    if folded:
        cols = cols.reshape(g, c_per_group * kh * kw, n * positions)
        gw = gemm.matmul(batch_major(gy.reshape(n, o, positions), g), cols.transpose(0, 2, 1))
    else:
        gw = columns_outer_sum(gy.reshape(n, g, o // g, -1), cols.reshape(n, g, c_per_group * kh * kw, -1), gemm)
    return gw.reshape(weight_shape)


for _op, _gemm in (("conv2d", conv2d_ref), ("conv_transpose2d", conv_transpose2d_ref),
                  ("conv2d_weight_grad", conv2d_weight_grad_ref)):
    dispatch.register(_op, "ref", _gemm, ("cpu", "cuda"))
    dispatch.register(_op, "cpp", functools.partial(_gemm, unfold="cpp", gemm=NativeGemm), ("cpu",), native.available)


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

    def forward(self, x, w, bias=None):
        out = transposed_output_size(x.shape[2:], w.shape[2:], self.stride, self.padding, self.dilation,
                                     self.output_padding)
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

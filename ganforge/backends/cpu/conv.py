"""The convolutions on the CPU, fast: the `cpp` implementations of the registry ops
`im2col`, `col2im`, `conv2d`, `conv_transpose2d` and `conv2d_weight_grad`.

They compute what the references in ganforge/ops/conv.py compute (im2col, one matrix
product, col2im), by the fastest route measured for each shape (bench/test_conv.py):

| case                                                  | route                                  |
|-------------------------------------------------------|----------------------------------------|
| the window is the whole unpadded image (DCGAN's ends) | one matrix product, no unfolding       |
| stride 1, far fewer output than input channels        | float32: gathered.py, the forward as a |
| (an image-producing last layer, its input gradient)   | transposed conv., gy unfolded for gW;  |
|                                                       | else few_outputs.py (NumPy's BLAS)     |
| float32, AVX-512, a GEMM of 8 or more rows            | gathered.py: straight over the images  |
| fewer than 128 output positions per sample            | C++ unfold, the batch side by side     |
| otherwise                                             | C++ unfold, one GEMM per sample        |

The GEMMs run on ganforge's own AVX-512 kernel for float32, NumPy's BLAS otherwise (gemm.py).
"""
import numpy as np

from ...ops.conv import output_size
from . import few_outputs, gathered, native
from .gemm import NativeGemm


def im2col(x, kernel_size, stride, padding, dilation, batch_in_columns=False):
    """ops/conv.py's im2col_ref in C++ (csrc/im2col.cpp)."""
    return native.module().im2col(np.ascontiguousarray(x), kernel_size, stride, padding, dilation, batch_in_columns)


def col2im(cols, channels, image_size, kernel_size, stride, padding, dilation, batch_in_columns=False):
    """ops/conv.py's col2im_ref in C++."""
    positions = np.prod(output_size(image_size, kernel_size, stride, padding, dilation))
    batch = cols.shape[1] // positions if batch_in_columns else cols.shape[0]
    return native.module().col2im(np.ascontiguousarray(cols), batch, channels, image_size, kernel_size, stride,
                                  padding, dilation, batch_in_columns)


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
    return np.ascontiguousarray(a.reshape(g * per_group, n, -1).transpose(1, 0, 2)).reshape((n, g * per_group) + spatial)


def covers_whole_image(image_size, kernel_size, padding, dilation, groups):
    """True when the only window is the whole unpadded image (DCGAN's first and last
    layers): im2col is then a reshape, and the convolution a plain matrix product."""
    return groups == 1 and tuple(image_size) == tuple(kernel_size) and padding == (0, 0) and dilation == (1, 1)


def columns_outer_sum(a, cols):
    """a (N, G, A, L) and cols (N, G, B, L) -> (G, A, B): the sum over samples and positions
    of a times cols^T, per group (the weight gradient)."""
    return np.stack([NativeGemm.sum_of_products(a[:, group], cols[:, group].transpose(0, 2, 1))
                     for group in range(cols.shape[1])])


def conv2d(x, w, stride, padding, dilation, groups):
    """ops/conv.py's conv2d_ref, by the route the table above picks."""
    n = x.shape[0]
    o, c_per_group, kh, kw = w.shape
    g = groups
    geometry = ((kh, kw), stride, padding, dilation)
    oh, ow = output_size(x.shape[2:], *geometry)
    if covers_whole_image(x.shape[2:], (kh, kw), padding, dilation, g):
        return NativeGemm.matmul(x.reshape(n, -1), w.reshape(o, -1).T).reshape(n, o, 1, 1)
    if few_outputs.applies(o, c_per_group, (kh, kw), stride, dilation, g):
        if NativeGemm.usable(x, w):  # the transposed convolution of the flipped window: O*KH*KW rows, not O
            return gathered.conv_transpose2d(x, few_outputs.as_convolution(w), (oh, ow), (1, 1),
                                             few_outputs.full_padding((kh, kw), padding), (1, 1), 1)
        return few_outputs.conv2d(x, w, padding)
    if NativeGemm.gathers(x, w, dims=(o // g, c_per_group * kh * kw, n * oh * ow)):
        return gathered.conv2d(x, w, stride, padding, dilation, groups)
    w = w.reshape(g, o // g, c_per_group * kh * kw)
    folded = oh * ow < BATCH_IN_COLUMNS_BELOW
    cols = im2col(x, *geometry, batch_in_columns=folded)
    if folded:
        y = NativeGemm.matmul(w, cols.reshape(g, c_per_group * kh * kw, n * oh * ow))
        return sample_major(y, n, (oh, ow))
    y = NativeGemm.matmul(w, cols.reshape(n, g, c_per_group * kh * kw, oh * ow))  # (N, G, O/G, L)
    return y.reshape(n, o, oh, ow)


def conv_transpose2d(x, w, out_size, stride, padding, dilation, groups):
    """ops/conv.py's conv_transpose2d_ref, by the route the table above picks."""
    n, c, h, wd = x.shape
    _, o_per_group, kh, kw = w.shape
    g = groups
    if covers_whole_image(out_size, (kh, kw), padding, dilation, g) and (h, wd) == (1, 1):
        return NativeGemm.matmul(x.reshape(n, c), w.reshape(c, -1)).reshape(n, o_per_group, kh, kw)
    if few_outputs.applies(c, o_per_group, (kh, kw), stride, dilation, g, padding):  # such a conv's input gradient
        return conv2d(x, few_outputs.as_convolution(w), (1, 1), few_outputs.full_padding((kh, kw), padding),
                      (1, 1), 1)
    if NativeGemm.gathers(x, w, dims=(o_per_group * kh * kw, c // g, n * h * wd)):
        return gathered.conv_transpose2d(x, w, out_size, stride, padding, dilation, groups)
    # Each input pixel spreads W's taps over its window: columns = W^T x, then col2im adds them up.
    w_t = w.reshape(g, c // g, o_per_group * kh * kw).transpose(0, 2, 1)
    folded = h * wd < BATCH_IN_COLUMNS_BELOW
    if folded:
        cols = NativeGemm.matmul(w_t, batch_major(x.reshape(n, c, h * wd), g))
        cols = cols.reshape(g * o_per_group * kh * kw, n * h * wd)
    else:
        cols = NativeGemm.matmul(w_t, x.reshape(n, g, c // g, h * wd))  # (N, G, O/G*KH*KW, H*W)
        cols = cols.reshape(n, g * o_per_group * kh * kw, h * wd)
    return col2im(cols, g * o_per_group, out_size, (kh, kw), stride, padding, dilation, batch_in_columns=folded)


def conv2d_weight_grad(x, gy, weight_shape, stride, padding, dilation, groups):
    """ops/conv.py's conv2d_weight_grad_ref, by the route the table above picks."""
    n = x.shape[0]
    o, c_per_group, kh, kw = weight_shape
    g = groups
    positions = gy.shape[2] * gy.shape[3]
    if covers_whole_image(x.shape[2:], (kh, kw), padding, dilation, g):
        return NativeGemm.matmul(gy.reshape(n, o).T, x.reshape(n, -1)).reshape(weight_shape)
    if few_outputs.applies(o, c_per_group, (kh, kw), stride, dilation, g):
        if NativeGemm.usable(x, gy):
            return gathered.few_outputs_weight_grad(x, gy, (kh, kw), padding)
        return few_outputs.conv2d_weight_grad(x, gy, (kh, kw), padding)
    if NativeGemm.gathers(x, gy, dims=(o // g, n * positions, c_per_group * kh * kw)):
        return gathered.conv2d_weight_grad(x, gy, weight_shape, stride, padding, dilation, groups)
    folded = positions < BATCH_IN_COLUMNS_BELOW
    cols = im2col(x, (kh, kw), stride, padding, dilation, batch_in_columns=folded)
    if folded:
        cols = cols.reshape(g, c_per_group * kh * kw, n * positions)
        gw = NativeGemm.matmul(batch_major(gy.reshape(n, o, positions), g), cols.transpose(0, 2, 1))
    else:
        gw = columns_outer_sum(gy.reshape(n, g, o // g, -1), cols.reshape(n, g, c_per_group * kh * kw, -1))
    return gw.reshape(weight_shape)

"""The float32 convolutions on the CPU as one GEMM each, over operands read straight
from the images (an implicit GEMM): no im2col buffer is built and no col2im pass runs.

ganforge's GEMM kernel (csrc/gemm.cpp) reads a "gathered" operand through two small
tables, one entry per row and one per column, each a (base, y, x) triple: element
(i, j) is the pixel (y_i + y_j, x_i + x_j) at data[base_i + base_j], or zero outside the
image (the padding). A convolution's unfolded input is exactly such a matrix: a row is
one kernel tap of one channel, a column one output position of one sample. The output's
elements are placed through offset tables in the same way, which lets a transposed
convolution write each of its output phases (below) into every other pixel.

A transposed convolution's GEMM has the input itself as its right operand, and its
products are added straight into the output pixels they belong to (a col2im fused into
the GEMM's stores), with the same tables.
"""
import numpy as np

from .. import native


def _table(base, y=0, x=0):
    """An (n, 3) int64 table of (base, y, x), broadcasting its three arguments."""
    base, y, x = np.broadcast_arrays(np.asarray(base), np.asarray(y), np.asarray(x))
    return np.stack([base.ravel(), y.ravel(), x.ravel()], axis=1).astype(np.int64)


def _plain(data, row_offsets, col_offsets):
    """A matrix with element (i, j) at data[row_offsets[i] + col_offsets[j]]."""
    return (data, _table(row_offsets), _table(col_offsets), (1, 1))


def _grid(*ranges):
    """Index arrays over the product of ranges, one per range, each broadcast-ready."""
    return np.meshgrid(*[np.arange(r) for r in ranges], indexing="ij")


def _gemm(a, b, out_data, out_rows, out_cols):
    """out_data[out_rows[i] + out_cols[j]] = (a @ b)[i, j]"""
    native.module().gemm_gathered(a, b, (out_data, _table(out_rows), _table(out_cols), (1, 1), 0))


def conv2d(x, w, stride, padding, dilation, groups):
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    n, c, h, wd = x.shape
    o, c_per_group, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    o_per_group = o // groups
    y = np.empty((n, o, oh, ow), dtype=np.float32)
    channel, i, j = _grid(c_per_group, kh, kw)   # the rows of the unfolded input: kernel taps
    sample, p, q = _grid(n, oh, ow)              # its columns: output positions
    positions = _table(sample * c * h * wd, p * sh - ph, q * sw - pw)
    out_cols = sample * o * oh * ow + p * ow + q
    for group in range(groups):
        outputs = group * o_per_group + np.arange(o_per_group)
        weights = _plain(w, outputs * c_per_group * kh * kw, np.arange(c_per_group * kh * kw))
        taps = _table((group * c_per_group + channel) * h * wd, i * dh, j * dw)
        _gemm(weights, (x, taps, positions, (h, wd)), y, outputs * oh * ow, out_cols)
    return y


def conv2d_weight_grad(x, gy, weight_shape, stride, padding, dilation, groups):
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    n, c, h, wd = x.shape
    _, o, oh, ow = gy.shape
    _, c_per_group, kh, kw = weight_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    o_per_group = o // groups
    gw = np.empty(weight_shape, dtype=np.float32)
    channel, i, j = _grid(c_per_group, kh, kw)
    sample, p, q = _grid(n, oh, ow)
    # gW = gy (O, positions) times the unfolded input transposed (positions, taps): the
    # same gather as conv2d's with the roles of rows and columns swapped.
    positions = _table(sample * c * h * wd, p * sh - ph, q * sw - pw)
    gy_cols = sample * o * oh * ow + p * ow + q
    for group in range(groups):
        outputs = group * o_per_group + np.arange(o_per_group)
        taps = _table((group * c_per_group + channel) * h * wd, i * dh, j * dw)
        _gemm(_plain(gy, outputs * oh * ow, gy_cols), (x, positions, taps, (h, wd)), gw,
              outputs * c_per_group * kh * kw, np.arange(c_per_group * kh * kw))
    return gw


def conv_transpose2d(x, w, out_size, stride, padding, dilation, groups):
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    n, c, h, wd = x.shape
    _, o_per_group, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h, out_w = out_size
    o, c_per_group = o_per_group * groups, c // groups
    # The GEMM of W^T (O*KH*KW, C) and x (C, positions) gives every input pixel's
    # contribution through every tap, and each lands straight where col2im would add it:
    # row (o, i, j) and column (s, h, w) add into y[s, o, h*sh - ph + i*dh, w*sw - pw + j*dw],
    # unless that falls outside the output. All KH*KW taps of an output channel stay on one
    # thread (row_group), so no two threads add into the same pixel.
    y = np.zeros((n, o, out_h, out_w), dtype=np.float32)
    out_channel, i, j = _grid(o_per_group, kh, kw)
    sample, p, q = _grid(n, h, wd)
    inputs = np.arange(c_per_group)
    x_cols = _table(sample * c * h * wd + p * wd + q)
    y_cols = _table(sample * o * out_h * out_w, p * sh, q * sw)
    for group in range(groups):
        channel = group * c_per_group + inputs
        weights = _plain(w, out_channel * kh * kw + i * kw + j, channel * o_per_group * kh * kw)
        y_rows = _table((group * o_per_group + out_channel) * out_h * out_w, i * dh - ph, j * dw - pw)
        native.module().gemm_gathered(weights, (x, _table(channel * h * wd), x_cols, (1, 1)),
                                      (y, y_rows, y_cols, (out_h, out_w), kh * kw), accumulate=True)
    return y

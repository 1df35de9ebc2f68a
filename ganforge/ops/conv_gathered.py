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


# Small images, batch innermost. A run of 16 GEMM columns is 16 output positions: on a
# 7x7 map they cross rows, so their pixels are not neighbours, and the kernel must gather
# them one by one (and the transposed convolution scatter its stores). Laid out as
# (C, H, W, N), the same pixel of 16 samples is 16 neighbouring floats: plain vector loads
# and stores. Moving the batch there and back costs two transposes, which pay for
# themselves below this width (measured on dcgan28's 7x7 and 14x14 layers).
BATCH_INNERMOST_BELOW = 16


class _Layout:
    """Where pixel (y, x) of channel c of sample s of an (N, C, H, W) batch lies, in NCHW
    order or batch innermost (C, H, W, N), split into the parts that a gathered operand's
    row table (the channel) and column table (the sample) carry. x is scaled by x_step,
    and the image that the bounds are checked against is height x width."""

    def __init__(self, shape, batch_innermost):
        n, c, h, w = shape
        self.batch_innermost, self.height = batch_innermost, h
        self.x_step = n if batch_innermost else 1
        self.width = w * self.x_step
        self.channel_step = h * w * self.x_step
        self.sample_step = c * h * w

    def positions(self, n, h, w):
        """Index arrays (sample, y, x) over every position of a batch, in the order the
        GEMM's columns take them: sample innermost when the batch is, so that the columns
        of one pixel's samples are neighbours."""
        if self.batch_innermost:
            y, x, sample = _grid(h, w, n)
            return sample, y, x
        return _grid(n, h, w)

    def sample(self, s):
        """(base, x) of sample s: its own image in NCHW, a column offset batch innermost."""
        return (0, s) if self.batch_innermost else (s * self.sample_step, 0)

    def to(self, a):
        """a (N, C, H, W) in this layout, contiguous."""
        if not self.batch_innermost:
            return np.ascontiguousarray(a)
        return native.module().transpose(np.ascontiguousarray(a).reshape(a.shape[0], -1))

    def empty(self, shape, zeros=False):
        n, rest = shape[0], shape[1:]
        make = np.zeros if zeros else np.empty
        return make((*rest, n) if self.batch_innermost else shape, dtype=np.float32)

    def back(self, a, shape):
        """a, in this layout, as a contiguous (N, C, H, W) array."""
        if not self.batch_innermost:
            return a
        return native.module().transpose(a.reshape(-1, shape[0])).reshape(shape)


def _batch_innermost(n, width):
    return n >= 16 and width < BATCH_INNERMOST_BELOW


def conv2d(x, w, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, c_per_group, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    o_per_group = o // groups
    small = _batch_innermost(n, ow)
    image, out = _Layout(x.shape, small), _Layout((n, o, oh, ow), small)
    x, w, y = image.to(x), np.ascontiguousarray(w), out.empty((n, o, oh, ow))
    channel, i, j = _grid(c_per_group, kh, kw)   # the rows of the unfolded input: kernel taps
    sample, p, q = out.positions(n, oh, ow)      # its columns: output positions
    base, x_of_sample = image.sample(sample)
    positions = _table(base, p * sh - ph, (q * sw - pw) * image.x_step + x_of_sample)
    base, x_of_sample = out.sample(sample)
    out_cols = base + (p * ow + q) * out.x_step + x_of_sample
    for group in range(groups):
        outputs = group * o_per_group + np.arange(o_per_group)
        weights = _plain(w, outputs * c_per_group * kh * kw, np.arange(c_per_group * kh * kw))
        taps = _table((group * c_per_group + channel) * image.channel_step, i * dh, j * dw * image.x_step)
        _gemm(weights, (x, taps, positions, (h, image.width)), y, outputs * out.channel_step, out_cols)
    return out.back(y, (n, o, oh, ow))


def conv2d_weight_grad(x, gy, weight_shape, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    _, o, oh, ow = gy.shape
    _, c_per_group, kh, kw = weight_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    o_per_group = o // groups
    small = _batch_innermost(n, ow)
    image, grad = _Layout(x.shape, small), _Layout(gy.shape, small)
    x, gy = image.to(x), grad.to(gy)
    gw = np.empty(weight_shape, dtype=np.float32)
    channel, i, j = _grid(c_per_group, kh, kw)
    sample, p, q = grad.positions(n, oh, ow)
    # gW is gy (O, positions) times the unfolded input transposed (positions, taps): the
    # same gather as conv2d's. The depth of this GEMM runs over the positions, so in NCHW
    # the unfolded input is B, its columns the taps; batch innermost, the depth is where
    # the runs of 16 neighbouring floats are, and gW^T = unfolded input times gy^T has
    # them in A's rows, which the kernel packs with plain loads.
    base, x_of_sample = image.sample(sample)
    positions = _table(base, p * sh - ph, (q * sw - pw) * image.x_step + x_of_sample)
    base, x_of_sample = grad.sample(sample)
    gy_positions = base + (p * ow + q) * grad.x_step + x_of_sample
    tap = np.arange(c_per_group * kh * kw)
    for group in range(groups):
        outputs = group * o_per_group + np.arange(o_per_group)
        taps = _table((group * c_per_group + channel) * image.channel_step, i * dh, j * dw * image.x_step)
        if small:  # gW^T into a (taps, outputs) matrix, whose tiles store as blocks, then transposed
            gw_t = np.empty((tap.size, o_per_group), dtype=np.float32)
            _gemm((x, taps, positions, (h, image.width)), _plain(gy, gy_positions, outputs * grad.channel_step),
                  gw_t, tap * o_per_group, np.arange(o_per_group))
            gw[group * o_per_group:(group + 1) * o_per_group] = native.module().transpose(gw_t).reshape(
                (o_per_group,) + tuple(weight_shape[1:]))
        else:
            _gemm(_plain(gy, outputs * grad.channel_step, gy_positions), (x, positions, taps, (h, image.width)),
                  gw, outputs * c_per_group * kh * kw, tap)
    return gw


def conv_transpose2d(x, w, out_size, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    _, o_per_group, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h, out_w = out_size
    o, c_per_group = o_per_group * groups, c // groups
    small = _batch_innermost(n, wd)
    image, out = _Layout(x.shape, small), _Layout((n, o, out_h, out_w), small)
    x, w = image.to(x), np.ascontiguousarray(w)
    # The GEMM of W^T (O*KH*KW, C) and x (C, positions) gives every input pixel's
    # contribution through every tap, and each lands straight where col2im would add it:
    # row (o, i, j) and column (s, h, w) add into y[s, o, h*sh - ph + i*dh, w*sw - pw + j*dw],
    # unless that falls outside the output. All KH*KW taps of an output channel stay on one
    # thread (row_group), so no two threads add into the same pixel.
    y = out.empty((n, o, out_h, out_w), zeros=True)
    out_channel, i, j = _grid(o_per_group, kh, kw)
    sample, p, q = image.positions(n, h, wd)
    base, x_of_sample = image.sample(sample)
    x_cols = _table(base + (p * wd + q) * image.x_step + x_of_sample)
    base, x_of_sample = out.sample(sample)
    y_cols = _table(base, p * sh, q * sw * out.x_step + x_of_sample)
    for group in range(groups):
        channel = group * c_per_group + np.arange(c_per_group)
        weights = _plain(w, out_channel * kh * kw + i * kw + j, channel * o_per_group * kh * kw)
        y_rows = _table((group * o_per_group + out_channel) * out.channel_step, i * dh - ph,
                        (j * dw - pw) * out.x_step)
        native.module().gemm_gathered(weights, (x, _table(channel * image.channel_step), x_cols, (1, 1)),
                                      (y, y_rows, y_cols, (out_h, out.width), kh * kw), accumulate=True)
    return out.back(y, (n, o, out_h, out_w))

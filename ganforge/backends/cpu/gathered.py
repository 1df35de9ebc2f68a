"""The float32 convolutions on the CPU, with no im2col buffer and no col2im pass: pixel
by pixel where both sides have enough channels (the last section), otherwise as one GEMM
each over operands read straight from the images (an implicit GEMM).

ganforge's GEMM kernel (csrc/gemm.cpp) reads a "gathered" operand through two small
tables, one entry per row and one per column, each a (base, y, x) triple: element
(i, j) is the pixel (y_i + y_j, x_i + x_j) at data[base_i + base_j], or zero outside the
image (the padding). A convolution's unfolded input is exactly such a matrix: a row is
one kernel tap of one channel, a column one output position of one sample. The output's
elements are placed through tables in the same way.

A transposed convolution's GEMM has the input itself as its right operand, and its
products are added straight into the output pixels they belong to (a col2im fused into
the GEMM's stores), with the same tables.

Small images are worked on with the batch innermost (below), and the tables of each
layer shape are built once (the plans at the end).
"""
import functools
from types import SimpleNamespace

import numpy as np

from . import native


def _table(base, y=0, x=0):
    """An (n, 3) int64 table of (base, y, x), broadcasting its three arguments."""
    base, y, x = np.broadcast_arrays(np.asarray(base), np.asarray(y), np.asarray(x))
    return np.stack([base.ravel(), y.ravel(), x.ravel()], axis=1).astype(np.int64)


def _grid(*ranges):
    """Index arrays over the product of ranges, one per range, each broadcast-ready."""
    return np.meshgrid(*[np.arange(r) for r in ranges], indexing="ij")


# Small images, batch innermost. A run of 16 GEMM columns is 16 output positions: on a
# 7x7 map they cross rows, so their pixels are not neighbours, and the kernel must gather
# them one by one (and the transposed convolution scatter its stores). Laid out as
# (C, H, W, N), the same pixel of 16 samples is 16 neighbouring floats: plain vector loads
# and stores. Moving the batch there and back costs two transposes, which pay for
# themselves below this width (measured on dcgan28's 7x7 and 14x14 layers), in a GEMM
# with at least BATCH_INNERMOST_TAPS taps. With fewer (a 1-channel image's 4x4 = 16), the
# GEMM does too little per element moved: dcgan28's last layer's input gradient ran
# 0.30-0.39 ms in NCHW against 0.60 batch innermost, its weight gradient 0.60 against 0.80.
BATCH_INNERMOST_BELOW = 16
BATCH_INNERMOST_TAPS = 32


class _Layout:
    """Where pixel (y, x) of channel c of sample s of an (N, C, H, W) batch lies, in NCHW
    order or batch innermost (C, H, W, N), split into the parts that a gathered operand's
    row table (the channel) and column table (the sample) carry. x is scaled by x_step,
    and the image that the bounds are checked against is height x width."""

    def __init__(self, shape, batch_innermost):
        n, c, h, w = shape
        self.batch_innermost = batch_innermost
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


def _batch_innermost(n, width, taps, below):
    """Whether to work batch innermost; `taps` is the GEMM side that runs over kernel taps
    (C*KH*KW for conv2d and its weight gradient, O*KH*KW for the transposed convolution)."""
    return n >= 16 and width < below and taps >= BATCH_INNERMOST_TAPS


# --- the three convolutions ------------------------------------------------------------
#
# Each is a plan, the index tables of one layer shape built once with NumPy and kept
# (they depend on the shapes and the geometry, never on the data), and a run that lays
# the arrays out and calls the kernel with them.

def _frozen(**tables):
    for table in tables.values():
        if isinstance(table, np.ndarray):
            table.flags.writeable = False
    return SimpleNamespace(**tables)


def _tables(rows, cols, image=(1, 1)):
    """The row and column tables of an operand, and its image's size (1 x 1: a plain matrix)."""
    return (_table(*rows) if isinstance(rows, tuple) else _table(rows),
            _table(*cols) if isinstance(cols, tuple) else _table(cols), image)


@functools.lru_cache(maxsize=256)
def _conv2d_plan(x_shape, w_shape, stride, padding, dilation, groups, batch_innermost_below):
    n, c, h, wd = x_shape
    o, c_per_group, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    o_per_group = o // groups
    small = _batch_innermost(n, ow, c_per_group * kh * kw, batch_innermost_below)
    image, out = _Layout(x_shape, small), _Layout((n, o, oh, ow), small)
    channel, i, j = _grid(c_per_group, kh, kw)   # the rows of the unfolded input: kernel taps
    sample, p, q = out.positions(n, oh, ow)      # its columns: output positions
    base, x_of_sample = image.sample(sample)
    positions = (base, p * sh - ph, (q * sw - pw) * image.x_step + x_of_sample)
    base, x_of_sample = out.sample(sample)
    out_cols = base + (p * ow + q) * out.x_step + x_of_sample
    calls = []
    for group in range(groups):
        outputs = group * o_per_group + np.arange(o_per_group)
        taps = ((group * c_per_group + channel) * image.channel_step, i * dh, j * dw * image.x_step)
        calls.append((_tables(outputs * c_per_group * kh * kw, np.arange(c_per_group * kh * kw)),
                      _tables(taps, positions, (h, image.width)), _tables(outputs * out.channel_step, out_cols)))
    return _frozen(image=image, out=out, out_shape=(n, o, oh, ow), calls=calls)


def conv2d(x, w, stride, padding, dilation, groups):
    plan = _conv2d_plan(x.shape, w.shape, stride, padding, dilation, groups, BATCH_INNERMOST_BELOW)
    if _direct(x.shape[0], w.shape[1], w.shape[0] // groups, False, _larger_map(x.shape, plan.out_shape)):
        return _run_direct(x, w, plan.out_shape, stride, padding, dilation, groups, transposed=False)
    x, w, y = plan.image.to(x), np.ascontiguousarray(w), plan.out.empty(plan.out_shape)
    for weights, taps, out in plan.calls:
        native.module().gemm_gathered((w, *weights), (x, *taps), (y, *out, 0))
    return plan.out.back(y, plan.out_shape)


@functools.lru_cache(maxsize=256)
def _weight_grad_plan(x_shape, gy_shape, weight_shape, stride, padding, dilation, groups, batch_innermost_below):
    n, c, h, wd = x_shape
    _, o, oh, ow = gy_shape
    _, c_per_group, kh, kw = weight_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    o_per_group = o // groups
    small = _batch_innermost(n, ow, c_per_group * kh * kw, batch_innermost_below)
    image, grad = _Layout(x_shape, small), _Layout(gy_shape, small)
    channel, i, j = _grid(c_per_group, kh, kw)
    sample, p, q = grad.positions(n, oh, ow)
    # gW is gy (O, positions) times the unfolded input transposed (positions, taps): the
    # same gather as conv2d's. The depth of this GEMM runs over the positions, so in NCHW
    # the unfolded input is B, its columns the taps; batch innermost, the depth is where
    # the runs of 16 neighbouring floats are, and gW^T = unfolded input times gy^T has
    # them in A's rows, which the kernel packs with plain loads. gW^T goes to a
    # (taps, outputs) matrix, whose tiles store as blocks, and is transposed after.
    base, x_of_sample = image.sample(sample)
    positions = (base, p * sh - ph, (q * sw - pw) * image.x_step + x_of_sample)
    base, x_of_sample = grad.sample(sample)
    gy_positions = base + (p * ow + q) * grad.x_step + x_of_sample
    tap = np.arange(c_per_group * kh * kw)
    calls = []
    for group in range(groups):
        outputs = group * o_per_group + np.arange(o_per_group)
        taps = ((group * c_per_group + channel) * image.channel_step, i * dh, j * dw * image.x_step)
        if small:
            calls.append((_tables(taps, positions, (h, image.width)),
                          _tables(gy_positions, outputs * grad.channel_step),
                          _tables(tap * o_per_group, np.arange(o_per_group))))
        else:
            calls.append((_tables(outputs * grad.channel_step, gy_positions), _tables(positions, taps, (h, image.width)),
                          _tables(outputs * c_per_group * kh * kw, tap)))
    return _frozen(image=image, grad=grad, transposed=small, o_per_group=o_per_group, calls=calls)


def conv2d_weight_grad(x, gy, weight_shape, stride, padding, dilation, groups):
    if groups == 1 and _direct_weight_grad(x.shape[0], weight_shape[1], weight_shape[0]):
        return _run_direct_weight_grad(x, gy, tuple(weight_shape), stride, padding, dilation)
    plan = _weight_grad_plan(x.shape, gy.shape, tuple(weight_shape), stride, padding, dilation, groups,
                             BATCH_INNERMOST_BELOW)
    x, gy = plan.image.to(x), plan.grad.to(gy)
    gw = np.empty(weight_shape, dtype=np.float32)
    per_group = plan.o_per_group
    for group, (a, b, out) in enumerate(plan.calls):
        if plan.transposed:
            gw_t = np.empty((gw[0].size, per_group), dtype=np.float32)
            native.module().gemm_gathered((x, *a), (gy, *b), (gw_t, *out, 0))
            gw[group * per_group:(group + 1) * per_group] = native.module().transpose(gw_t).reshape(
                (per_group,) + gw.shape[1:])
        else:
            native.module().gemm_gathered((gy, *a), (x, *b), (gw, *out, 0))
    return gw


# A convolution to far fewer channels than it reads (an image generator's last layer,
# 64 -> RGB through SRGAN's 9x9 window) would unfold its input for a weight gradient of
# O = 3 rows, the GEMM's depth running over C*KH*KW = 5184 taps, 3 of each 8-row register
# tile busy. Here the gradient, with its few channels, is the operand that is unfolded:
# gW^T (C, O*KH*KW) = x (C, positions) times gy unfolded (positions, O*KH*KW), where
# column (o, i, j) of input pixel (y, x) is gy[o, y + ph - i, x + pw - j], zero outside
# gy (stride 1). 29 against 95 ms for SRGAN's layer at 96 px, batch 16, where
# few_outputs.py (NumPy's route for it) copies gy shifted by every tap.
@functools.lru_cache(maxsize=256)
def _few_outputs_weight_grad_plan(x_shape, gy_shape, kernel_size, padding):
    n, c, h, wd = x_shape
    _, o, oh, ow = gy_shape
    (kh, kw), (ph, pw) = kernel_size, padding
    sample, y, x = _grid(n, h, wd)
    out_channel, i, j = _grid(o, kh, kw)
    return _frozen(x=_tables(np.arange(c) * h * wd, (sample * c * h * wd, y, x), (h, wd)),
                   gy=_tables((sample * o * oh * ow, y, x), (out_channel * oh * ow, ph - i, pw - j), (oh, ow)),
                   gw_t=_tables(np.arange(c) * o * kh * kw, np.arange(o * kh * kw)))


def few_outputs_weight_grad(x, gy, kernel_size, padding):
    """conv2d_weight_grad of a stride-1 convolution with few output channels (above)."""
    plan = _few_outputs_weight_grad_plan(x.shape, gy.shape, tuple(kernel_size), tuple(padding))
    c, o = x.shape[1], gy.shape[1]
    gw_t = np.empty((c, o * kernel_size[0] * kernel_size[1]), dtype=np.float32)
    native.module().gemm_gathered((np.ascontiguousarray(x), *plan.x), (np.ascontiguousarray(gy), *plan.gy),
                                  (gw_t, *plan.gw_t, 0))
    return np.ascontiguousarray(gw_t.reshape(c, o, *kernel_size).transpose(1, 0, 2, 3))


@functools.lru_cache(maxsize=256)
def _transposed_plan(x_shape, w_shape, out_size, stride, padding, dilation, groups, batch_innermost_below):
    n, c, h, wd = x_shape
    _, o_per_group, kh, kw = w_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h, out_w = out_size
    o, c_per_group = o_per_group * groups, c // groups
    small = _batch_innermost(n, wd, o_per_group * kh * kw, batch_innermost_below)
    image, out = _Layout(x_shape, small), _Layout((n, o, out_h, out_w), small)
    # The GEMM of W^T (O*KH*KW, C) and x (C, positions) gives every input pixel's
    # contribution through every tap, and each lands straight where col2im would add it:
    # row (o, i, j) and column (s, h, w) add into y[s, o, h*sh - ph + i*dh, w*sw - pw + j*dw],
    # unless that falls outside the output. All KH*KW taps of an output channel stay on one
    # thread (row_group), and in NCHW all positions of a sample (col_group: batch innermost,
    # a sample's columns are not together), so no two threads add into the same pixel.
    out_channel, i, j = _grid(o_per_group, kh, kw)
    sample, p, q = image.positions(n, h, wd)
    base, x_of_sample = image.sample(sample)
    x_cols = base + (p * wd + q) * image.x_step + x_of_sample
    base, x_of_sample = out.sample(sample)
    y_cols = (base, p * sh, q * sw * out.x_step + x_of_sample)
    calls = []
    for group in range(groups):
        channel = group * c_per_group + np.arange(c_per_group)
        y_rows = ((group * o_per_group + out_channel) * out.channel_step, i * dh - ph, (j * dw - pw) * out.x_step)
        calls.append((_tables(out_channel * kh * kw + i * kw + j, channel * o_per_group * kh * kw),
                      _tables(channel * image.channel_step, x_cols),
                      _tables(y_rows, y_cols, (out_h, out.width))))
    return _frozen(image=image, out=out, out_shape=(n, o, out_h, out_w),
                   output_groups=(kh * kw, 0 if small else h * wd), calls=calls)  # (row_group, col_group)


def conv_transpose2d(x, w, out_size, stride, padding, dilation, groups):
    plan = _transposed_plan(x.shape, w.shape, tuple(out_size), stride, padding, dilation, groups,
                            BATCH_INNERMOST_BELOW)
    if _direct(x.shape[0], x.shape[1] // groups, w.shape[1], True, _larger_map(x.shape, plan.out_shape)):
        return _run_direct(x, w, plan.out_shape, stride, padding, dilation, groups, transposed=True)
    x, w = plan.image.to(x), np.ascontiguousarray(w)
    y = plan.out.empty(plan.out_shape, zeros=True)  # the products are added into it
    for weights, inputs, out in plan.calls:
        native.module().gemm_gathered((w, *weights), (x, *inputs), (y, *out, *plan.output_groups), accumulate=True)
    return plan.out.back(y, plan.out_shape)


# --- pixel by pixel, batch innermost ---------------------------------------------------
#
# A convolution and a transposed convolution can also run without a GEMM
# (csrc/conv_direct.cpp), with the batch moved innermost as (H*W, C, N): for each output
# pixel, the kernel sums the taps that reach it over the input channels, reading the 32
# samples of a pixel's channel with two vector loads where they lie. Nothing is packed
# but the weights, no tap that falls on padding is multiplied, and a transposed
# convolution's taps sum in registers instead of being added into the output one GEMM
# tile at a time.
#
# Measured against the gathered GEMM on the 2-core AVX-512 machine (forward and input
# gradient of every dcgan28 and dcgan64 layer, docs/benchmarks.md): 1.1-1.9x faster with
# 8 or more input and output channels per group, on 4x4 to 32x32 maps alike. With fewer
# output channels than the register tile's 8 most of it would be wasted; a convolution
# of fewer than 8 input channels (a 1- or 3-channel image) has too short a sum per tap
# (1 channel: 0.52 against 0.31 ms), while a transposed one still wins (2.7x with 1).
#
# The batch must fill the kernel's 32-sample tiles well: the last tile's idle lanes cost
# as much as busy ones (dcgan28 G2's forward: 4.2 ms with a batch of 8, against the GEMM's
# 1.7; 6.7 with 1, against 0.5), so at most a quarter of its lanes may be idle; with a
# batch of 24 or 48 the two ran even, with 64 the kernel 1.4x faster.
#
# A batch of 16 or fewer gets tiles of 16 output channels x 16 samples (SRGAN's batch of
# 16, which would leave half of each 32-sample tile idle), on maps of up to 16 x 16
# pixels. At batch 16 against the gathered GEMM (SRGAN's layers, in turns): at 7 px the
# tiles ran 1.4x faster, at 14 px even, and at 24 and 48 px the GEMM took 0.57-0.92 of
# their time forward and 0.79-1.05 transposed; SRGAN's 96 px step 0.90-0.97 with the
# tiles up to 16 x 16 against up to 48 x 48 (docs/benchmarks.md has the history).
# Transposed, they go on up to 24 x 24: the GEMM's scattered adds into the output cost more
# there, and SRGAN's 33 residual input gradients at 24 px ran 0.90 of their time alone;
# the 96 px step 0.992 and 1/1.026 in turns (both orders), Fashion-MNIST's 0.988.
DIRECT_FROM_CHANNELS = 8
DIRECT_TILE = 32  # the kernels' register tile: 32 samples (the weight gradient's: 32 outputs)
NARROW_TILE = 16  # the convolution's tile for a batch of 16 or fewer (csrc/conv_direct.cpp)
NARROW_UP_TO_PIXELS = 16 * 16
NARROW_TRANSPOSED_UP_TO_PIXELS = 24 * 24
DIRECT = True  # False: the gathered GEMM only (for benchmarks)


def _fills_tiles(count, tile=DIRECT_TILE):
    """Whether `count` columns fill tiles of `tile` with at most a quarter of the last
    tile's lanes idle: of 32, 24, 48, 64 or 100 do, 16 or 40 do not; of 16, 12 to 16 do."""
    padded = -(-count // tile) * tile
    return count > 0 and 4 * (padded - count) <= padded


def _larger_map(in_shape, out_shape):
    """Pixels in the larger of an (N, C, H, W) input's and output's maps."""
    return max(in_shape[2] * in_shape[3], out_shape[2] * out_shape[3])


def _direct(batch, in_per_group, out_per_group, transposed, pixels):
    """Whether a convolution runs pixel by pixel; `pixels` is the larger of its input's and
    output's maps."""
    if batch <= NARROW_TILE:
        up_to = NARROW_TRANSPOSED_UP_TO_PIXELS if transposed else NARROW_UP_TO_PIXELS
        fills = _fills_tiles(batch, NARROW_TILE) and pixels <= up_to
    else:
        fills = _fills_tiles(batch)
    return (DIRECT and fills and out_per_group >= DIRECT_FROM_CHANNELS
            and (transposed or in_per_group >= DIRECT_FROM_CHANNELS))


# The weight gradient pixel by pixel (without groups) sums over the batch with 32 output
# channels in a register tile, 8 input channels broadcast against them: 1.0-1.3x faster
# than the gathered GEMM at the dcgan layers with 32 or more outputs and 8 or more inputs.
# Its outputs must fill the tiles as the batch does above, and its sum per pair runs over
# the batch, which must not be too short: with 8 samples dcgan28 G2's weight gradient
# took 2.1 ms against the GEMM's 1.3. With 16 the two ran even there, but on SRGAN's
# layers at batch 16 (an Intel Xeon with AMX, 2026-12-07) the GEMM took 0.44-0.79 of the
# time, and SRGAN's step at 96 px 0.93 (median of four in-turns runs; Fashion-MNIST's
# 0.99), so a batch of 16 goes to the GEMM.
DIRECT_WEIGHT_GRAD_FROM_BATCH = 32
DIRECT_WEIGHT_GRAD_SAMPLES_PER_RUN = 512  # a run of output pixels: about this many of them times the batch


def _direct_weight_grad(batch, in_channels, out_channels):
    return (DIRECT and batch >= DIRECT_WEIGHT_GRAD_FROM_BATCH and in_channels >= DIRECT_FROM_CHANNELS
            and _fills_tiles(out_channels))


@functools.lru_cache(maxsize=256)
def _pairs(in_size, kernel_size, out_size, stride, padding, dilation, transposed):
    """conv_direct's int32 tables (pair_start, in_pixel, tap): for each output pixel, the
    input pixels and kernel taps that reach it."""
    (h, w), (kh, kw), (oh, ow) = in_size, kernel_size, out_size
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    p, q, i, j = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw), indexing="ij")
    if transposed:  # input pixel (y, x) sends tap (i, j) to (y*sh - ph + i*dh, x*sw - pw + j*dw)
        y_steps, x_steps = p + ph - i * dh, q + pw - j * dw
        reaches = (y_steps % sh == 0) & (x_steps % sw == 0)
        y, x = y_steps // sh, x_steps // sw
    else:
        y, x = p * sh - ph + i * dh, q * sw - pw + j * dw
        reaches = np.ones(y.shape, dtype=bool)
    reaches = (reaches & (y >= 0) & (y < h) & (x >= 0) & (x < w)).reshape(oh * ow, kh * kw)
    pairs = _frozen(pair_start=np.concatenate([[0], np.cumsum(reaches.sum(axis=1))]).astype(np.int32),
                    in_pixel=(y * w + x).reshape(oh * ow, kh * kw)[reaches].astype(np.int32),
                    tap=(i * kw + j).reshape(oh * ow, kh * kw)[reaches].astype(np.int32))
    return pairs.pair_start, pairs.in_pixel, pairs.tap


def _run_direct(x, w, out_shape, stride, padding, dilation, groups, transposed):
    n, c, h, wd = x.shape
    out_channels, out_h, out_w = out_shape[1:]
    pairs = _pairs((h, wd), w.shape[2:], (out_h, out_w), stride, padding, dilation, transposed)
    transpose = native.module().transpose  # (N, C, H*W) <-> (H*W, C, N)
    y = np.empty((out_h * out_w, out_channels, n), dtype=np.float32)
    native.module().conv_direct(transpose(np.ascontiguousarray(x).reshape(n, c, h * wd)), np.ascontiguousarray(w),
                                transposed, groups, pairs, y)
    return transpose(y).reshape(out_shape)


@functools.lru_cache(maxsize=256)
def _pairs_by_tap(in_size, kernel_size, out_size, stride, padding, dilation, pixels_per_run):
    """conv_direct_weight_grad's int32 tables (run_start, out_pixel, in_pixel): the pairs
    of _pairs grouped by tap, each tap's in runs over the same pixels_per_run output pixels."""
    pair_start, in_pixel, tap = _pairs(in_size, kernel_size, out_size, stride, padding, dilation, False)
    out_pixel = np.repeat(np.arange(len(pair_start) - 1), np.diff(pair_start))
    order = np.lexsort((out_pixel, tap))  # by tap, then by output pixel
    taps, runs = kernel_size[0] * kernel_size[1], -(-(len(pair_start) - 1) // pixels_per_run)
    # where run j of tap t starts: the first of the tap's pairs at an output pixel >= j * pixels_per_run
    keys = tap[order].astype(np.int64) * runs + out_pixel[order] // pixels_per_run
    run_start = np.searchsorted(keys, np.arange(taps * runs + 1))
    pairs = _frozen(run_start=run_start.astype(np.int32), out_pixel=out_pixel[order].astype(np.int32),
                    in_pixel=in_pixel[order])
    return pairs.run_start, pairs.out_pixel, pairs.in_pixel


def _run_direct_weight_grad(x, gy, weight_shape, stride, padding, dilation):
    n, c, h, wd = x.shape
    _, o, oh, ow = gy.shape
    pixels_per_run = max(1, DIRECT_WEIGHT_GRAD_SAMPLES_PER_RUN // n)
    pairs = _pairs_by_tap((h, wd), weight_shape[2:], (oh, ow), stride, padding, dilation, pixels_per_run)
    transpose = native.module().transpose
    x = transpose(np.ascontiguousarray(x).reshape(n, c, h * wd))                     # (H*W, C, N)
    gy = transpose(np.ascontiguousarray(gy).reshape(n * o, oh * ow)).reshape(oh * ow, n, o)
    g = np.empty((weight_shape[2] * weight_shape[3], c, o), dtype=np.float32)       # (taps, C, O)
    native.module().conv_direct_weight_grad(x, gy, pairs, g)
    return transpose(g).reshape(weight_shape)

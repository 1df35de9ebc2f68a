"""The `cpp` implementations of the registry ops: thin wrappers that hand NumPy arrays to
the compiled module (csrc/, built as ganforge._C) and fall back to the op's `ref` for
what the C++ does not take (another dtype, mixed dtypes, a 0-d array).

Each computes what its `ref` in ganforge/ops/ (or optim.py) computes; the tests hold the
two together (tests/test_kernels.py).
"""
import math

import numpy as np

from ... import dispatch
from ...ops.activation import leaky_relu_backward_ref, leaky_relu_ref, prelu_backward_ref, prelu_ref
from ...ops.norm import batch_norm_backward_ref, batch_norm_ref
from ...ops.penalty import penalty_of
from ...ops.reduce import sum_leading_ref, sum_trailing_ref
from ...ops.resample import resample_ref
from ...ops.shape import pad_reflect_backward_ref, pad_reflect_ref, pixel_shuffle_ref, pixel_unshuffle_ref
from ...ops.spectral import spectral_norm_with
from ...optim import adam_step_ref
from . import conv, native
from .gemm import NativeGemm

FLOATS = (np.float32, np.float64)


def c_ordered(a):
    """`a` in C order, copied only if it is not (np.ascontiguousarray would also turn a 0-d
    array, a scalar parameter's gradient, into shape (1,))."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def leaky_relu(x, slope, gain=1.0):
    if x.ndim == 0 or x.dtype not in FLOATS:
        return leaky_relu_ref(x, slope, gain)
    return native.module().leaky_relu(c_ordered(x), slope, gain=gain)


def leaky_relu_backward(x, gy, slope, gain=1.0):
    if x.ndim == 0 or x.dtype not in FLOATS or gy.dtype != x.dtype:
        return leaky_relu_backward_ref(x, gy, slope, gain)
    return native.module().leaky_relu(c_ordered(x), slope, c_ordered(gy), gain)


def prelu(x, weight):
    if x.ndim == 0 or x.dtype not in FLOATS or weight.dtype != x.dtype:
        return prelu_ref(x, weight)
    return native.module().prelu(c_ordered(x), c_ordered(weight))


def prelu_backward(x, gy, weight):
    if x.ndim == 0 or x.dtype not in FLOATS or weight.dtype != x.dtype or gy.dtype != x.dtype:
        return prelu_backward_ref(x, gy, weight)
    return native.module().prelu(c_ordered(x), c_ordered(weight), c_ordered(gy))


def matmul(a, b):
    """a @ b. 2-D float32 products run on ganforge's GEMM (which hands NumPy what it does
    not take: other dtypes, matrix-vector shapes); batched or broadcast operands go to
    NumPy's BLAS.

    Why not NumPy's BLAS for 2-D products as well: its threads keep spinning after each
    product, against ganforge's own GEMM threads in the convolutions that follow. SRGAN's
    dense layer at batch 16 took its Fashion step from 337 to 484 ms that way, and
    text2image's 64 x 64 x 6272 products its step from 162 to 277 ms (in turns, 9 rounds,
    every one 0.52-0.62). Even in a step with no convolution ganforge's GEMM does not lose:
    the `gan` MLPs at a batch of 64 ran 0.85-0.98 of OpenBLAS's time (separate processes
    in turns, 5 rounds), at 256 0.87-0.98, bit for bit the same results there. And NumPy
    does not hand an outer product (depth 1, in every MLP's last-layer input gradient) to
    its BLAS: its own loop took 82 us for a 256 x 256 one against 12.5 here."""
    if a.ndim == b.ndim == 2:
        return NativeGemm.matmul(a, b)
    return np.matmul(a, b)


def linear(x, weight, bias=None, slope=None):
    """x @ weight.T + bias, then leaky ReLU unless slope is None. Where the product runs on
    ganforge's GEMM, its threads add the bias and apply the activation to their parts of
    the output as they finish them (csrc/gemm.h's epilogue), bit for bit what the separate
    passes below compute. Those passes read the output back from both cores' caches: in
    the `gan` MLP step at batch 256, the bias add alone took 12 us a layer (3% of the step)
    and the activation and its backward 12% (each measured by leaving it out)."""
    if x.ndim == 2 and NativeGemm.usable(x, weight) and not NativeGemm._thin(x, weight.T) and \
            (bias is None or (bias.dtype == np.float32 and bias.ndim == 1)):
        out = np.empty((1, x.shape[0], weight.shape[0]), dtype=np.float32)
        native.module().gemm(x[None], weight.T[None], out, bias=bias, slope=slope)
        return out[0]
    y = matmul(x, weight.T)
    if bias is not None:
        if bias.dtype == y.dtype:
            y += bias  # into the product's own fresh array
        else:
            y = y + bias  # (mixed precision promotes, as NumPy does)
    return y if slope is None else leaky_relu(y, slope)


# Under this many elements NumPy's own loop on the calling thread is as fast as waking a
# second one. StyleGAN2's (32, 64, 32, 32) * (32, 64, 1, 1) took NumPy 1133 us against
# PyTorch's 384 on 2 threads: NumPy broadcasts element by element, on one core.
BINARY_FROM = 1 << 16
# Rows shorter than this cost a division each in the kernel, and NumPy's loop is fast
# there. (A bias over the last axis of a (256, 256) matrix, one value per row of 1, goes as
# one shared row of 256 instead: 16 us against NumPy's 29.)
PER_ROW_FROM = 16


def _row_length(shape, small_shape):
    """If an array of small_shape broadcasts over one of `shape` as one value per row of
    it viewed as (rows, length), row r taking the small one's value r % its size: that
    length, else None. Against (N, C, H, W), (N, C, 1, 1), (1, C, 1, 1) and (C, 1, 1) give
    H*W and a scalar N*C*H*W; (N, 1, H, W) does not broadcast that way."""
    small_shape = (1,) * (len(shape) - len(small_shape)) + tuple(small_shape)
    kept = [axis for axis, size in enumerate(small_shape) if size != 1]
    if not kept:
        return math.prod(shape)
    first, last = kept[0], kept[-1]
    if small_shape[first:last + 1] != tuple(shape[first:last + 1]):
        return None
    return math.prod(shape[last + 1:])


def _shared_rows(shape, small_shape):
    """If an array of small_shape broadcasts over one of `shape` along one run of axes
    with some axes after it kept, as StyleGAN2's (N, 1, H, W) noise over (N, C, H, W):
    the length of the rows (the kept trailing axes) that each row of the small array
    shares with its neighbours. Else None."""
    small_shape = (1,) * (len(shape) - len(small_shape)) + tuple(small_shape)
    spread = [axis for axis, (big, small) in enumerate(zip(shape, small_shape)) if small != big]
    if not spread or spread != list(range(spread[0], spread[-1] + 1)) or spread[-1] == len(shape) - 1:
        return None
    return math.prod(shape[spread[-1] + 1:])


def _binary(a, b, multiply, out=None):
    """a * b or a + b for large float32 arrays that broadcast as _row_length or _shared_rows
    says, else None. Both are commutative bit for bit, so the larger operand goes first.
    Into `out`, if given: an array of the result's shape, a itself for an in-place sum."""
    big, small = (a, b) if a.size >= b.size else (b, a)
    if out is not None and not (isinstance(out, np.ndarray) and out.shape == big.shape and out.dtype == np.float32
                                and out.flags.c_contiguous and out.flags.writeable and small is not out):
        return None
    if not (isinstance(big, np.ndarray) and big.dtype == np.float32 and getattr(small, "dtype", None) == np.float32
            and big.size >= BINARY_FROM and big.flags.c_contiguous):
        return None
    if big.shape == small.shape:
        length, per_row = 1, False
    else:
        if np.broadcast_shapes(big.shape, small.shape) != big.shape:
            return None
        length, per_row = _row_length(big.shape, small.shape), True
        if length is None or length < PER_ROW_FROM:  # perhaps a row of values, not one value, per row
            length, per_row = _shared_rows(big.shape, small.shape), False
        if length is None or length < PER_ROW_FROM:  # short rows: NumPy's loop over the last axis is faster
            return None
    small = np.ascontiguousarray(small)
    return native.module().binary_rows(big, small.reshape(-1), multiply, length, per_row, out)


def add(a, b, out=None):
    result = _binary(a, b, multiply=False, out=out)
    if result is not None:
        return result
    return a + b if out is None else np.add(a, b, out=out)


def mul(a, b):
    out = _binary(a, b, multiply=True)
    return a * b if out is None else out


def _image_padding(x, pad_width):
    """(top, bottom, left, right) when pad_width pads only the last two axes of a float x;
    else None (the ref takes the rest)."""
    if x.ndim < 2 or x.dtype not in FLOATS or any(before or after for before, after in pad_width[:-2]):
        return None
    (top, bottom), (left, right) = pad_width[-2:]
    return int(top), int(bottom), int(left), int(right)


def pad_reflect(x, pad_width):
    pad = _image_padding(x, pad_width)
    if pad is None or max(pad[:2]) >= x.shape[-2] or max(pad[2:]) >= x.shape[-1]:
        return pad_reflect_ref(x, pad_width)
    return native.module().reflect_pad(c_ordered(x), pad)


def pad_reflect_backward(gy, pad_width):
    pad = _image_padding(gy, pad_width)
    if pad is None:
        return pad_reflect_backward_ref(gy, pad_width)
    return native.module().reflect_pad(c_ordered(gy), pad, backward=True)


# PixelShuffle's copies on both cores: NumPy's strided copies of each tap (the ref) ran on
# one, SRGAN's (16, 256, 48, 48) at 31 ms a call inside its step.
def pixel_shuffle(x, r):
    if x.ndim != 4 or x.dtype not in FLOATS:
        return pixel_shuffle_ref(x, r)
    return native.module().shuffle_taps(c_ordered(x), r)


def pixel_unshuffle(y, r):
    if y.ndim != 4 or y.dtype not in FLOATS:
        return pixel_unshuffle_ref(y, r)
    return native.module().shuffle_taps(c_ordered(y), r, to_taps=True)


def resample(x, rows, cols):
    """rows @ x @ cols.T over x's last two axes, the matrices' zeros skipped: float32
    outputs up to 64 wide on AVX-512 (StyleGAN2's upsampling and pooling: 2.5-6x NumPy's
    dense products per plane). The rest go to `ref`: a plain C++ pass was slower than
    NumPy's products for float64 and for outputs over 64 wide (bicubic resizing of photos)."""
    if x.ndim < 2 or x.dtype != np.float32 or not _same_dtype(x, rows, cols) \
            or not native.module().resample_supported(cols.shape[0]):
        return resample_ref(x, rows, cols)
    return native.module().resample(c_ordered(x), c_ordered(rows), c_ordered(cols))


def sum_leading(x):
    """x summed over its first axis; compiled for a large C-contiguous float array (both
    cores, NumPy's result bit for bit)."""
    if x.dtype not in FLOATS or x.ndim < 2 or x.shape[0] < 2 or x.size < BINARY_FROM or not x.flags.c_contiguous:
        return sum_leading_ref(x)
    return native.module().sum_leading(x)


def sum_trailing(x, count):
    """x summed over its last `count` axes, row by row in NumPy's pairwise order (its
    result bit for bit), on both cores: large C-contiguous float32 arrays on AVX-512."""
    length = math.prod(x.shape[x.ndim - count:])
    if x.dtype != np.float32 or x.size < BINARY_FROM or length == 0 or not x.flags.c_contiguous \
            or not native.module().sum_rows_supported():
        return sum_trailing_ref(x, count)
    return native.module().sum_rows(x.reshape(-1, length)).reshape(x.shape[:x.ndim - count])


def _same_dtype(x, *others):
    return all(a is None or a.dtype == x.dtype for a in others)


def batch_norm(x, weight, bias, eps):
    if not _same_dtype(x, weight, bias):  # mixed precision promotes, as NumPy does
        return batch_norm_ref(x, weight, bias, eps)
    contiguous = [None if a is None else c_ordered(a) for a in (x, weight, bias)]
    return native.module().batch_norm_forward(*contiguous, eps)


def batch_norm_backward(x, gy, weight, mean, inv_std):
    if not _same_dtype(x, gy, weight, mean, inv_std):
        return batch_norm_backward_ref(x, gy, weight, mean, inv_std)
    contiguous = [None if a is None else c_ordered(a) for a in (x, gy, weight, mean, inv_std)]
    return native.module().batch_norm_backward(*contiguous)


def gradient_penalty(grad, target, one_sided):
    # C++ sums each row in double (csrc/gan_kernels.cpp); the rest is N numbers.
    return penalty_of(native.module().per_sample_norms(c_ordered(grad)), target, one_sided, grad.dtype)


def power_iteration(weight_matrix, u, n_iterations, eps):
    return native.module().power_iteration(c_ordered(weight_matrix), c_ordered(u),
                                           n_iterations, eps)


def adam_scalars(lr, beta1, beta2, eps, step):
    """The step's numbers as the C++ pass takes them: (beta1, 1 - beta1, beta2, 1 - beta2,
    sqrt(1 - beta2^step), eps, lr / (1 - beta1^step)), so that per element it computes
    param -= step_size * m / (sqrt(v) / sqrt(1 - beta2^step) + eps), the paper's update."""
    return (beta1, 1 - beta1, beta2, 1 - beta2, math.sqrt(1 - beta2 ** step), eps, lr / (1 - beta1 ** step))


def adam_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step):
    # The kernel updates param and the moments in place, so those must be C-contiguous; the
    # gradient (a transposed view, for a weight used as x @ w.T) is only read, so a copy will do.
    if param.dtype not in FLOATS or any(a.dtype != param.dtype or a.shape != param.shape
                                        for a in (grad, exp_avg, exp_avg_sq)) or \
            not all(a.flags.c_contiguous for a in (param, exp_avg, exp_avg_sq)):
        return adam_step_ref(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step)
    native.module().adam_step(param, c_ordered(grad), exp_avg, exp_avg_sq,
                              adam_scalars(lr, beta1, beta2, eps, step))


CPP_KERNELS = {
    "im2col": conv.im2col,
    "col2im": conv.col2im,
    "conv2d": conv.conv2d,
    "conv_transpose2d": conv.conv_transpose2d,
    "conv2d_weight_grad": conv.conv2d_weight_grad,
    "leaky_relu": leaky_relu,
    "leaky_relu_backward": leaky_relu_backward,
    "prelu": prelu,
    "prelu_backward": prelu_backward,
    "matmul": matmul,
    "linear": linear,
    "add": add,
    "mul": mul,
    "sum_leading": sum_leading,
    "sum_trailing": sum_trailing,
    "resample": resample,
    "pad_reflect": pad_reflect,
    "pad_reflect_backward": pad_reflect_backward,
    "pixel_shuffle": pixel_shuffle,
    "pixel_unshuffle": pixel_unshuffle,
    "batch_norm": batch_norm,
    "batch_norm_backward": batch_norm_backward,
    "gradient_penalty": gradient_penalty,
    "spectral_norm": spectral_norm_with(power_iteration),
    "adam_step": adam_step,
}

for _op, _kernel in CPP_KERNELS.items():
    dispatch.register(_op, "cpp", _kernel, ("cpu",), native.available)

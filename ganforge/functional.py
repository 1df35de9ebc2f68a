"""The ops, as functions: `import ganforge.functional as F`.

Primitives call a Function from ganforge.ops; composites (var, logsumexp, the
losses, ...) are written with primitives and get their gradients for free.
Python numbers are accepted wherever a tensor is, and take the tensor's dtype.
"""
import builtins
import functools

import numpy as np

from . import backend
from .autograd import no_grad
from .pytorch_names import accept_pytorch_names_in
from .tensor import Tensor, default_generator

__all__ = [
    # arithmetic
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "clamp", "maximum", "minimum",
    "where",
    # reductions
    "sum", "mean", "var", "std", "amax", "amin", "max", "min", "logsumexp", "norm",
    # shapes
    "reshape", "transpose", "permute", "swapaxes", "getitem", "concat", "stack", "split", "chunk", "pad",
    "broadcast_to", "sum_to", "flatten", "squeeze", "unsqueeze", "flip",
    # linear algebra, sliding windows and convolutions
    "matmul", "unfold", "fold", "conv2d", "conv_transpose2d", "conv2d_weight_grad",
    # layers
    "linear", "linear_leaky_relu", "embedding", "batch_norm", "instance_norm", "layer_norm", "group_norm",
    "dropout", "interpolate",
    "avg_pool2d", "max_pool2d", "adaptive_avg_pool2d", "pixel_shuffle", "bicubic_resize", "normalize",
    # activations
    "relu", "leaky_relu", "prelu", "sigmoid", "tanh", "softplus", "elu",
    # losses
    "log_softmax", "softmax", "cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss",
    "gradient_penalty", "spectral_normalize",
    # conversions
    "cast", "to_device", "clone", "getitem_grad",
    # integer-valued, so without gradients
    "argmax", "argmin",
]
WITHOUT_GRADIENTS = ("argmax", "argmin")


# --- helpers ---------------------------------------------------------------------------

def constant(value, dtype=None, device=None):
    """A tensor outside the graph (a mask, a scale): never requires grad."""
    if isinstance(value, Tensor):
        return value.detach()
    xp = backend.xp_for(device) if device is not None else backend.xp_of(value)
    return Tensor._wrap(xp.asarray(value, dtype=dtype))


def _as_tensor(value, like):
    """`value` as a Tensor; Python numbers take `like`'s dtype (NumPy's weak-scalar rule)."""
    if isinstance(value, Tensor):
        return value
    if not isinstance(like, Tensor):
        raise TypeError(f"expected a Tensor, got {type(like).__name__} and {type(value).__name__}")
    if type(value) in (float, int) and like._data.dtype.kind == "f":
        # A NumPy scalar of the tensor's dtype: cheap, and both NumPy and CuPy take it as-is.
        return Tensor._wrap(like._data.dtype.type(value))
    if isinstance(value, (bool, int, float, np.number)):
        return Tensor._wrap(like.xp.asarray(value, dtype=np.result_type(like.dtype, value)))
    array = value if backend.is_cupy_array(value) else np.asarray(value)
    return Tensor._wrap(backend.to_device(array, like.device))


def _pair_of_tensors(a, b):
    if type(a) is Tensor and type(b) is Tensor:
        return a, b
    if isinstance(a, Tensor):
        return a, _as_tensor(b, a)
    return _as_tensor(a, b), b


def _axes(axis, ndim):
    """None, or a sorted tuple of non-negative axes (negative ones counted from the end)."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    normalized = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        normalized.append(int(a) % ndim)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(sorted(normalized))


# --- arithmetic ------------------------------------------------------------------------

def add(a, b):
    return ops.elementwise.Add()(*_pair_of_tensors(a, b))


def sub(a, b):
    return ops.elementwise.Sub()(*_pair_of_tensors(a, b))


def mul(a, b):
    return ops.elementwise.Mul()(*_pair_of_tensors(a, b))


def div(a, b):
    return ops.elementwise.Div()(*_pair_of_tensors(a, b))


def neg(a):
    return ops.elementwise.Neg()(a)


def pow(a, b):
    return ops.elementwise.Pow()(*_pair_of_tensors(a, b))


def exp(x):
    return ops.elementwise.Exp()(x)


def log(x):
    return ops.elementwise.Log()(x)


def sqrt(x):
    return ops.elementwise.Sqrt()(x)


def abs(x):
    return ops.elementwise.Abs()(x)


def clamp(x, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    return ops.elementwise.Clamp(min, max)(x)


def maximum(a, b):
    return ops.elementwise.Maximum()(*_pair_of_tensors(a, b))


def minimum(a, b):
    return ops.elementwise.Minimum()(*_pair_of_tensors(a, b))


def where(condition, a, b):
    """Elements of a where condition holds, else of b (condition is not differentiated)."""
    condition = condition._data if isinstance(condition, Tensor) else condition
    a, b = _pair_of_tensors(a, b)
    xp = backend.xp_of(a._data, b._data)
    condition = xp.asarray(condition)
    if condition.dtype != bool:
        raise TypeError(f"where() needs a boolean condition, got {condition.dtype}")
    return ops.elementwise.Where(condition)(a, b)


# --- reductions ------------------------------------------------------------------------

def sum(x, axis=None, keepdims=False):
    return ops.reduce.Sum(_axes(axis, x.ndim), keepdims)(x)


def _count(x, axis):
    return x.numel() if axis is None else int(np.prod([x.shape[a] for a in axis]))


def mean(x, axis=None, keepdims=False):
    axis = _axes(axis, x.ndim)
    return sum(x, axis, keepdims) / _count(x, axis)


def var(x, axis=None, keepdims=False, ddof=1, *, unbiased=None):
    """Variance: the unbiased estimate by default, as PyTorch's (ddof=1, or unbiased=True);
    ddof=0 (unbiased=False) for the biased one, NumPy's default."""
    if unbiased is not None:
        ddof = int(unbiased)
    axis = _axes(axis, x.ndim)
    centered = x - mean(x, axis, keepdims=True)
    return sum(centered * centered, axis, keepdims) / builtins.max(_count(x, axis) - ddof, 0)


def std(x, axis=None, keepdims=False, ddof=1, *, unbiased=None):
    return sqrt(var(x, axis, keepdims, ddof, unbiased=unbiased))


def amax(x, axis=None, keepdims=False):
    """The largest element over `axis` (all by default); ties share the gradient."""
    return ops.reduce.Max(_axes(axis, x.ndim), keepdims)(x)


def amin(x, axis=None, keepdims=False):
    return ops.reduce.Min(_axes(axis, x.ndim), keepdims)(x)


class ValuesAndIndices(tuple):
    """What max(x, dim) and min(x, dim) return, as in PyTorch: `values, indices = ...`."""
    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def _extreme(x, axis, keepdims, reduce, arg, elementwise):
    if isinstance(axis, Tensor):  # max(a, b): PyTorch's elementwise form
        return elementwise(x, axis)
    if axis is None:
        return reduce(x, None, keepdims)
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"max/min along dim return (values, indices) over one dim, got dim={axis}: "
                        f"use amax/amin to reduce several")
    return ValuesAndIndices((reduce(x, axis, keepdims), arg(x, axis, keepdims)))


def max(x, axis=None, keepdims=False):
    """PyTorch's max: max(x) is the largest element; max(x, dim) the pair (values, indices)
    along dim; max(x, y) the elementwise maximum. amax reduces without the indices."""
    return _extreme(x, axis, keepdims, amax, argmax, maximum)


def min(x, axis=None, keepdims=False):
    return _extreme(x, axis, keepdims, amin, argmin, minimum)


def _index_of(find, x, axis, keepdims):
    index = find(x._data, axis=axis)
    return Tensor._wrap(x.xp.expand_dims(index, axis) if keepdims and axis is not None else index)


def argmax(x, axis=None, keepdims=False):
    """The index of the largest element (along `axis`, or of the flattened tensor)."""
    return _index_of(x.xp.argmax, x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    return _index_of(x.xp.argmin, x, axis, keepdims)


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))), shifted by the max so that it never overflows."""
    axis = _axes(axis, x.ndim)
    shift = x.xp.max(x._data, axis=axis, keepdims=True)
    shift = constant(x.xp.where(x.xp.isfinite(shift), shift, 0))
    out = log(sum(exp(x - shift), axis, keepdims=True)) + shift
    return out if keepdims else squeeze(out, axis)


def norm(x, p=2, axis=None, keepdims=False):
    """The p-norm over `axis` (all elements by default); p may be any positive number or inf."""
    axis = _axes(axis, x.ndim)
    if p == 2:
        return ops.reduce.Norm(axis, keepdims)(x)
    if p == float("inf"):
        return amax(abs(x), axis, keepdims)
    if p == 1:
        return sum(abs(x), axis, keepdims)
    if not p > 0:
        raise ValueError(f"norm order p must be positive, got {p}")
    return sum(abs(x) ** p, axis, keepdims) ** (1.0 / p)


# --- shapes ----------------------------------------------------------------------------

def reshape(x, shape):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if shape == x.shape:
        return x
    return ops.shape.Reshape(shape)(x)


def permute(x, axes):
    axes = tuple(int(a) % builtins.max(x.ndim, 1) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"permute needs a permutation of {x.ndim} axes, got {axes}")
    return ops.shape.Transpose(axes)(x)


def transpose(x, *axes):
    """transpose(x) reverses the axes; transpose(x, a, b) swaps two (PyTorch);
    transpose(x, (..)) permutes (NumPy)."""
    if not axes:
        return permute(x, tuple(reversed(range(x.ndim))))
    if len(axes) == 1:
        return permute(x, axes[0])
    if len(axes) == 2:
        return swapaxes(x, *axes)
    return permute(x, axes)


def swapaxes(x, a, b):
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return permute(x, order)


def getitem(x, index):
    """x[index] with slices, ints, None, Ellipsis, integer arrays or boolean masks."""
    return ops.shape.GetItem(Tensor._index(index))(x)


def getitem_grad(gy, index, shape):
    """The gradient of getitem: gy scattered into zeros of `shape` (exposed for tests)."""
    return ops.shape.GetItemGrad(Tensor._index(index), shape)(gy)


def concat(tensors, axis=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    axis = _axes(axis, tensors[0].ndim)[0]
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim != tensors[0].ndim or any(s != r for d, (s, r) in enumerate(zip(t.shape, tensors[0].shape))
                                            if d != axis):
            raise ValueError(f"concat along axis {axis}: tensor {i} has shape {t.shape}, "
                             f"incompatible with {tensors[0].shape}")
    return ops.shape.Concat(axis)(*tensors)


cat = concat


def stack(tensors, axis=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    axis = axis % (tensors[0].ndim + 1)
    return concat([unsqueeze(t, axis) for t in tensors], axis)


def split(x, split_size_or_sections, axis=0):
    """Split into pieces of `split_size` along axis (PyTorch), or at the given sizes if a list."""
    axis = _axes(axis, x.ndim)[0]
    length = x.shape[axis]
    if isinstance(split_size_or_sections, (int, np.integer)):
        if split_size_or_sections <= 0:
            raise ValueError(f"split size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (length // split_size_or_sections)
        if length % split_size_or_sections:
            sizes.append(length % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != length:
            raise ValueError(f"split sizes {sizes} do not add up to the axis length {length}")
    pieces, start = [], 0
    for size in sizes:
        pieces.append(getitem(x, (slice(None),) * axis + (slice(start, start + size),)))
        start += size
    return tuple(pieces)


def chunk(x, chunks, axis=0):
    """Split into `chunks` pieces along axis, all of ceil(length / chunks) but the last (PyTorch)."""
    if chunks < 1:
        raise ValueError(f"chunk needs at least one chunk, got {chunks}")
    length = x.shape[_axes(axis, x.ndim)[0]]
    return split(x, builtins.max(-(-length // chunks), 1), axis)


def _pad_widths(pad_width, ndim):
    """((before, after) per axis) from NumPy's pad_width (an int, one pair for all axes, or a
    pair per axis) or PyTorch's flat tuple (left, right, top, bottom, ...: pairs for the last
    axes, the last axis first). A flat pair is PyTorch's: the last axis only."""
    if isinstance(pad_width, (tuple, list)) and pad_width and all(isinstance(w, (int, np.integer))
                                                                  for w in pad_width):
        if len(pad_width) % 2 or len(pad_width) > 2 * ndim:
            raise ValueError(f"a PyTorch pad tuple needs an even length of at most 2 x {ndim} dims, "
                             f"got {tuple(pad_width)}")
        last_first = [tuple(pad_width[i:i + 2]) for i in range(0, len(pad_width), 2)]
        return ((0, 0),) * (ndim - len(last_first)) + tuple(reversed(last_first))
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (ndim, 2)).tolist()
    return tuple(tuple(w) for w in widths)


def pad(x, pad_width, mode="constant", value=0):
    """Pad by PyTorch's tuple (left, right, top, bottom, ...; see _pad_widths) or NumPy's
    pad_width ((before, after) per axis, or an int for all)."""
    try:
        widths = _pad_widths(pad_width, x.ndim)
    except ValueError as error:
        raise ValueError(f"pad: {error}") from None
    if any(w < 0 for pair in widths for w in pair):
        raise ValueError(f"pad widths must be non-negative, got {pad_width}")
    if mode == "constant":
        return ops.shape.PadConstant(widths, value)(x)
    if mode == "reflect":
        for axis, ((before, after), size) in enumerate(zip(widths, x.shape)):
            if before >= size or after >= size:
                raise ValueError(f"reflect padding ({before}, {after}) must be smaller than the axis "
                                 f"size {size} (axis {axis})")
        return ops.shape.PadReflect(widths)(x)
    raise ValueError(f"unknown pad mode {mode!r}: use 'constant' or 'reflect'")


def normalize(x, p=2.0, axis=1, eps=1e-12):
    """x divided by its p-norm along `axis`, the norm held at least `eps` (PyTorch's F.normalize)."""
    return x / clamp(norm(x, p, axis, keepdims=True), eps, None)


def broadcast_to(x, shape):
    shape = tuple(shape)
    if shape == x.shape:
        return x
    try:
        np.broadcast_shapes(x.shape, shape)
    except ValueError:
        raise ValueError(f"cannot broadcast shape {x.shape} to {shape}") from None
    return ops.shape.BroadcastTo(shape)(x)


expand = broadcast_to


def sum_to(x, shape):
    """Sum x down to `shape` (the gradient of broadcasting); a no-op when shapes match."""
    shape = tuple(shape)
    if shape == x.shape:
        return x
    return ops.shape.SumTo(shape)(x)


def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = start_dim % x.ndim, end_dim % x.ndim
    merged = int(np.prod(x.shape[start:end + 1]))
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1:])


def squeeze(x, axis=None):
    if axis is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    axes = _axes(axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"cannot squeeze axis {a} of size {x.shape[a]} (shape {x.shape})")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def unsqueeze(x, axis):
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def flip(x, axis):
    return ops.shape.Flip(_axes(axis, x.ndim) or tuple(range(x.ndim)))(x)


# --- linear algebra and sliding windows -------------------------------------------------

def matmul(a, b):
    """a @ b with NumPy's rules: 1-D operands are promoted to matrices and squeezed back."""
    a, b = _pair_of_tensors(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul needs operands with at least one dimension; use mul for scalars")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul shape mismatch: {a.shape} @ {b.shape}")
    if a.ndim == 1:
        return squeeze(matmul(unsqueeze(a, 0), b), -2 if b.ndim > 1 else -1)
    if b.ndim == 1:
        return squeeze(matmul(a, unsqueeze(b, -1)), -1)
    return ops.linalg.MatMul()(a, b)


def unfold(x, kernel_size, stride=1, padding=0, dilation=1, impl=None):
    """Sliding windows of x (N, C, H, W) as columns (N, C*KH*KW, L): im2col (torch.nn.functional.unfold)."""
    return ops.conv.Unfold(kernel_size, stride, padding, dilation, impl)(x)


def fold(cols, output_size, kernel_size, stride=1, padding=0, dilation=1, impl=None):
    """Sum columns (N, C*KH*KW, L) back into images (N, C, H, W): col2im, the adjoint of unfold."""
    return ops.conv.Fold(output_size, kernel_size, stride, padding, dilation, impl)(cols)


def _check_conv_args(op, x, weight, in_channels_of_weight, groups):
    if x.ndim != 4:
        raise ValueError(f"{op} expects an (N, C, H, W) input, got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"{op} expects a 4-D weight, got shape {weight.shape}")
    if groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{op}: weight shape {weight.shape} has {weight.shape[0]} in its first axis, "
                         f"not divisible by groups={groups}")
    if x.shape[1] != in_channels_of_weight:
        raise ValueError(f"{op}: input has {x.shape[1]} channels but weight shape {weight.shape} with "
                         f"groups={groups} expects {in_channels_of_weight}")


def _with_bias(x, weight, bias, out_channels, op):
    """The inputs of a convolution op: the bias, checked, is its third (added in place)."""
    if bias is None:
        return (x, weight)
    if bias.shape != (out_channels,):
        raise ValueError(f"{op}: bias has shape {bias.shape}, expected ({out_channels},)")
    return (x, weight, bias)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, impl=None):
    """2-D cross-correlation (PyTorch's conv2d): x (N, C, H, W), weight (O, C/groups, KH, KW)."""
    _check_conv_args("conv2d", x, weight, weight.shape[1] * groups if weight.ndim == 4 else None, groups)
    return ops.conv.Conv2d(stride, padding, dilation, groups, impl)(
        *_with_bias(x, weight, bias, weight.shape[0], "conv2d"))


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
                     impl=None):
    """Transposed convolution (PyTorch's conv_transpose2d): x (N, C, H, W), weight (C, O/groups, KH, KW)."""
    _check_conv_args("conv_transpose2d", x, weight, weight.shape[0] if weight.ndim == 4 else None, groups)
    return ops.conv.ConvTranspose2d(stride, padding, output_padding, dilation, groups, impl)(
        *_with_bias(x, weight, bias, weight.shape[1] * groups, "conv_transpose2d"))


def conv2d_weight_grad(x, grad_output, weight_shape, stride=1, padding=0, dilation=1, groups=1, impl=None):
    """The gradient of conv2d(x, W) with respect to W, for an output gradient `grad_output`."""
    weight_shape = tuple(weight_shape)
    expected = (x.shape[0], weight_shape[0]) + ops.conv.output_size(
        x.shape[2:], weight_shape[2:], ops.conv.pair(stride, "stride"), ops.conv.pair(padding, "padding"),
        ops.conv.pair(dilation, "dilation"))
    if grad_output.shape != expected:
        raise ValueError(f"conv2d_weight_grad: grad_output has shape {grad_output.shape}, but conv2d of an "
                         f"input {x.shape} with a weight {weight_shape} gives {expected}")
    return ops.conv.Conv2dWeightGrad(weight_shape, stride, padding, dilation, groups, impl)(x, grad_output)


# --- layers ---------------------------------------------------------------------------

def linear(x, weight, bias=None):
    """x @ weight.T + bias, with weight (out_features, in_features) as in PyTorch."""
    return _linear(ops.linalg.Linear(), x, weight, bias)


def linear_leaky_relu(x, weight, bias=None, negative_slope=0.01):
    """leaky_relu(linear(x, weight, bias), negative_slope) as one op, for a slope in [0, 1]
    (0: ReLU): nn.Sequential runs a Linear followed by a LeakyReLU or ReLU this way. The
    result and its gradients are those of the two ops; on the CPU the activation is
    applied as the product is stored (ops/linalg.py)."""
    return _linear(ops.linalg.LinearLeakyReLU(negative_slope), x, weight, bias)


def _linear(op, x, weight, bias):
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input shape {x.shape} does not end in in_features={weight.shape[-1]} "
                         f"(weight shape {weight.shape})")
    return op(x, weight) if bias is None else op(x, weight, bias)


def embedding(indices, weight):
    """Rows of `weight` picked by integer `indices` (any shape): the result has shape indices.shape + (dim,)."""
    indices = indices._data if isinstance(indices, Tensor) else weight.xp.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding indices must be integers, got {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= weight.shape[0]):
        raise ValueError(f"embedding indices must lie in [0, {weight.shape[0]}), got values from "
                         f"{int(indices.min())} to {int(indices.max())}")
    return getitem(weight, indices)


def normalized(x, mean_, var_, eps, weight, bias, per_channel):
    """(x - mean) / sqrt(var + eps), times weight, plus bias: every normalization's last
    steps. With per_channel, weight and bias are (C,) vectors for an (N, C, ...) input."""
    y = (x - mean_) / sqrt(var_ + eps)
    if weight is not None:
        y = y * (ops.norm.per_channel(weight, x.ndim) if per_channel else weight)
    if bias is not None:
        y = y + (ops.norm.per_channel(bias, x.ndim) if per_channel else bias)
    return y


def scale_and_shift(x, weight, bias):
    """(weight, bias) for the batch-norm ops, which take both or neither: a missing one is
    the identity scale or shift."""
    channels = x.shape[1]
    return (weight if weight is not None else constant(np.ones(channels), x.dtype, x.device),
            bias if bias is not None else constant(np.zeros(channels), x.dtype, x.device))


def update_running_statistics(running_mean, running_var, mean, var, momentum, count):
    """PyTorch's running averages: the batch mean and the unbiased batch variance (over
    `count` values per channel), weighted by `momentum`, in place; nothing without them."""
    if running_mean is None:
        return
    with no_grad():
        running_mean.copy_((1 - momentum) * running_mean._data + momentum * mean)
        running_var.copy_((1 - momentum) * running_var._data + momentum * var * count / (count - 1))


def per_channel_affine(y, weight, bias):
    """y * weight + bias with a (C,) weight and bias for an (N, C, ...) y; None skips either."""
    if weight is not None:
        y = y * ops.norm.per_channel(weight, y.ndim)
    if bias is not None:
        y = y + ops.norm.per_channel(bias, y.ndim)
    return y


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=True, momentum=0.1,
               eps=1e-5):
    """Normalize each channel by the batch's statistics (training) or the running ones (eval).

    In training, the running statistics are updated in place, as PyTorch does: with the
    batch mean and the unbiased batch variance, weighted by `momentum`."""
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects (N, C) or (N, C, ...) input, got shape {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.numel() // x.shape[1]
    if training:
        if count < 2:
            raise ValueError(f"batch_norm in training needs more than one value per channel, got input "
                             f"shape {x.shape}")
        fn = ops.norm.BatchNorm(eps)
        y = fn(x) if weight is None and bias is None else fn(x, *scale_and_shift(x, weight, bias))
        update_running_statistics(running_mean, running_var, fn.mean, fn.var, momentum, count)
        return y
    if running_mean is None:
        raise ValueError("batch_norm in eval mode needs running_mean and running_var")
    return normalized(x, ops.norm.per_channel(running_mean.detach(), x.ndim),
                       ops.norm.per_channel(running_var.detach(), x.ndim), eps, weight, bias, per_channel=True)


def instance_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalize each channel of each sample over its spatial positions."""
    if x.ndim < 3:
        raise ValueError(f"instance_norm expects (N, C, ...) input with spatial axes, got shape {x.shape}")
    # each (sample, channel) pair is a channel of its own: batch norm of the (1, N*C, ...)
    # view computes exactly that, with the fused kernels batch norm has
    n, channels = x.shape[:2]
    y = reshape(ops.norm.BatchNorm(eps)(reshape(x, (1, n * channels) + x.shape[2:])), x.shape)
    return per_channel_affine(y, weight, bias)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the last len(normalized_shape) axes."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"layer_norm: input shape {x.shape} does not end in {normalized_shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    return normalized(x, mean(x, axes, keepdims=True), var(x, axes, keepdims=True, ddof=0), eps, weight, bias,
                       per_channel=False)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize each sample over groups of `num_groups` channels and their positions (Wu
    and He 2018), then scale and shift each channel."""
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise ValueError(f"group_norm: input shape {x.shape} needs (N, C, ...) with C divisible by "
                         f"num_groups={num_groups}")
    grouped = reshape(x, (x.shape[0], num_groups, -1))
    y = reshape(normalized(grouped, mean(grouped, 2, keepdims=True), var(grouped, 2, keepdims=True, ddof=0), eps,
                           None, None, per_channel=False), x.shape)
    return per_channel_affine(y, weight, bias)


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity in eval)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    gen = generator or default_generator(x.device)
    keep = gen.uniform(x.shape, np.float64) >= p  # float64 draws: one seed, one mask, whatever x's dtype
    return x * constant(keep / x.dtype.type(1 - p))


def _source_indices(in_size, out_size, mode, align_corners=False):
    """For each output row: the input rows it reads and their weights. Bilinear places
    output row i at input position (i + 0.5) in/out - 0.5 (align_corners=False, PyTorch's
    default: pixel centres line up) or at i (in - 1)/(out - 1) (True: the corner pixels do)."""
    dst = np.arange(out_size)
    if mode == "nearest":
        return np.minimum(np.floor(dst * in_size / out_size).astype(np.int64), in_size - 1), None, None
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        src = np.maximum((dst + 0.5) * in_size / out_size - 0.5, 0)
    low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, src - low


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Resize (N, C, H, W) images to `size` or by `scale_factor`: 'nearest' or 'bilinear'
    (align_corners as in PyTorch: False by default, and only for bilinear). Both are linear
    maps along each axis, so they run as one Resample (y = R x C^T) whose gradient is the
    same op with the matrices transposed."""
    if x.ndim != 4:
        raise ValueError(f"interpolate expects (N, C, H, W) input, got shape {x.shape}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate needs exactly one of size and scale_factor")
    if size is None:
        factors = (scale_factor, scale_factor) if np.isscalar(scale_factor) else tuple(scale_factor)
        size = tuple(int(np.floor(n * f)) for n, f in zip(x.shape[2:], factors))
    size = (size, size) if isinstance(size, int) else tuple(size)
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"unknown interpolation mode {mode!r}: use 'nearest' or 'bilinear'")
    if mode == "nearest" and align_corners is not None:
        raise ValueError("interpolate: align_corners is for mode='bilinear' only; leave it out for 'nearest'")
    rows, cols = (backend.to_device(_interpolation_matrix(n, m, mode, bool(align_corners)).astype(x.dtype), x.device)
                  for n, m in zip(x.shape[2:], size))
    return ops.resample.Resample(rows, cols)(x)


@functools.lru_cache(maxsize=256)
def _interpolation_matrix(in_size, out_size, mode, align_corners):
    """(out, in): each output row's weights on the input rows it reads (built once per
    shape: a network resizes the same shapes every step; read-only, as it is shared)."""
    low, high, frac = _source_indices(in_size, out_size, mode, align_corners)
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    if mode == "nearest":
        matrix[rows, low] = 1.0
    else:
        np.add.at(matrix, (rows, low), 1 - frac)
        np.add.at(matrix, (rows, high), frac)
    matrix.setflags(write=False)
    return matrix


def bicubic_resize(x, size=None, scale_factor=None):
    """Resize (..., H, W) images to `size` or by `scale_factor` as MATLAB's imresize does
    (the low-resolution inputs of the super-resolution literature are made with it): Keys'
    cubic kernel with a = -0.5, widened by the factor when shrinking (antialiasing), the
    image mirrored at its borders (data/resize.py). PyTorch's interpolate(mode="bicubic",
    antialias=True) agrees away from the borders, where it renormalizes instead of mirroring."""
    from .data.resize import resize_weights
    if x.ndim < 2:
        raise ValueError(f"bicubic_resize expects (..., H, W) images, got shape {x.shape}")
    if (size is None) == (scale_factor is None):
        raise ValueError("bicubic_resize needs exactly one of size and scale_factor")
    if size is None:
        factors = (scale_factor, scale_factor) if np.isscalar(scale_factor) else tuple(scale_factor)
        size = tuple(int(round(n * f)) for n, f in zip(x.shape[-2:], factors))
    size = (size, size) if isinstance(size, int) else tuple(size)
    if builtins.min(size) < 1:
        raise ValueError(f"bicubic_resize: the output size must be positive, got {size}")
    rows, cols = (backend.to_device(resize_weights(n, m).astype(x.dtype), x.device)
                  for n, m in zip(x.shape[-2:], size))
    return ops.resample.Resample(rows, cols)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window (zero padding counted, as PyTorch's default count_include_pad=True)."""
    if x.ndim != 4:
        raise ValueError(f"avg_pool2d expects (N, C, H, W) input, got shape {x.shape}")
    stride = kernel_size if stride is None else stride
    kh, kw = ops.conv.pair(kernel_size, "kernel_size")
    if ops.conv.pair(stride, "stride") == (kh, kw) and ops.conv.pair(padding, "padding") == (0, 0) \
            and x.shape[2] % kh == 0 and x.shape[3] % kw == 0:
        return adaptive_avg_pool2d(x, (x.shape[2] // kh, x.shape[3] // kw))  # tiles: the same bins, one linear map
    return _pooled(mean, x, (kh, kw), stride, padding)


def _pooled(reduce, x, kernel, stride, padding):
    """reduce(windows, axis 2) over each (kh, kw) window of x: (N, C, OH, OW)."""
    (kh, kw), n, c = kernel, x.shape[0], x.shape[1]
    oh, ow = ops.conv.output_size(x.shape[2:], kernel, ops.conv.pair(stride, "stride"),
                                  ops.conv.pair(padding, "padding"), (1, 1))
    windows = reshape(unfold(x, kernel, stride, padding), (n, c, kh * kw, oh * ow))
    return reshape(reduce(windows, 2), (n, c, oh, ow))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """The largest value in each window; padding counts as -inf, so it is never picked."""
    if x.ndim != 4:
        raise ValueError(f"max_pool2d expects (N, C, H, W) input, got shape {x.shape}")
    stride = kernel_size if stride is None else stride
    (kh, kw), (ph, pw) = ops.conv.pair(kernel_size, "kernel_size"), ops.conv.pair(padding, "padding")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"max_pool2d: padding {padding} must be at most half the kernel size {kernel_size}")
    if ph or pw:
        x = pad(x, (pw, pw, ph, ph), value=-np.inf)
    return _pooled(amax, x, (kh, kw), stride, 0)


@functools.lru_cache(maxsize=256)
def _bin_averages(in_size, out_size):
    """(out, in) matrix averaging PyTorch's adaptive bins: bin i spans rows floor(i in/out)
    to ceil((i + 1) in/out), so bins overlap when out does not divide in (built once per
    shape, read-only)."""
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -(-(i + 1) * in_size // out_size)
        weights[i, start:end] = 1.0 / (end - start)
    weights.setflags(write=False)
    return weights


def adaptive_avg_pool2d(x, output_size):
    """Average over the bins that cut (..., H, W) into output_size (an int or (h, w); None
    keeps that side), as PyTorch's: a linear map along each axis."""
    if x.ndim < 3:
        raise ValueError(f"adaptive_avg_pool2d expects (N, C, H, W) or (C, H, W) input, got shape {x.shape}")
    size = (output_size, output_size) if isinstance(output_size, (int, np.integer)) else tuple(output_size)
    size = tuple(n if s is None else int(s) for s, n in zip(size, x.shape[-2:]))
    if builtins.min(size) < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {output_size}")
    rows, cols = (backend.to_device(_bin_averages(n, m).astype(x.dtype), x.device) for n, m in zip(x.shape[-2:], size))
    return ops.resample.Resample(rows, cols)(x)


def pixel_shuffle(x, upscale_factor):
    """(N, C r^2, H, W) -> (N, C, H r, W r): sub-pixel convolution's rearrangement."""
    r = int(upscale_factor)
    n, c, h, w = x.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle: {c} channels are not divisible by upscale_factor^2 = {r * r}")
    return ops.shape.PixelShuffle(r)(x)


# --- activations ------------------------------------------------------------------------

def relu(x):
    return ops.activation.ReLU()(x)


def leaky_relu(x, negative_slope=0.01, *, gain=1.0):
    """x where x > 0, else negative_slope * x; times `gain` (StyleGAN2's sqrt 2) in the
    same pass, with the gradients of the two ops, one after the other."""
    return ops.activation.LeakyReLU(negative_slope, gain)(x)


def prelu(x, weight):
    """Parametric ReLU (He et al. 2015): x where x > 0, else weight * x, with one learned
    slope per channel (axis 1) or one for all (ops/activation.py)."""
    if weight.ndim != 1 or weight.shape[0] not in (1, x.shape[1] if x.ndim > 1 else 1):
        raise ValueError(f"prelu: weight must hold 1 slope or one per channel ({x.shape[1] if x.ndim > 1 else 1}), "
                         f"got shape {weight.shape}")
    return ops.activation.PReLU()(x, weight)


def sigmoid(x):
    return ops.activation.Sigmoid()(x)


def tanh(x):
    return ops.activation.Tanh()(x)


def softplus(x, beta=1.0):
    return ops.activation.Softplus(beta)(x)


def elu(x, alpha=1.0):
    return ops.activation.ELU(alpha)(x)


# --- losses -----------------------------------------------------------------------------

def log_softmax(x, axis=-1):
    """log of softmax, as x minus its logsumexp (stable)."""
    return x - logsumexp(x, axis, keepdims=True)


def softmax(x, axis=-1):
    return exp(log_softmax(x, axis))


def _reduce(loss, reduction):
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}: use 'mean', 'sum' or 'none'")


def cross_entropy(logits, target, reduction="mean"):
    """Softmax cross entropy of logits (N, K) against integer class labels (N,)."""
    target = target._data if isinstance(target, Tensor) else logits.xp.asarray(target)
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy expects logits (N, K) and targets (N,), got {logits.shape} "
                         f"and {target.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy targets must be integer class labels, got {target.dtype}")
    if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy targets must lie in [0, {logits.shape[1]}), "
                         f"got values from {int(target.min())} to {int(target.max())}")
    rows = logits.xp.arange(logits.shape[0])
    return _reduce(-getitem(log_softmax(logits, 1), (rows, target)), reduction)


def _check_same_shape(name, x, target):
    if x.shape != target.shape:
        raise ValueError(f"{name}: input shape {x.shape} and target shape {target.shape} differ")


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], written as softplus(x) - t x (stable)."""
    target = _as_tensor(target, logits)
    _check_same_shape("binary_cross_entropy_with_logits", logits, target)
    return _reduce(softplus(logits) - target * logits, reduction)


def mse_loss(x, target, reduction="mean"):
    target = _as_tensor(target, x)
    _check_same_shape("mse_loss", x, target)
    diff = x - target
    return _reduce(diff * diff, reduction)


def l1_loss(x, target, reduction="mean"):
    target = _as_tensor(target, x)
    _check_same_shape("l1_loss", x, target)
    return _reduce(abs(x - target), reduction)


def gradient_penalty(grad, target=1.0, one_sided=False, impl=None):
    """WGAN-GP's penalty on the critic's input gradients `grad` (N, ...): the mean over
    samples of (||grad_i|| - target)^2 (one-sided: only where the norm exceeds target)."""
    if grad.ndim < 2:
        raise ValueError(f"gradient_penalty expects per-sample gradients (N, ...), got shape {grad.shape}")
    return ops.penalty.GradientPenalty(target, one_sided, impl)(grad)


def spectral_normalize(weight, u, v, dim=0):
    """weight / sigma with sigma = u^T W v, W the weight as a matrix with axis `dim` as its
    rows; u and v (arrays) are held constant in the gradient, as spectral norm does."""
    u, v = (weight.xp.asarray(a._data if isinstance(a, Tensor) else a, dtype=weight.dtype) for a in (u, v))
    rows, cols = weight.shape[dim], weight.numel() // weight.shape[dim]
    if np.shape(u) != (rows,) or np.shape(v) != (cols,):
        raise ValueError(f"spectral_normalize: a weight {weight.shape} with dim={dim} needs u ({rows},) and "
                         f"v ({cols},), got {np.shape(u)} and {np.shape(v)}")
    return ops.spectral.SpectralNormalize(u, v, 0, 0.0, dim)(weight)


# --- conversions ------------------------------------------------------------------------

def cast(x, dtype):
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    if x._requires_grad and dtype.kind != "f":
        return x.detach().astype(dtype)  # an integer result has no gradient
    return ops.convert.Cast(dtype)(x)


def to_device(x, device):
    if backend.normalize_device(device) == x.device:
        return x
    return ops.convert.ToDevice(device)(x)


def clone(x):
    return ops.convert.Copy()(x)


from . import ops  # noqa: E402  (the ops import this module, so they come last)

# dim=, keepdim=, correction= accepted wherever axis=, keepdims=, ddof= are (pytorch_names.py)
accept_pytorch_names_in(globals(), __all__)
cat = concat

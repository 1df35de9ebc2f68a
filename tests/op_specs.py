"""One entry per public op: how to draw random inputs, how to call it in ganforge,
and what NumPy says it should give (in float64).

A case is (arrays, params): `arrays` become tensors that the checks differentiate,
`params` are held fixed (axes, indices, exponents). Values are drawn away from
kinks, ties and poles, where finite differences mean nothing.
"""
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ganforge as gf
from ganforge import functional as F


@dataclass
class OpSpec:
    name: str                 # the public function it exercises (an entry of functional.__all__)
    case: object              # a hypothesis strategy of (list of float64 arrays, dict of params)
    fn: object                # (*tensors, **params) -> Tensor or tuple of Tensors
    ref: object               # (*arrays, **params) -> array or tuple of arrays, in NumPy
    devices: tuple = ("cpu", "cuda")
    check: dict = field(default_factory=dict)  # gradcheck tolerance overrides
    covers: tuple = ()        # Function classes it exercises that cannot run on this machine
    variant: str = ""         # tells apart several specs of one op (e.g. its kernel)

    @property
    def id(self):
        return f"{self.name}[{self.variant}]" if self.variant else self.name


# --- value helpers -----------------------------------------------------------------------

seeds = st.integers(0, 2**32 - 1)
small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonempty_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def uniform(seed, shape, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def away_from(x, points, margin=0.1):
    """Push values at least `margin` away from each of `points` (kinks of the op)."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin) * 1.5
    return x


def distinct(seed, shape, spacing=0.25):
    """Values with no ties, so that max/min/abs have a unique, smooth choice."""
    size = int(np.prod(shape))
    values = (np.random.default_rng(seed).permutation(size) - size / 2 + 0.5) * spacing
    return values.reshape(shape)


@st.composite
def unary(draw, low=-2.0, high=2.0, kinks=(), shapes=small_shapes):
    x = uniform(draw(seeds), draw(shapes), low, high)
    return [away_from(x, kinks)], {}


@st.composite
def binary(draw, low=-2.0, high=2.0, b_low=None, b_high=None):
    a_shape, b_shape = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4)).input_shapes
    seed = draw(seeds)
    a = uniform(seed, a_shape, low, high)
    b = uniform(seed + 1, b_shape, low if b_low is None else b_low, high if b_high is None else b_high)
    return [a, b], {}


@st.composite
def with_axis(draw, shapes=small_shapes, values="uniform", min_count=1):
    shape = draw(shapes)
    seed = draw(seeds)
    x = distinct(seed, shape) if values == "distinct" else uniform(seed, shape)
    axis = draw(st.none() | st.lists(st.integers(0, max(len(shape) - 1, 0)), unique=True, max_size=len(shape))
                .map(tuple)) if shape else None
    count = int(np.prod(shape)) if axis is None else int(np.prod([shape[a] for a in axis]))
    if count < min_count:
        axis = None
    return [x], {"axis": axis, "keepdims": draw(st.booleans())}


@st.composite
def one_axis(draw):
    shape = draw(nonempty_shapes)
    x = distinct(draw(seeds), shape)
    return [x], {"axis": draw(st.integers(-len(shape), len(shape) - 1)), "keepdims": draw(st.booleans())}


def np_axis(axis):
    return None if axis is None else tuple(axis)


# --- cases with structure ------------------------------------------------------------------

@st.composite
def pow_case(draw):
    kind = draw(st.sampled_from(["scalar", "tensor", "rpow"]))
    if kind == "tensor":
        arrays, _ = draw(binary(0.5, 2.0, -1.5, 1.5))
        return arrays, {}
    [x], _ = draw(unary(0.5, 2.0))
    if kind == "rpow":
        return [x], {"base": draw(st.sampled_from([2.0, 0.5, 3.0]))}
    return [x], {"exponent": draw(st.sampled_from([2, 3, 0.5, -1.5]))}


def pow_fn(*xs, exponent=None, base=None):
    if base is not None:
        return base ** xs[0]
    if exponent is not None:
        return xs[0] ** exponent
    return F.pow(*xs)


def pow_ref(*xs, exponent=None, base=None):
    if base is not None:
        return base ** xs[0]
    if exponent is not None:
        return xs[0] ** exponent
    return xs[0] ** xs[1]


@st.composite
def clamp_case(draw):
    bounds = draw(st.sampled_from([(-0.5, 0.7), (-0.5, None), (None, 0.3)]))
    [x], _ = draw(unary(kinks=[b for b in bounds if b is not None]))
    return [x], {"min": bounds[0], "max": bounds[1]}


@st.composite
def where_case(draw):
    [a, b], _ = draw(binary())
    out_shape = np.broadcast_shapes(a.shape, b.shape)
    cond = np.random.default_rng(draw(seeds)).random(out_shape) > 0.5
    return [a, b], {"condition": cond}


@st.composite
def norm_case(draw, orders):
    p = draw(st.sampled_from(orders))
    [x], params = draw(with_axis())
    # Distinct magnitudes away from zero: |x| has a kink at 0, and max|x| at ties.
    magnitudes = distinct(draw(seeds), x.shape)
    x = np.sign(x + (x == 0)) * (np.abs(magnitudes - magnitudes.min()) + 0.2)
    return [x], {**params, "p": p}


@st.composite
def var_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    x = uniform(draw(seeds), shape)
    axis = draw(st.none() | st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1).map(tuple))
    return [x], {"axis": axis, "keepdims": draw(st.booleans()), "ddof": draw(st.sampled_from([0, 1]))}


@st.composite
def reshape_case(draw):
    shape = draw(small_shapes)
    size = int(np.prod(shape))
    target = draw(st.sampled_from([(size,), (1, size), (size, 1), tuple(reversed(shape)) or (1,)]))
    return [uniform(draw(seeds), shape)], {"shape": target}


@st.composite
def permute_case(draw):
    shape = draw(small_shapes)
    return [uniform(draw(seeds), shape)], {"axes": tuple(draw(st.permutations(range(len(shape)))))}


@st.composite
def swapaxes_case(draw):
    shape = draw(nonempty_shapes)
    a, b = draw(st.integers(0, len(shape) - 1)), draw(st.integers(-len(shape), len(shape) - 1))
    return [uniform(draw(seeds), shape)], {"a": a, "b": b}


@st.composite
def index_case(draw):
    """An index of one of three kinds: basic (slices/ints/None/...), integer arrays
    with repeats, or a boolean mask."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    x = uniform(draw(seeds), shape)
    kind = draw(st.sampled_from(["basic", "integer", "mask"]))
    if kind == "basic":
        index = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    elif kind == "integer":
        rows = draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=6))
        index = (np.array(rows),)
    else:
        index = np.random.default_rng(draw(seeds)).random(shape) > 0.4
    return [x], {"index": index}


@st.composite
def index_grad_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    rows = np.array(draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6)))
    gy = uniform(draw(seeds), (len(rows),) + shape[1:])
    return [gy], {"index": (rows,), "shape": shape}


def getitem_grad_ref(gy, index, shape):
    gx = np.zeros(shape)
    np.add.at(gx, index, gy)
    return gx


@st.composite
def concat_case(draw):
    base = list(draw(nonempty_shapes))
    axis = draw(st.integers(0, len(base) - 1))
    count = draw(st.integers(1, 3))
    seed = draw(seeds)
    arrays = []
    for k in range(count):
        shape = list(base)
        shape[axis] = draw(st.integers(1, 3))
        arrays.append(uniform(seed + k, shape))
    return arrays, {"axis": axis}


@st.composite
def stack_case(draw):
    shape = draw(small_shapes)
    count = draw(st.integers(1, 3))
    seed = draw(seeds)
    return [uniform(seed + k, shape) for k in range(count)], {"axis": draw(st.integers(-len(shape) - 1, len(shape)))}


@st.composite
def split_case(draw):
    shape = draw(nonempty_shapes)
    axis = draw(st.integers(0, len(shape) - 1))
    size = draw(st.integers(1, shape[axis]))
    return [uniform(draw(seeds), shape)], {"size": size, "axis": axis}


def split_ref(x, size, axis):
    return tuple(np.split(x, range(size, x.shape[axis], size), axis=axis))


@st.composite
def pad_case(draw, mode):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    limit = (lambda n: n - 1) if mode == "reflect" else (lambda n: 2)
    widths = tuple((draw(st.integers(0, limit(n))), draw(st.integers(0, limit(n)))) for n in shape)
    value = draw(st.sampled_from([0.0, 1.5])) if mode == "constant" else 0.0
    return [uniform(draw(seeds), shape)], {"pad_width": widths, "mode": mode, "value": value}


def pad_ref(x, pad_width, mode, value):
    if mode == "constant":
        return np.pad(x, pad_width, mode="constant", constant_values=value)
    return np.pad(x, pad_width, mode="reflect")


@st.composite
def pytorch_pad_case(draw):
    """PyTorch's flat pad tuple: (left, right) for the last axis, then the one before..."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
    padded = draw(st.integers(1, len(shape)))
    widths = sum(((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(padded)), ())
    return [uniform(draw(seeds), shape)], {"pad_width": widths, "mode": "constant", "value": 0.5}


def pytorch_pad_ref(x, pad_width, mode, value):
    pairs = [pad_width[i:i + 2] for i in range(0, len(pad_width), 2)][::-1]
    return np.pad(x, [(0, 0)] * (x.ndim - len(pairs)) + pairs, constant_values=value)


@st.composite
def chunk_case(draw):
    shape = draw(nonempty_shapes)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return [uniform(draw(seeds), shape)], {"chunks": draw(st.integers(1, 5)), "axis": axis}


def chunk_ref(x, chunks, axis):
    """PyTorch's chunks: ceil(n / chunks) each, the last one shorter (so maybe fewer chunks)."""
    size = -(-x.shape[axis] // chunks)
    return tuple(np.split(x, range(size, x.shape[axis], size), axis=axis))


@st.composite
def broadcast_case(draw):
    """A shape and a larger shape it broadcasts to (used by broadcast_to and, reversed, sum_to)."""
    target = draw(small_shapes)
    cut = draw(st.integers(0, len(target)))
    shape = tuple(1 if draw(st.booleans()) else n for n in target[cut:])
    return shape, target


@st.composite
def broadcast_to_case(draw):
    shape, target = draw(broadcast_case())
    return [uniform(draw(seeds), shape)], {"shape": target}


@st.composite
def sum_to_case(draw):
    shape, target = draw(broadcast_case())
    return [uniform(draw(seeds), target)], {"shape": shape}


def sum_to_ref(x, shape):
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return x.sum(axis=axes, keepdims=True).reshape(shape)


@st.composite
def flatten_case(draw):
    shape = draw(nonempty_shapes)
    start = draw(st.integers(0, len(shape) - 1))
    end = draw(st.integers(start, len(shape) - 1))
    return [uniform(draw(seeds), shape)], {"start_dim": start, "end_dim": end}


def flatten_ref(x, start_dim, end_dim):
    return x.reshape(x.shape[:start_dim] + (-1,) + x.shape[end_dim + 1:])


@st.composite
def squeeze_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3))
    ones = [i for i, n in enumerate(shape) if n == 1]
    axis = draw(st.none() | st.sampled_from(ones)) if ones else None
    return [uniform(draw(seeds), shape)], {"axis": axis}


@st.composite
def unsqueeze_case(draw):
    shape = draw(small_shapes)
    return [uniform(draw(seeds), shape)], {"axis": draw(st.integers(-len(shape) - 1, len(shape)))}


@st.composite
def flip_case(draw):
    shape = draw(nonempty_shapes)
    axes = draw(st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1).map(tuple))
    return [uniform(draw(seeds), shape)], {"axis": axes}


@st.composite
def matmul_case(draw):
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    a_shape = draw(st.sampled_from([batch_a + (n, k), (k,)]))
    b_shape = draw(st.sampled_from([batch_b + (k, m), (k,)]))
    seed = draw(seeds)
    return [uniform(seed, a_shape), uniform(seed + 1, b_shape)], {}


@st.composite
def window_case(draw, max_stride=2, max_padding=1, max_size=6):
    """An image and a sliding-window geometry that fits it."""
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride))
    ph, pw = draw(st.integers(0, max_padding)), draw(st.integers(0, max_padding))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max(max_size, dh * (kh - 1) + 1)))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max(max_size, dw * (kw - 1) + 1)))
    geometry = {"kernel_size": (kh, kw), "stride": (sh, sw), "padding": (ph, pw), "dilation": (dh, dw)}
    return (n, c, h, w), geometry


@st.composite
def unfold_case(draw, impl):
    shape, geometry = draw(window_case())
    return [uniform(draw(seeds), shape)], {**geometry, "impl": impl}


@st.composite
def fold_case(draw, impl):
    (n, c, h, w), geometry = draw(window_case())
    cols = torch_free_unfold(np.zeros((n, c, h, w)), **geometry).shape
    return [uniform(draw(seeds), cols)], {**geometry, "output_size": (h, w), "impl": impl}


def torch_free_unfold(x, kernel_size, stride, padding, dilation, impl=None):
    """im2col by the definition, one output position at a time (the slowest, plainest oracle)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = np.zeros((n, c, kh, kw, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    cols[:, :, a, b, i, j] = padded[:, :, i * sh + a * dh, j * sw + b * dw]
    return cols.reshape(n, c * kh * kw, oh * ow)


def fold_ref(cols, output_size, kernel_size, stride, padding, dilation, impl=None):
    """The adjoint of the definition above: <unfold(x), cols> = <x, fold(cols)> for all x."""
    n = cols.shape[0]
    h, w = output_size
    c = cols.shape[1] // (kernel_size[0] * kernel_size[1])
    out = np.zeros((n, c, h, w))
    for k in range(c * h * w):
        basis = np.zeros((1, c * h * w))
        basis[0, k] = 1
        columns = torch_free_unfold(basis.reshape(1, c, h, w), kernel_size, stride, padding, dilation)
        out.reshape(n, -1)[:, k] = (cols * columns).sum(axis=(1, 2))
    return out


@st.composite
def logits_case(draw):
    n, k = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    seed = draw(seeds)
    target = np.random.default_rng(seed + 1).integers(0, k, size=n)
    return [uniform(seed, (n, k), -3, 3)], {"target": target, "reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


def cross_entropy_ref(logits, target, reduction):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return reduce_ref(-log_p[np.arange(len(target)), target], reduction)


def reduce_ref(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](loss)


@st.composite
def pair_case(draw, target_low=-2.0, target_high=2.0, apart=False):
    shape = draw(small_shapes)
    seed = draw(seeds)
    x, t = uniform(seed, shape, -3, 3), uniform(seed + 1, shape, target_low, target_high)
    if apart:  # |x - t| has a kink where they meet
        x = np.where(np.abs(x - t) < 0.1, t + 0.2, x)
    return [x, t], {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


def bce_ref(x, t, reduction):
    return reduce_ref(np.logaddexp(0, x) - t * x, reduction)


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@st.composite
def softmax_case(draw):
    shape = draw(nonempty_shapes)
    return [uniform(draw(seeds), shape, -3, 3)], {"axis": draw(st.integers(-len(shape), len(shape) - 1))}


def sigmoid_ref(x):
    return 1 / (1 + np.exp(-x))


def logsumexp_ref(x, axis, keepdims):
    m = x.max(axis=np_axis(axis), keepdims=True)
    out = np.log(np.exp(x - m).sum(axis=np_axis(axis), keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=np_axis(axis)) if axis is not None else out.reshape(())


def norm_fn(x, p, axis, keepdims):
    return F.norm(x, p, axis, keepdims)


def norm_ref(x, p, axis, keepdims):
    if p == float("inf"):
        return np.max(np.abs(x), axis=np_axis(axis), keepdims=keepdims)
    return np.sum(np.abs(x) ** p, axis=np_axis(axis), keepdims=keepdims) ** (1 / p)


@st.composite
def conv_case(draw, transposed=False, bias=False):
    """A convolution with random stride, padding, dilation, groups (and output_padding),
    odd sizes, and sometimes a non-contiguous input."""
    groups = draw(st.integers(1, 2))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    n = draw(st.integers(1, 2))
    seed = draw(seeds)
    params = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
              "impl": draw(st.sampled_from(["ref", None]))}
    if transposed:
        h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        params["output_padding"] = tuple(draw(st.integers(0, s - 1)) for s in stride)
        # padding crops the output: keep at least one pixel
        params["padding"] = tuple(min(p, ((size - 1) * s + d * (k - 1) + op) // 2) for p, size, s, d, k, op in
                                  zip(padding, (h, w), stride, dilation, (kh, kw), params["output_padding"]))
        x, weight = uniform(seed, (n, cin, h, w)), uniform(seed + 1, (cin, cout // groups, kh, kw))
    else:
        h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 6))
        w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 6))
        x, weight = uniform(seed, (n, cin, h, w)), uniform(seed + 1, (cout, cin // groups, kh, kw))
    if draw(st.booleans()):
        x = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)  # same values, not C-contiguous
    arrays = [x, weight] + ([uniform(seed + 2, (cout,))] if bias else [])
    return arrays, params


def conv2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, impl=None):
    """Cross-correlation by its definition, one output position at a time."""
    n, c, h, wd = x.shape
    o, c_per_group, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    o_per_group = o // groups
    y = np.zeros((n, o, oh, ow))
    for g in range(groups):
        xs, ws = padded[:, g * c_per_group:(g + 1) * c_per_group], w[g * o_per_group:(g + 1) * o_per_group]
        for i in range(oh):
            for j in range(ow):
                patch = xs[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
                y[:, g * o_per_group:(g + 1) * o_per_group, i, j] = np.einsum("nckl,ockl->no", patch, ws)
    return y if b is None else y + b[None, :, None, None]


def conv_transpose2d_ref(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                         groups=1, impl=None):
    """Transposed convolution by its definition: every input pixel adds W, scaled, at its window."""
    n, c, h, wd = x.shape
    _, o_per_group, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    height = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    width = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    c_per_group = c // groups
    y = np.zeros((n, o_per_group * groups, height, width))
    for g in range(groups):
        for i in range(h):
            for j in range(wd):
                for a in range(kh):
                    for bb in range(kw):
                        r, q = i * sh + a * dh - ph, j * sw + bb * dw - pw
                        if 0 <= r < height and 0 <= q < width:
                            y[:, g * o_per_group:(g + 1) * o_per_group, r, q] += (
                                x[:, g * c_per_group:(g + 1) * c_per_group, i, j]
                                @ w[g * c_per_group:(g + 1) * c_per_group, :, a, bb])
    return y if b is None else y + b[None, :, None, None]


@st.composite
def weight_grad_case(draw):
    [x, w], params = draw(conv_case())
    gy = uniform(draw(seeds), conv2d_ref(x, w, **params).shape)
    return [x, gy], {**params, "weight_shape": w.shape}


def conv2d_weight_grad_ref(x, gy, weight_shape, stride, padding, dilation, groups, impl=None):
    """d<gy, conv2d(x, W)>/dW by its definition: a sum over the batch and the output positions."""
    o, c_per_group, kh, kw = weight_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o_per_group = o // groups
    gw = np.zeros(weight_shape)
    for g in range(groups):
        for a in range(kh):
            for b in range(kw):
                taps = padded[:, g * c_per_group:(g + 1) * c_per_group,
                              a * dh:a * dh + sh * (gy.shape[2] - 1) + 1:sh, b * dw:b * dw + sw * (gy.shape[3] - 1) + 1:sw]
                gw[g * o_per_group:(g + 1) * o_per_group, :, a, b] = np.einsum(
                    "nohw,nchw->oc", gy[:, g * o_per_group:(g + 1) * o_per_group], taps)
    return gw


@st.composite
def linear_case(draw, bias=True):
    batch = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    seed = draw(seeds)
    arrays = [uniform(seed, batch + (n_in,)), uniform(seed + 1, (n_out, n_in))]
    return arrays + [uniform(seed + 2, (n_out,))] * bias, {}


@st.composite
def linear_leaky_relu_case(draw):
    """linear_case's arrays with the bias moved so that no output of the product sits
    within 0.1 of the activation's kink, where finite differences would straddle it."""
    arrays, _ = draw(linear_case())
    x, w, b = arrays
    products = (x @ w.T).reshape(-1, w.shape[0])
    for j in range(w.shape[0]):
        # the bias nearest its drawn value whose outputs all clear the kink
        candidates = b[j] + np.arange(-40, 41) * 0.05
        clear = [c for c in candidates if np.all(np.abs(products[:, j] + c) > 0.1)]
        b[j] = min(clear, key=lambda c: abs(c - b[j]))
    slope = draw(st.sampled_from([0.0, 0.2, 1.0]))
    return [x, w, b], {"negative_slope": slope}


def linear_leaky_relu_ref(x, w, b, negative_slope):
    y = x @ w.T + b
    return np.where(y > 0, y, negative_slope * y)


@st.composite
def embedding_case(draw):
    vocab, dim = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    index_shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))
    indices = np.random.default_rng(draw(seeds)).integers(0, vocab, size=index_shape)
    return [uniform(draw(seeds), (vocab, dim))], {"indices": indices}


@st.composite
def norm_layer_case(draw, kind, training=True):
    """Input, weight and bias for batch/instance/layer norm, with enough values per statistic."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = draw(st.sampled_from([(), (2,), (2, 3), (3, 1)] if kind == "batch" else [(2, 2), (3, 1), (1, 4)]))
    if kind == "batch" and n * int(np.prod(spatial)) < 2:
        n = 2
    shape = (n, c) + spatial
    seed = draw(seeds)
    x = uniform(seed, shape, -2, 2)
    if kind == "layer":
        normalized = shape[-draw(st.integers(1, 2)):]
        if int(np.prod(normalized)) < 2:
            normalized = shape[-2:]
        return [x, uniform(seed + 1, normalized, 0.5, 1.5), uniform(seed + 2, normalized)], \
            {"normalized_shape": normalized}
    params = {}
    if kind == "batch":
        params["training"] = training
        if not training:
            params["running"] = (uniform(seed + 3, (c,)), uniform(seed + 4, (c,), 0.5, 2.0))
    return [x, uniform(seed + 1, (c,), 0.5, 1.5), uniform(seed + 2, (c,))], params


def batch_norm_fn(x, w, b, training, running=None):
    rm, rv = (None, None) if running is None else (gf.tensor(running[0], dtype=x.dtype, device=x.device),
                                                   gf.tensor(running[1], dtype=x.dtype, device=x.device))
    return F.batch_norm(x, rm, rv, w, b, training=training)


def synchronized_batch_norm_fn(x, w, b, training):
    """Batch norm over every rank's samples (distributed.py), here with one rank: the
    Allreduces are the identity, the rest must be batch norm."""
    return gf.distributed.batch_norm(x, None, None, w, b, 0.1, 1e-5, gf.distributed.World())


def batch_norm_ref(x, w, b, training, running=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    view = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    else:
        mean, var = running[0].reshape(view), running[1].reshape(view)
    return (x - mean) / np.sqrt(var + eps) * w.reshape(view) + b.reshape(view)


def instance_norm_ref(x, w, b, eps=1e-5):
    axes = tuple(range(2, x.ndim))
    view = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y * w.reshape(view) + b.reshape(view)


@st.composite
def group_norm_case(draw):
    groups, per_group = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    shape = (draw(st.integers(1, 2)), groups * per_group) + tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if int(np.prod(shape[1:])) // groups < 2:  # a group of one value has no spread to normalize
        shape = shape[:2] + (2,)
    seed = draw(seeds)
    arrays = [uniform(seed, shape)]
    if draw(st.booleans()):
        arrays += [uniform(seed + 1, shape[1:2], 0.5, 1.5), uniform(seed + 2, shape[1:2])]
    return arrays, {"num_groups": groups}


def group_norm_ref(x, w=None, b=None, num_groups=1, eps=1e-5):
    g = x.reshape(x.shape[0], num_groups, -1)
    y = ((g - g.mean(axis=2, keepdims=True)) / np.sqrt(g.var(axis=2, keepdims=True) + eps)).reshape(x.shape)
    if w is not None:
        channel = (-1,) + (1,) * (x.ndim - 2)
        y = y * w.reshape(channel) + b.reshape(channel)
    return y


def layer_norm_ref(x, w, b, normalized_shape, eps=1e-5):
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps) * w + b


@st.composite
def dropout_case(draw):
    [x], _ = draw(unary(shapes=nonempty_shapes))
    return [x], {"p": draw(st.sampled_from([0.0, 0.3, 0.7])), "seed": draw(st.integers(0, 100))}


def dropout_ref(x, p, seed):
    keep = np.random.default_rng(seed).random(x.shape) >= p
    return x * keep / (1 - p)


@st.composite
def interpolate_case(draw, mode, align_corners=False):
    n, c, h, w = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    if draw(st.booleans()):
        params = {"size": (draw(st.integers(1, 8)), draw(st.integers(1, 8)))}
    else:
        params = {"scale_factor": draw(st.sampled_from([2, 3, (2, 1)]))}
    corners = {"align_corners": True} if align_corners else {}
    return [uniform(draw(seeds), (n, c, h, w))], {**params, "mode": mode, **corners}


def interpolate_ref(x, mode, size=None, scale_factor=None, align_corners=False):
    """Resampling by the definition: nearest takes floor(i * in/out); bilinear mixes the two
    neighbours of (i + 0.5) * in/out - 0.5 (clamped at 0), or of i (in - 1)/(out - 1) with
    align_corners, one axis after the other."""
    if size is None:
        factors = (scale_factor, scale_factor) if np.isscalar(scale_factor) else scale_factor
        size = tuple(int(n * f) for n, f in zip(x.shape[2:], factors))
    for axis, out in zip((2, 3), size):
        n_in = x.shape[axis]
        moved = np.moveaxis(x, axis, -1)
        result = np.empty(moved.shape[:-1] + (out,))
        for i in range(out):
            if mode == "nearest":
                result[..., i] = moved[..., min(int(np.floor(i * n_in / out)), n_in - 1)]
            else:
                if align_corners:
                    src = i * (n_in - 1) / (out - 1) if out > 1 else 0.0
                else:
                    src = max((i + 0.5) * n_in / out - 0.5, 0.0)
                low = min(int(np.floor(src)), n_in - 1)
                high, frac = min(low + 1, n_in - 1), src - low
                result[..., i] = moved[..., low] * (1 - frac) + moved[..., high] * frac
        x = np.moveaxis(result, -1, axis)
    return x


@st.composite
def bicubic_case(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(2, 6)), draw(st.integers(2, 6)))
    if draw(st.booleans()):
        params = {"size": (draw(st.integers(1, 9)), draw(st.integers(1, 9)))}
    else:
        params = {"scale_factor": draw(st.sampled_from([0.5, 2, (2, 0.5)]))}
    return [uniform(draw(seeds), shape)], params


def bicubic_ref(x, size=None, scale_factor=None):
    """MATLAB's imresize, one output pixel at a time: Keys' kernel (a = -0.5) around the
    source point (i + 0.5) / scale - 0.5, widened by 1/scale when shrinking, normalized
    to sum 1; taps beyond the border read the image mirrored (edge pixel repeated)."""
    def keys(t):
        t = abs(t)
        return 1.5 * t**3 - 2.5 * t**2 + 1 if t <= 1 else -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2 if t < 2 else 0.0

    if size is None:
        factors = (scale_factor, scale_factor) if np.isscalar(scale_factor) else scale_factor
        size = tuple(int(round(n * f)) for n, f in zip(x.shape[2:], factors))
    for axis, out in zip((2, 3), size):
        n_in = x.shape[axis]
        scale = out / n_in
        stretch = min(scale, 1.0)
        moved = np.moveaxis(x, axis, -1)
        result = np.zeros(moved.shape[:-1] + (out,))
        for i in range(out):
            center = (i + 0.5) / scale - 0.5
            taps = range(int(np.floor(center - 2 / stretch)) - 1, int(np.ceil(center + 2 / stretch)) + 2)
            weights = np.array([stretch * keys(stretch * (center - j)) for j in taps])
            for j, weight in zip(taps, weights / weights.sum()):
                j = j % (2 * n_in)
                result[..., i] += weight * moved[..., j if j < n_in else 2 * n_in - 1 - j]
        x = np.moveaxis(result, -1, axis)
    return x


@st.composite
def prelu_case(draw):
    [x], _ = draw(unary(kinks=[0.0], shapes=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=3)))
    slopes = draw(st.sampled_from([1, x.shape[1]]))
    return [x, uniform(draw(seeds), (slopes,), 0.05, 0.5)], {}


def prelu_ref(x, weight):
    weight = weight.reshape((-1,) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, weight * x)


@st.composite
def pool_case(draw, values="uniform"):
    k = draw(st.integers(1, 3))
    stride, padding = draw(st.sampled_from([None, 1, 2])), draw(st.integers(0, k // 2))
    h, w = draw(st.integers(max(1, k - 2 * padding), 6)), draw(st.integers(max(1, k - 2 * padding), 6))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w)
    x = distinct(draw(seeds), shape) if values == "distinct" else uniform(draw(seeds), shape)
    return [x], {"kernel_size": k, "stride": stride, "padding": padding}


def pool_ref(x, reduce, kernel_size, stride, padding, fill=0.0):
    """`reduce` of each window, the padding filled with `fill`."""
    stride = kernel_size if stride is None else stride
    p = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    oh = (x.shape[2] + 2 * padding - kernel_size) // stride + 1
    ow = (x.shape[3] + 2 * padding - kernel_size) // stride + 1
    return np.array([[[[reduce(p[n, c, i * stride:i * stride + kernel_size, j * stride:j * stride + kernel_size])
                        for j in range(ow)] for i in range(oh)] for c in range(x.shape[1])] for n in range(x.shape[0])])


@st.composite
def adaptive_pool_case(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    size = draw(st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.none() | st.integers(1, 4))))
    return [uniform(draw(seeds), shape)], {"output_size": size}


def adaptive_pool_ref(x, output_size):
    """PyTorch's bins by their definition: output (i, j) averages rows floor(i H/h) to
    ceil((i + 1) H/h) and the same for the columns."""
    h, w = (output_size, output_size) if isinstance(output_size, int) else output_size
    H, W = x.shape[2:]
    h, w = h or H, w or W
    out = np.empty(x.shape[:2] + (h, w))
    for i in range(h):
        for j in range(w):
            rows = slice(i * H // h, -(-(i + 1) * H // h))
            cols = slice(j * W // w, -(-(j + 1) * W // w))
            out[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return out


@st.composite
def normalize_case(draw):
    [x], params = draw(one_axis())
    x = away_from(x / 4, [0.0])  # |x| has a kink at 0 for p = 1
    return [x], {"p": draw(st.sampled_from([1.0, 2.0, 3.0])), "axis": params["axis"]}


@st.composite
def pixel_shuffle_case(draw):
    r = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)) * r * r, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return [uniform(draw(seeds), shape)], {"upscale_factor": r}


def pixel_shuffle_ref(x, upscale_factor):
    r = upscale_factor
    n, c, h, w = x.shape
    out = np.empty((n, c // (r * r), h * r, w * r))
    for k in range(c // (r * r)):
        for i in range(r):
            for j in range(r):
                out[:, k, i::r, j::r] = x[:, k * r * r + i * r + j]
    return out


@st.composite
def penalty_case(draw):
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=3))
    x = uniform(draw(seeds), shape, -1.0, 1.0)
    return [x], {"one_sided": draw(st.booleans()), "impl": draw(st.sampled_from(["ref", None]))}


def penalty_ref(g, one_sided, impl=None):
    norms = np.sqrt((g.reshape(g.shape[0], -1) ** 2).sum(axis=1))
    excess = np.maximum(norms - 1, 0) if one_sided else norms - 1
    return np.mean(excess ** 2)


@st.composite
def spectral_case(draw):
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=3))
    dim = draw(st.integers(0, len(shape) - 1))
    seed = draw(seeds)
    w = uniform(seed, shape, 0.5, 1.5)  # positive entries keep sigma away from 0
    u, v = uniform(seed + 1, shape[dim], 0.1, 1.0), uniform(seed + 2, w.size // shape[dim], 0.1, 1.0)
    return [w], {"u": u / np.linalg.norm(u), "v": v / np.linalg.norm(v), "dim": dim}


def spectral_ref(w, u, v, dim):
    matrix = np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)
    return w / (u @ matrix @ v)


# --- the table ---------------------------------------------------------------------------

SPECS = [
    OpSpec("add", binary(), F.add, np.add),
    OpSpec("sub", binary(), F.sub, np.subtract),
    OpSpec("mul", binary(), F.mul, np.multiply),
    OpSpec("div", binary(b_low=0.5, b_high=2.0), F.div, np.divide),
    OpSpec("neg", unary(), F.neg, np.negative),
    OpSpec("pow", pow_case(), pow_fn, pow_ref),
    OpSpec("exp", unary(), F.exp, np.exp),
    OpSpec("log", unary(0.3, 3.0), F.log, np.log),
    OpSpec("sqrt", unary(0.3, 3.0), F.sqrt, np.sqrt),
    OpSpec("abs", unary(kinks=[0.0]), F.abs, np.abs),
    OpSpec("clamp", clamp_case(), F.clamp, lambda x, min, max: np.clip(x, min, max)),
    OpSpec("maximum", binary(), F.maximum, np.maximum),
    OpSpec("minimum", binary(), F.minimum, np.minimum),
    OpSpec("where", where_case(), lambda a, b, condition: F.where(condition, a, b),
           lambda a, b, condition: np.where(condition, a, b)),
    OpSpec("sum", with_axis(), F.sum, lambda x, axis, keepdims: np.sum(x, axis=np_axis(axis), keepdims=keepdims)),
    OpSpec("mean", with_axis(), F.mean, lambda x, axis, keepdims: np.mean(x, axis=np_axis(axis), keepdims=keepdims)),
    OpSpec("var", var_case(), F.var,
           lambda x, axis, keepdims, ddof: np.var(x, axis=np_axis(axis), keepdims=keepdims, ddof=ddof)),
    OpSpec("std", var_case(), F.std,
           lambda x, axis, keepdims, ddof: np.std(x, axis=np_axis(axis), keepdims=keepdims, ddof=ddof)),
    OpSpec("amax", with_axis(values="distinct"), F.amax,
           lambda x, axis, keepdims: np.max(x, axis=np_axis(axis), keepdims=keepdims)),
    OpSpec("amin", with_axis(values="distinct"), F.amin,
           lambda x, axis, keepdims: np.min(x, axis=np_axis(axis), keepdims=keepdims)),
    OpSpec("max", one_axis(), lambda x, axis, keepdims: F.max(x, axis, keepdims).values,
           lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims)),
    OpSpec("min", one_axis(), lambda x, axis, keepdims: F.min(x, axis, keepdims).values,
           lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims)),
    OpSpec("logsumexp", with_axis(), F.logsumexp, logsumexp_ref),
    OpSpec("norm", norm_case([2]), norm_fn, norm_ref, variant="2"),
    OpSpec("norm", norm_case([1, 3, float("inf")]), norm_fn, norm_ref, variant="p"),
    OpSpec("reshape", reshape_case(), F.reshape, np.reshape),
    OpSpec("permute", permute_case(), F.permute, np.transpose),
    OpSpec("transpose", permute_case(), lambda x, axes: F.transpose(x, axes), np.transpose),
    OpSpec("swapaxes", swapaxes_case(), F.swapaxes, lambda x, a, b: np.swapaxes(x, a, b)),
    OpSpec("getitem", index_case(), lambda x, index: x[index], lambda x, index: x[index]),
    OpSpec("getitem_grad", index_grad_case(), F.getitem_grad, getitem_grad_ref),
    OpSpec("concat", concat_case(), lambda *xs, axis: F.concat(xs, axis), lambda *xs, axis: np.concatenate(xs, axis)),
    OpSpec("stack", stack_case(), lambda *xs, axis: F.stack(xs, axis), lambda *xs, axis: np.stack(xs, axis)),
    OpSpec("split", split_case(), lambda x, size, axis: F.split(x, size, axis), split_ref),
    OpSpec("pad", pad_case("constant"), F.pad, pad_ref, variant="constant"),
    OpSpec("pad", pad_case("reflect"), F.pad, pad_ref, variant="reflect"),
    OpSpec("pad", pytorch_pad_case(), F.pad, pytorch_pad_ref, variant="pytorch_tuple"),
    OpSpec("chunk", chunk_case(), F.chunk, chunk_ref),
    OpSpec("broadcast_to", broadcast_to_case(), F.broadcast_to, np.broadcast_to),
    OpSpec("sum_to", sum_to_case(), F.sum_to, sum_to_ref),
    OpSpec("flatten", flatten_case(), F.flatten, flatten_ref),
    OpSpec("squeeze", squeeze_case(), F.squeeze, lambda x, axis: np.squeeze(x, axis)),
    OpSpec("unsqueeze", unsqueeze_case(), F.unsqueeze, np.expand_dims),
    OpSpec("flip", flip_case(), F.flip, lambda x, axis: np.flip(x, axis)),
    OpSpec("matmul", matmul_case(), F.matmul, np.matmul),
    OpSpec("unfold", unfold_case("ref"), F.unfold, torch_free_unfold, variant="ref"),
    OpSpec("unfold", unfold_case("cpp"), F.unfold, torch_free_unfold, devices=("cpu",), variant="cpp"),
    OpSpec("fold", fold_case("ref"), F.fold, fold_ref, variant="ref"),
    OpSpec("fold", fold_case("cpp"), F.fold, fold_ref, devices=("cpu",), variant="cpp"),
    OpSpec("conv2d", conv_case(), lambda x, w, **p: F.conv2d(x, w, None, **p), conv2d_ref),
    OpSpec("conv2d", conv_case(bias=True), lambda x, w, b, **p: F.conv2d(x, w, b, **p), conv2d_ref, variant="bias"),
    OpSpec("conv_transpose2d", conv_case(transposed=True), lambda x, w, **p: F.conv_transpose2d(x, w, None, **p),
           conv_transpose2d_ref),
    OpSpec("conv_transpose2d", conv_case(transposed=True, bias=True),
           lambda x, w, b, **p: F.conv_transpose2d(x, w, b, **p), conv_transpose2d_ref, variant="bias"),
    OpSpec("conv2d_weight_grad", weight_grad_case(), F.conv2d_weight_grad, conv2d_weight_grad_ref),
    OpSpec("linear", linear_case(), F.linear, lambda x, w, b: x @ w.T + b),
    OpSpec("linear", linear_case(bias=False), F.linear, lambda x, w: x @ w.T, variant="no_bias"),
    OpSpec("linear_leaky_relu", linear_leaky_relu_case(), F.linear_leaky_relu, linear_leaky_relu_ref),
    OpSpec("embedding", embedding_case(), lambda w, indices: F.embedding(indices, w), lambda w, indices: w[indices]),
    OpSpec("batch_norm", norm_layer_case("batch"), batch_norm_fn, batch_norm_ref, variant="train"),
    OpSpec("batch_norm", norm_layer_case("batch", training=False), batch_norm_fn, batch_norm_ref, variant="eval"),
    OpSpec("synchronized_batch_norm", norm_layer_case("batch"), synchronized_batch_norm_fn, batch_norm_ref),
    OpSpec("instance_norm", norm_layer_case("instance"), F.instance_norm, instance_norm_ref),
    OpSpec("group_norm", group_norm_case(), lambda x, *affine, num_groups: F.group_norm(x, num_groups, *affine),
           group_norm_ref),
    OpSpec("layer_norm", norm_layer_case("layer"), lambda x, w, b, normalized_shape: F.layer_norm(x, normalized_shape, w, b),
           layer_norm_ref),
    OpSpec("dropout", dropout_case(), lambda x, p, seed: F.dropout(x, p, generator=gf.Generator(seed, x.device)),
           dropout_ref),
    OpSpec("interpolate", interpolate_case("nearest"), F.interpolate, interpolate_ref, variant="nearest"),
    OpSpec("interpolate", interpolate_case("bilinear"), F.interpolate, interpolate_ref, variant="bilinear"),
    OpSpec("interpolate", interpolate_case("bilinear", align_corners=True), F.interpolate, interpolate_ref,
           variant="bilinear_align_corners"),
    OpSpec("avg_pool2d", pool_case(), F.avg_pool2d, lambda x, **p: pool_ref(x, np.mean, **p)),
    OpSpec("max_pool2d", pool_case("distinct"), F.max_pool2d, lambda x, **p: pool_ref(x, np.max, **p, fill=-np.inf)),
    OpSpec("adaptive_avg_pool2d", adaptive_pool_case(), F.adaptive_avg_pool2d, adaptive_pool_ref),
    OpSpec("normalize", normalize_case(), F.normalize,
           lambda x, p, axis: x / np.maximum(np.sum(np.abs(x) ** p, axis=axis, keepdims=True) ** (1 / p), 1e-12)),
    OpSpec("pixel_shuffle", pixel_shuffle_case(), F.pixel_shuffle, pixel_shuffle_ref),
    OpSpec("bicubic_resize", bicubic_case(), F.bicubic_resize, bicubic_ref),
    OpSpec("relu", unary(kinks=[0.0]), F.relu, lambda x: np.maximum(x, 0)),
    OpSpec("leaky_relu", unary(kinks=[0.0]).map(lambda c: (c[0], {"negative_slope": 0.2})), F.leaky_relu,
           lambda x, negative_slope: np.where(x > 0, x, negative_slope * x)),
    OpSpec("leaky_relu", unary(kinks=[0.0]).map(lambda c: (c[0], {"negative_slope": 0.2, "gain": 2 ** 0.5})),
           F.leaky_relu, lambda x, negative_slope, gain: np.where(x > 0, x, negative_slope * x) * gain,
           variant="gain"),
    OpSpec("prelu", prelu_case(), F.prelu, prelu_ref),
    OpSpec("sigmoid", unary(-6, 6), F.sigmoid, sigmoid_ref),
    OpSpec("tanh", unary(-3, 3), F.tanh, np.tanh),
    OpSpec("softplus", unary(-6, 6).flatmap(lambda c: st.sampled_from([1.0, 2.0]).map(lambda b: (c[0], {"beta": b}))),
           F.softplus, lambda x, beta: np.logaddexp(0, beta * x) / beta),
    OpSpec("elu", unary(kinks=[0.0]).flatmap(lambda c: st.sampled_from([1.0, 0.5]).map(lambda a: (c[0], {"alpha": a}))),
           F.elu, lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))),
    OpSpec("log_softmax", softmax_case(), F.log_softmax, lambda x, axis: np.log(softmax_ref(x, axis))),
    OpSpec("softmax", softmax_case(), F.softmax, softmax_ref),
    OpSpec("cross_entropy", logits_case(), F.cross_entropy, cross_entropy_ref),
    OpSpec("binary_cross_entropy_with_logits", pair_case(0.0, 1.0), F.binary_cross_entropy_with_logits, bce_ref),
    OpSpec("gradient_penalty", penalty_case(), F.gradient_penalty, penalty_ref),
    OpSpec("spectral_normalize", spectral_case(), F.spectral_normalize, spectral_ref),
    OpSpec("mse_loss", pair_case(), F.mse_loss, lambda x, t, reduction: reduce_ref((x - t) ** 2, reduction)),
    OpSpec("l1_loss", pair_case(apart=True), F.l1_loss, lambda x, t, reduction: reduce_ref(np.abs(x - t), reduction)),
    # float32 rounding in the forward pass needs a larger step to be seen through.
    OpSpec("cast", unary(), lambda x: F.cast(x, np.float32), lambda x: x.astype(np.float32),
           check={"eps": 1e-3, "atol": 1e-4, "rtol": 1e-3}),
    OpSpec("clone", unary(), F.clone, np.copy),
    OpSpec("to_device", unary(), lambda x: F.to_device(F.to_device(x, "cuda") * 2, "cpu"), lambda x: 2 * x,
           devices=("cuda",), covers=("ToDevice",)),
]

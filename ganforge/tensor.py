"""Tensor: an array (NumPy or CuPy) with a gradient and a place in the graph."""
import numpy as np

from . import autograd, backend

_default_dtype = np.dtype(np.float32)


def get_default_dtype():
    return _default_dtype


def set_default_dtype(dtype):
    """The dtype of tensors made from Python floats (float32 unless changed)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"the default dtype must be a floating dtype, got {dtype}")
    _default_dtype = dtype


def _to_array(data, dtype=None, device=None):
    """An array on `device` from arrays, Tensors, scalars or nested lists."""
    if isinstance(data, Tensor):
        data = data._data
    if device is None:
        device = backend.device_of(data)
    xp = backend.xp_for(device)
    if dtype is None and not hasattr(data, "dtype"):
        # Python numbers and lists: floats become the default dtype (as in PyTorch).
        probe = np.asarray(data)
        dtype = _default_dtype if probe.dtype.kind == "f" else probe.dtype
    if backend.device_of(data) != backend.normalize_device(device):
        data = backend.to_device(data, device)
    return xp.asarray(data, dtype=dtype)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    `requires_grad=True` makes it a leaf whose `.grad` is filled by `backward()`.
    Ops on tensors that require grad record a graph (unless inside `no_grad()`).
    """

    # grad_buffer (unset unless given): an array that backward() accumulates this leaf's
    # gradient into, a view of data-parallel training's flat buffer (distributed.py)
    __slots__ = ("_data", "grad", "_requires_grad", "creator", "_version", "_retains_grad", "grad_buffer",
                 "__weakref__")
    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        self._data = _to_array(data, dtype, device)
        self.grad = None
        self.creator = None
        self._version = 0
        self._retains_grad = False
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, requires_grad=False, creator=None):
        """A Tensor around an array the caller owns (no copy, no checks): the ops' fast path."""
        t = cls.__new__(cls)
        t._data = array
        t.grad = None
        t._requires_grad = requires_grad
        t.creator = creator
        t._version = 0
        t._retains_grad = False
        return t

    # --- what it is ---------------------------------------------------------------

    @property
    def data(self):
        """The underlying array (shares memory). Assigning to it counts as an in-place change."""
        return self._data

    @data.setter
    def data(self, array):
        array = _to_array(array, device=self.device)
        if array.shape != self.shape:
            raise ValueError(f"cannot assign data of shape {array.shape} to a tensor of shape {self.shape}")
        self._data = array
        self._version += 1

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        flag = bool(flag)
        if flag and self._data.dtype.kind not in "fc":
            raise TypeError(f"only floating-point tensors can require grad, this one is {self._data.dtype}; "
                            "convert it first, e.g. x.float()")
        if not flag and self.creator is not None:
            raise RuntimeError("requires_grad can only be turned off on a leaf tensor; use detach()")
        self._requires_grad = flag

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        return self.creator is None

    @property
    def shape(self):
        return self._data.shape

    @property
    def ndim(self):
        return self._data.ndim

    def size(self, dim=None):
        """The shape, or its length along `dim` (PyTorch's meaning; NumPy's `size`, the
        number of elements, is `numel()`)."""
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self):
        """The number of elements."""
        return self._data.size

    def dim(self):
        return self._data.ndim

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def device(self):
        return backend.device_of(self._data)

    @property
    def xp(self):
        return backend.xp_of(self._data)

    def __repr__(self):
        grad = ", requires_grad=True" if self._requires_grad else ""
        dev = "" if self.device == "cpu" else ", device='cuda'"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{dev}{grad})"

    # --- leaving the graph ----------------------------------------------------------

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._wrap(self._data)

    def numpy(self):
        """The data as a NumPy array (a view on the CPU, a copy from the GPU)."""
        return self._data.get() if self.device == "cuda" else np.asarray(self._data)

    def __dlpack__(self, *args, **kwargs):
        """DLPack export (np.from_dlpack(x), torch.from_dlpack(x), cupy.from_dlpack(x)):
        zero-copy, so, as in PyTorch, only for a tensor outside the graph."""
        if self._requires_grad:
            raise RuntimeError("cannot export a tensor that requires grad through DLPack (the other library "
                               "would not see the graph): pass x.detach()")
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self._data.item()

    def tolist(self):
        return self.numpy().tolist()

    def clone(self):
        return F.clone(self)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        autograd.backward(self, gradient, retain_graph, create_graph, inputs)

    def retain_grad(self):
        """Keep `.grad` for this non-leaf tensor during backward()."""
        if not self._requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        self._retains_grad = True
        return self

    # --- conversions ----------------------------------------------------------------

    def astype(self, dtype):
        return F.cast(self, dtype)

    def float(self):
        return F.cast(self, np.float32)

    def double(self):
        return F.cast(self, np.float64)

    def to(self, device=None, dtype=None):
        out = self if device is None else F.to_device(self, device)
        return out if dtype is None else F.cast(out, dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    # --- in-place changes -----------------------------------------------------------
    # Allowed on tensors outside the graph (data, buffers) and, under no_grad(), on
    # parameters (optimizer updates). Each bumps the version counter, so a graph that
    # saved the old value refuses to backward instead of giving a wrong gradient.

    def _inplace(self, array_update):
        if self._requires_grad and autograd.is_grad_enabled():
            kind = "a leaf tensor that requires grad" if self.is_leaf else "a tensor that is part of a graph"
            raise RuntimeError(f"in-place operation on {kind}: ganforge does not differentiate in-place "
                               "ops; use the out-of-place form, or wrap updates in gf.no_grad()")
        if not hasattr(self._data, "__setitem__"):  # a NumPy scalar from a 0-d op
            self._data = np.array(self._data)
        array_update(self._data)
        self._version += 1
        return self

    @staticmethod
    def _array(value):
        return value._data if isinstance(value, Tensor) else value

    def __setitem__(self, index, value):
        value = self._array(value)

        def update(a):
            a[Tensor._index(index)] = value
        self._inplace(update)

    def copy_(self, src):
        src = _to_array(src, dtype=self.dtype, device=self.device)

        def update(a):
            a[...] = src
        return self._inplace(update)

    def fill_(self, value):
        return self._inplace(lambda a: a.fill(value))

    def zero_(self):
        return self.fill_(0)

    def add_(self, other, alpha=1):
        other = self._array(other)
        return self._inplace(lambda a: self.xp.add(a, other if alpha == 1 else alpha * other, out=a,
                                                    casting="unsafe"))

    def sub_(self, other):
        other = self._array(other)
        return self._inplace(lambda a: self.xp.subtract(a, other, out=a, casting="unsafe"))

    def mul_(self, other):
        other = self._array(other)
        return self._inplace(lambda a: self.xp.multiply(a, other, out=a, casting="unsafe"))

    def div_(self, other):
        other = self._array(other)
        return self._inplace(lambda a: self.xp.divide(a, other, out=a, casting="unsafe"))

    def clamp_(self, min=None, max=None):
        return self._inplace(lambda a: self.xp.clip(a, min, max, out=a))

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    # --- operators (each one an op from ganforge.functional) ------------------------

    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __pow__(self, exponent):
        return F.pow(self, exponent)

    def __rpow__(self, base):
        return F.pow(base, self)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        return F.matmul(other, self)

    def __neg__(self):
        return F.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return F.abs(self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    @staticmethod
    def _index(index):
        """An index with Tensors replaced by their arrays."""
        if isinstance(index, tuple):
            return tuple(i._data if isinstance(i, Tensor) else i for i in index)
        return index._data if isinstance(index, Tensor) else index

    # Comparisons give boolean tensors outside the graph, as in PyTorch.
    def _compare(self, other, op):
        return Tensor._wrap(op(self._data, self._array(other)))

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    __hash__ = object.__hash__

    def __bool__(self):
        if self.numel() != 1:
            raise ValueError(f"the truth value of a tensor with shape {self.shape} is ambiguous; "
                             "use .any() or .all()")
        return bool(self._data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def any(self):
        return bool(self._data.any())

    def all(self):
        return bool(self._data.all())

    def argmax(self, axis=None, keepdims=False):
        return F.argmax(self, axis, keepdims)

    def argmin(self, axis=None, keepdims=False):
        return F.argmin(self, axis, keepdims)

    # --- methods that mirror functional ---------------------------------------------

    def sum(self, axis=None, keepdims=False):
        return F.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return F.mean(self, axis, keepdims)

    def var(self, axis=None, keepdims=False, ddof=1, *, unbiased=None):
        return F.var(self, axis, keepdims, ddof, unbiased=unbiased)

    def std(self, axis=None, keepdims=False, ddof=1, *, unbiased=None):
        return F.std(self, axis, keepdims, ddof, unbiased=unbiased)

    def amax(self, axis=None, keepdims=False):
        return F.amax(self, axis, keepdims)

    def amin(self, axis=None, keepdims=False):
        return F.amin(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        """PyTorch's: the largest element; along a dim, (values, indices); see functional.max."""
        return F.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return F.min(self, axis, keepdims)

    def logsumexp(self, axis=None, keepdims=False):
        return F.logsumexp(self, axis, keepdims)

    def norm(self, p=2, axis=None, keepdims=False):
        return F.norm(self, p, axis, keepdims)

    def reshape(self, *shape):
        return F.reshape(self, _sizes(shape))

    view = reshape

    def transpose(self, *axes):
        return F.transpose(self, *axes)

    def permute(self, *axes):
        return F.permute(self, _sizes(axes))

    @property
    def T(self):
        return F.permute(self, tuple(reversed(range(self.ndim))))

    def flatten(self, start_dim=0, end_dim=-1):
        return F.flatten(self, start_dim, end_dim)

    def squeeze(self, axis=None):
        return F.squeeze(self, axis)

    def unsqueeze(self, axis):
        return F.unsqueeze(self, axis)

    def flip(self, axis):
        return F.flip(self, axis)

    def broadcast_to(self, shape):
        return F.broadcast_to(self, shape)

    def expand(self, *sizes):
        """PyTorch's broadcast: sizes as arguments or one tuple, -1 keeping a dim's size."""
        sizes = _sizes(sizes)
        kept = (None,) * (len(sizes) - self.ndim) + self.shape
        return F.broadcast_to(self, tuple(k if s == -1 else s for s, k in zip(sizes, kept)))

    def repeat(self, *repeats):
        """Tile: the tensor repeated `repeats[i]` times along dim i (PyTorch's repeat, NumPy's tile)."""
        repeats = _sizes(repeats)
        if len(repeats) < self.ndim:
            raise ValueError(f"repeat needs a count for each of the {self.ndim} dims, got {repeats}")
        x = F.reshape(self, (1,) * (len(repeats) - self.ndim) + self.shape)
        # broadcast a new axis before each dim to its count, then merge each pair
        spread = F.broadcast_to(F.reshape(x, sum(((1, n) for n in x.shape), ())),
                                sum(((r, n) for r, n in zip(repeats, x.shape)), ()))
        return F.reshape(spread, tuple(r * n for r, n in zip(repeats, x.shape)))

    def split(self, split_size_or_sections, axis=0):
        return F.split(self, split_size_or_sections, axis)

    def chunk(self, chunks, axis=0):
        return F.chunk(self, chunks, axis)

    def add(self, other, alpha=1):
        return F.add(self, other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return F.sub(self, other if alpha == 1 else other * alpha)

    def mul(self, other):
        return F.mul(self, other)

    def div(self, other):
        return F.div(self, other)

    def neg(self):
        return F.neg(self)

    def softmax(self, axis):
        return F.softmax(self, axis)

    def log_softmax(self, axis):
        return F.log_softmax(self, axis)

    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def sqrt(self):
        return F.sqrt(self)

    def abs(self):
        return F.abs(self)

    def clamp(self, min=None, max=None):
        return F.clamp(self, min, max)

    clip = clamp

    def pow(self, exponent):
        return F.pow(self, exponent)

    def matmul(self, other):
        return F.matmul(self, other)

    def relu(self):
        return F.relu(self)

    def sigmoid(self):
        return F.sigmoid(self)

    def tanh(self):
        return F.tanh(self)


# --- factories ----------------------------------------------------------------------


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (an array, a Tensor, a number or nested lists)."""
    array = _to_array(data, dtype, device)
    if array is data or (isinstance(data, Tensor) and array is data._data):
        array = array.copy()
    return Tensor(array, requires_grad=requires_grad)


def _sizes(args):
    """Sizes given PyTorch's two ways, f(2, 3) or f((2, 3)), as one tuple."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def _filled(fill, shape, dtype, device, requires_grad):
    shape = _sizes(shape)
    xp = backend.xp_for(device)
    array = xp.full(shape, fill, dtype=np.dtype(dtype or _default_dtype))
    return Tensor(array, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device="cpu", requires_grad=False):
    return _filled(0, shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device="cpu", requires_grad=False):
    return _filled(1, shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device="cpu", requires_grad=False):
    return _filled(fill_value, (shape,) if isinstance(shape, int) else (tuple(shape),), dtype, device,
                   requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return zeros(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return ones(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, device="cpu", requires_grad=False):
    if stop is None:
        start, stop = 0, start
    xp = backend.xp_for(device)
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, stop, step))
        dtype = _default_dtype if is_float else np.int64
    return Tensor(xp.arange(start, stop, step, dtype=dtype), requires_grad=requires_grad)


# --- randomness ---------------------------------------------------------------------
# One seeded generator for the whole process unless a Generator is passed, so that a
# run is reproducible from its seed (and its state can go into a checkpoint).


class Generator:
    """A seeded random source for one device; its state can be saved and restored.

    Numbers are drawn by NumPy on the host, also for 'cuda', and copied to the device:
    CuPy's generators cannot save their state, which a resumed run needs, and a seed then
    gives the same numbers on both devices. (GAN training draws little randomness per
    step, a batch of noise, so the copy costs little.)"""

    def __init__(self, seed=None, device="cpu"):
        self.device = backend.normalize_device(device)
        self.manual_seed(seed)

    def manual_seed(self, seed):
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        return self

    def get_state(self):
        return self._rng.bit_generator.state

    def set_state(self, state):
        self._rng.bit_generator.state = state

    def normal(self, shape, dtype):
        return backend.to_device(self._rng.standard_normal(shape, dtype=dtype), self.device)

    def uniform(self, shape, dtype):
        return backend.to_device(self._rng.random(shape, dtype=dtype), self.device)


_generators = {}


def default_generator(device="cpu"):
    device = backend.normalize_device(device)
    if device not in _generators:
        _generators[device] = Generator(None, device)
    return _generators[device]


def manual_seed(seed):
    """Seed the default generators of every device (as torch.manual_seed does)."""
    for device in set(_generators) | {"cpu"}:
        default_generator(device).manual_seed(seed)


def _random(kind, shape, dtype, device, requires_grad, generator):
    shape = _sizes(shape)
    dtype = np.dtype(dtype or _default_dtype)
    if dtype.kind != "f":
        raise TypeError(f"random tensors must be floating point, got {dtype}")
    gen = generator or default_generator(device)
    if gen.device != backend.normalize_device(device):
        raise ValueError(f"a generator for {gen.device!r} cannot make tensors on {device!r}")
    array = gen.normal(shape, dtype) if kind == "normal" else gen.uniform(shape, dtype)
    return Tensor(array, requires_grad=requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False, generator=None):
    """Standard normal samples."""
    return _random("normal", shape, dtype, device, requires_grad, generator)


def rand(*shape, dtype=None, device="cpu", requires_grad=False, generator=None):
    """Uniform samples on [0, 1)."""
    return _random("uniform", shape, dtype, device, requires_grad, generator)


DLPACK_CPU, DLPACK_CUDA = 1, 2  # DLPack's device types


def from_dlpack(external):
    """A Tensor sharing the memory of `external` (a NumPy, CuPy or PyTorch array, anything
    with __dlpack__): zero-copy, so writes to one show in the other."""
    if not hasattr(external, "__dlpack_device__"):
        raise TypeError(f"from_dlpack needs an object with __dlpack__ and __dlpack_device__ (a NumPy, CuPy or "
                        f"PyTorch array), got {type(external).__name__}")
    device_type = external.__dlpack_device__()[0]
    if device_type == DLPACK_CPU:
        return Tensor._wrap(np.from_dlpack(external))
    if device_type == DLPACK_CUDA:
        return Tensor._wrap(backend.xp_for("cuda").from_dlpack(external))
    raise ValueError(f"from_dlpack: DLPack device type {device_type} is neither the CPU (1) nor CUDA (2)")


def randn_like(t, dtype=None, requires_grad=False, generator=None):
    return randn(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad, generator=generator)


def rand_like(t, dtype=None, requires_grad=False, generator=None):
    return rand(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad, generator=generator)


from . import functional as F  # noqa: E402  (functional needs Tensor defined first)
from .pytorch_names import accept_pytorch_names_in  # noqa: E402

# x.sum(dim=1, keepdim=True) and the like, by the one mechanism functional uses
accept_pytorch_names_in(Tensor, list(vars(Tensor)))

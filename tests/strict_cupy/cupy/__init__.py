"""A strict stand-in for CuPy, for machines without a GPU (tests/test_devices.py).

Put this folder first on PYTHONPATH and ganforge sees a "cuda" device whose arrays are
NumPy arrays underneath, of their own type. Like CuPy, it refuses any operation that
mixes them with plain NumPy arrays (an index array excepted), and it gives 0-d arrays,
not scalars, from reductions. That is enough to find code that forgets to move an array
to the device, or back: the bug class that hides on a CPU-only machine.

It does not check CuPy's API (a NumPy function CuPy lacks passes here), its numerics,
or anything about kernels: the registry must be told `GANFORGE_KERNELS=ref`.
"""
import numpy as _np

__version__ = "strict stand-in"


class ndarray(_np.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host_arrays(inputs, ufunc.__name__)
        if "out" in kwargs:
            _refuse_host_arrays(kwargs["out"], ufunc.__name__)
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs)))

    def __array_function__(self, func, types, args, kwargs):
        _refuse_host_arrays(args, func.__name__)
        _refuse_host_arrays(tuple(kwargs.values()), func.__name__)
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, key):  # CuPy takes NumPy index arrays
        return _wrap(self.view(_np.ndarray)[_unwrap(key)])

    def __setitem__(self, key, value):
        _refuse_host_arrays((value,), "setitem")
        self.view(_np.ndarray)[_unwrap(key)] = _unwrap(value)

    def get(self):
        return _np.array(self.view(_np.ndarray))

    def __dlpack_device__(self):
        return (2, 0)  # DLPack's CUDA, device 0: what CuPy's arrays say


class _HostMemory:
    """A stand-in array's DLPack export, told as what it is underneath: host memory."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, *args, **kwargs):
        return self.array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return (1, 0)


def from_dlpack(array):
    """Zero-copy, as CuPy's: the stand-in's device memory is host memory."""
    return _wrap(_np.from_dlpack(_HostMemory(array)))


def _refuse_host_arrays(items, what):
    for item in items:
        if isinstance(item, (list, tuple)):
            _refuse_host_arrays(item, what)
        elif isinstance(item, _np.ndarray) and not isinstance(item, ndarray) and item.ndim > 0:
            raise TypeError(f"strict cupy: a NumPy array of shape {item.shape} reached {what} beside CuPy arrays")


def _unwrap(x):
    if isinstance(x, ndarray):
        return x.view(_np.ndarray)
    if isinstance(x, (tuple, list)):
        return type(x)(_unwrap(i) for i in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, _np.ndarray) and not isinstance(x, ndarray):
        return x.view(ndarray)
    if isinstance(x, _np.generic):
        return _np.asarray(x).view(ndarray)
    if isinstance(x, (tuple, list)):
        return type(x)(_wrap(i) for i in x)
    return x


def asarray(a, dtype=None, **kwargs):
    """Host to device (a copy), or a dtype view of a device array."""
    return _wrap(_np.asarray(_unwrap(a), dtype=dtype) if isinstance(a, ndarray) else _np.array(a, dtype=dtype))


array = asarray


def asnumpy(a):
    return _np.array(_unwrap(a))


def __getattr__(name):
    """Every other NumPy function, refusing host arrays and giving device arrays."""
    target = getattr(_np, name)
    if not callable(target) or isinstance(target, type):
        return target

    def strict(*args, **kwargs):
        _refuse_host_arrays(args, name)
        return _wrap(target(*_unwrap(args), **_unwrap(kwargs)))
    return strict


class _Generator:
    def __init__(self, seed=None):
        self._rng = _np.random.default_rng(seed)

    def __getattr__(self, name):
        method = getattr(self._rng, name)
        return lambda *args, **kwargs: _wrap(method(*args, **kwargs))


class random:
    default_rng = _Generator


class cuda:
    class runtime:
        @staticmethod
        def getDeviceCount():
            return 1

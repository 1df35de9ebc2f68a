"""The GPU kernels beside this file: where their sources are, how they load, how arrays reach them.

Two families, the same three kernels in each (transposed convolution and its gradient
convolutions, the spectral-norm power-iteration step, the fused gradient penalty):

- `triton/*.py`, loaded as modules. Triton decides when `triton.language` is first
  imported whether kernels are compiled for the GPU or run by its NumPy interpreter
  (TRITON_INTERPRET=1), so that is a choice for the whole process: compiled, the kernels
  take CuPy arrays; interpreted, NumPy arrays (how the tests run them without a GPU).
  Neither needs PyTorch: arrays are passed through the small adapters below, which give
  Triton the `data_ptr()` and `dtype` it asks of an argument.
- `cuda/*.cu`, plain `extern "C" __global__` functions compiled at run time by CuPy's
  RawModule (NVRTC). CMake also compiles them with nvcc when it is present, so a compile
  error fails the build on a machine with no GPU.

The sources are package data: a wheel, an editable install and a checkout read them here.
"""
import contextlib
import importlib.util
from pathlib import Path

import numpy as np

from ... import backend

def source_dir():
    """The directory that holds triton/ and cuda/."""
    return Path(__file__).resolve().parent


def cuda_sources():
    return sorted((source_dir() / "cuda").glob("*.cu"))


# --- Triton -------------------------------------------------------------------------

def interpreting():
    """True when Triton runs kernels in its interpreter (TRITON_INTERPRET=1 in the environment)."""
    return backend.env_flag("TRITON_INTERPRET")


def triton_available():
    """(ok, reason) for the registry: Triton imports, and there is a GPU to compile for or
    TRITON_INTERPRET=1 to run the kernels on NumPy arrays (picked on the CPU only by name)."""
    if not (interpreting() or backend.gpu_available()):
        return False, f"no CUDA device ({backend.cupy_unavailable_reason()}) and TRITON_INTERPRET is not set"
    try:
        import triton  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return False, f"Triton does not import ({type(exc).__name__}: {exc}); `pip install ganforge[gpu]`"
    return True, ""


_triton_modules = {}


def triton_module(name):
    """triton/<name>.py, loaded once."""
    if name not in _triton_modules:
        path = source_dir() / "triton" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"ganforge_triton_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _triton_modules[name] = module
    return _triton_modules[name]


class _DType:
    """A NumPy dtype spelled the way Triton's type mangling reads a tensor's dtype.
    One instance per dtype, kept for good: Triton caches what it learns from a dtype
    object by its identity, and a freed object's id can come back as another dtype."""

    _interned = {}

    @classmethod
    def of(cls, dtype):
        dtype = np.dtype(dtype)
        return cls._interned.setdefault(dtype, cls(dtype))

    def __init__(self, dtype):
        self.numpy = np.dtype(dtype)

    def __str__(self):
        return self.numpy.name

    __repr__ = __str__


class _HostStorage:
    """The interpreter asks a tensor for its storage, copies it to the host and back;
    for memory that already is on the host both copies are nothing."""

    def __init__(self, array):
        self.array = array

    def data_ptr(self):
        return self.array.ctypes.data

    def cpu(self):
        return self

    def copy_(self, other):
        return self


class HostArray:
    """A NumPy array as the Triton interpreter expects a tensor argument."""

    def __init__(self, array):
        if not (array.flags.c_contiguous or array.ndim == 0):
            raise ValueError("Triton kernels take contiguous arrays")
        self.array = array
        self.dtype = _DType.of(array.dtype)

    def data_ptr(self):
        return self.array.ctypes.data

    def untyped_storage(self):
        return _HostStorage(self.array)

    def storage_offset(self):
        return 0

    def size(self):
        return self.array.shape

    def stride(self):
        return tuple(s // self.array.itemsize for s in self.array.strides)

    def new_empty(self, *shape, **kwargs):
        return HostArray(self.array)

    def set_(self, storage, offset, size, stride):
        return self  # host memory: the "copy" is the array itself


class DeviceArray:
    """A CuPy array as a compiled Triton kernel expects a tensor argument."""

    def __init__(self, array):
        if not array.flags.c_contiguous:
            raise ValueError("Triton kernels take contiguous arrays")
        self.array = array
        self.dtype = _DType.of(array.dtype)

    def data_ptr(self):
        return self.array.data.ptr


@contextlib.contextmanager
def launching_on(driver, current_stream):
    """Triton enqueues a compiled kernel on the stream `driver.get_current_stream(device)`
    names, which is PyTorch's current stream when PyTorch is loaded and the device's
    default stream otherwise. For CuPy arrays the right one is CuPy's current stream (a
    `with cupy.cuda.Stream():` block included), so it is swapped in for ganforge's own
    launches, and put back after."""
    own = "get_current_stream" in vars(driver)
    previous = driver.get_current_stream
    driver.get_current_stream = lambda device=None: current_stream()
    try:
        yield
    finally:
        if own:
            driver.get_current_stream = previous
        else:
            del driver.get_current_stream


class TritonLaunch:
    """What a wrapper in triton/ needs to run on the arrays it was given: `xp`
    (numpy or cupy), the kernel module, and a call that launches a kernel with the arrays
    among its arguments passed through the adapter that suits them."""

    def __init__(self, name, *arrays):
        self.xp = backend.xp_of(*arrays)
        on_host = self.xp is np
        if on_host and not interpreting():
            raise RuntimeError("the Triton kernels run on NumPy arrays only in Triton's interpreter: set "
                               "TRITON_INTERPRET=1 before ganforge first imports Triton, or use CuPy arrays")
        if not on_host and interpreting():
            raise RuntimeError("TRITON_INTERPRET=1 is set, so the Triton kernels take NumPy arrays, not CuPy "
                               "arrays; unset it to run them on the GPU")
        self.adapter = HostArray if on_host else DeviceArray
        self.module = triton_module(name)

    def __call__(self, kernel, grid, *args, **meta):
        args = [self.adapter(a) if isinstance(a, np.ndarray) or backend.is_cupy_array(a) else a for a in args]
        if self.adapter is HostArray:
            kernel[grid](*args, **meta)
            return
        from triton.runtime import driver
        with launching_on(driver.active, lambda: backend.cupy().cuda.get_current_stream().ptr):
            kernel[grid](*args, **meta)


# --- CUDA ---------------------------------------------------------------------------

# The element types the CUDA kernels are instantiated for; the entry point of kernel
# `name` for float32 arrays is `name_f32`.
CUDA_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

_cuda_modules = {}


def cuda_available():
    if not backend.gpu_available():
        return False, f"no CUDA device ({backend.cupy_unavailable_reason()})"
    return True, ""


def nvrtc_options():
    """What CuPy's RawModule hands NVRTC besides the target architecture (the tests compile
    the sources with NVRTC and these options too)."""
    return ("--std=c++17", f"-I{source_dir() / 'cuda'}")


def cuda_function(source, name, dtype):
    """The `extern "C"` kernel `name` for `dtype` from cuda/<source>.cu, compiled by NVRTC once."""
    dtype = np.dtype(dtype)
    if dtype not in CUDA_SUFFIX:
        raise TypeError(f"the CUDA kernel {name} runs on float32 and float64 arrays, not {dtype}")
    if source not in _cuda_modules:
        cp = backend.cupy()
        code = (source_dir() / "cuda" / f"{source}.cu").read_text()
        _cuda_modules[source] = cp.RawModule(code=code, options=nvrtc_options())
    return _cuda_modules[source].get_function(f"{name}_{CUDA_SUFFIX[dtype]}")

"""Array backends: NumPy on the CPU, CuPy on CUDA devices.

CuPy is imported lazily, and only when asked for; a missing or broken CuPy never
breaks CPU use. Everything else in ganforge asks this module for `xp`, the array
module that owns a given array, instead of importing numpy or cupy directly.
"""
import os

import numpy as np

_cupy = None
_cupy_error = None


def env_flag(name):
    """True when environment variable `name` is set to 1, true, yes or on."""
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


# TF32: float32 products on an NVIDIA GPU's tensor cores with 10-bit mantissas, about 3e-4
# relative error (PyTorch's default for cuDNN convolutions). Off by default, so that
# float32 gives the same digits on every device; GANFORGE_TF32=1 or set_tf32(True) turns
# it on for the Triton convolutions.
_tf32 = env_flag("GANFORGE_TF32")


def set_tf32(enabled):
    """Let float32 convolutions on the GPU use TF32 tensor cores (True) or not (False)."""
    global _tf32
    _tf32 = bool(enabled)


def tf32_enabled():
    return _tf32


def cupy():
    """The cupy module, or None when it is not installed or has no usable device."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy as cp
            cp.cuda.runtime.getDeviceCount()
            _cupy = cp
        except Exception as exc:  # ImportError, no driver, no device: all mean "no GPU"
            _cupy_error = f"{type(exc).__name__}: {exc}"
    return _cupy


def cupy_unavailable_reason():
    cupy()
    return _cupy_error


def gpu_available():
    return cupy() is not None


def is_cupy_array(a):
    # Checking the type's module avoids importing cupy just to say "no".
    return type(a).__module__.startswith("cupy")


def xp_of(*arrays):
    """numpy or cupy: the module that owns these arrays (numpy if none is a cupy array)."""
    for a in arrays:
        if type(a) is not np.ndarray and is_cupy_array(a):
            return cupy()
    return np


def device_of(array):
    return "cuda" if is_cupy_array(array) else "cpu"


def xp_for(device):
    device = normalize_device(device)
    if device == "cpu":
        return np
    cp = cupy()
    if cp is None:
        raise RuntimeError(f"device 'cuda' was asked for but CuPy is not usable ({_cupy_error}); "
                           "install it with `pip install ganforge[gpu]` on a machine with an NVIDIA GPU")
    return cp


def normalize_device(device):
    if device is None:
        return "cpu"
    name = str(device).lower()
    if name == "gpu" or name.startswith("cuda"):
        return "cuda"
    if name == "cpu":
        return "cpu"
    raise ValueError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def to_device(array, device):
    """Copy an array to 'cpu' (NumPy) or 'cuda' (CuPy); no copy when it is already there."""
    device = normalize_device(device)
    if device == device_of(array):
        return array
    if device == "cpu":
        return array.get()
    return xp_for("cuda").asarray(array)


def scatter_add(target, index, values):
    """target[index] += values, accumulating over repeated indices (np.add.at semantics)."""
    if is_cupy_array(target):
        import cupyx
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)

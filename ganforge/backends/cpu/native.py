"""The compiled CPU module `ganforge._C`, if it was built.

When it is missing (a source checkout that was never built, a platform with no
compiler), ganforge runs on its NumPy reference kernels and `ganforge info` says so.
"""
import importlib
import importlib.util

_BUILD_HINT = "build it with `pip install -e .` (needs a C++17 compiler and CMake)"
_C, _error = None, None
if importlib.util.find_spec("ganforge._C") is None:
    _error = f"ganforge._C is not built; {_BUILD_HINT}"
else:
    try:
        _C = importlib.import_module("ganforge._C")
    except ImportError as exc:  # built for another Python, or a missing shared library
        _error = f"ganforge._C is present but does not load ({exc}); rebuild it: {_BUILD_HINT}"


def available():
    """(ok, reason) in the form the kernel registry expects."""
    return (_C is not None, _error or "")


def module():
    if _C is None:
        raise RuntimeError(_error)
    return _C


def set_flush_denormal(mode):
    """Flush denormal floats (below 1.2e-38 in float32) to zero on this thread and
    ganforge's kernel threads, as torch.set_flush_denormal does; True where it took effect
    (the compiled module on x86), False elsewhere. Products whose inputs hold denormals
    take the processor's slow path, 200x slower in NumPy's BLAS here: second-order graphs
    (the true unrolled GAN's) make such values. NumPy's own BLAS threads, started at
    import, keep their mode, so this helps most with one BLAS thread."""
    if _C is None or not hasattr(_C, "set_flush_denormal"):
        return False
    _C.set_flush_denormal(bool(mode))
    return True

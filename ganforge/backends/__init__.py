"""The fast implementations of the registry ops, one folder per backend.

Every op has a `ref` implementation, plain NumPy/CuPy beside its autograd Function in
ganforge/ops/. The folders here register faster twins of it (`cpp` in cpu/, `triton`
and `cuda` in gpu/), and ganforge/dispatch.py chooses among them.
"""
from . import cpu, gpu  # noqa: F401

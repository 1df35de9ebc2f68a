"""The GPU backend: hand-written kernels in two families (README.md beside this file).

triton/      the Triton kernels
cuda/        the CUDA kernels, compiled at run time by NVRTC
runtime.py   finds and loads them, passes arrays to them
kernels.py   the `triton` and `cuda` implementation of each registry op
"""
from . import kernels  # noqa: F401  (registers the `triton` and `cuda` implementations)

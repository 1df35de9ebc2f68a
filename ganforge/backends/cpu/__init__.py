"""The CPU backend: the compiled module's Python side.

native.py    loads ganforge._C (csrc/, built by CMake), or says why it cannot
kernels.py   the `cpp` implementation of each registry op
conv.py      the convolutions' routes (matrix product, gathered, unfolded)
gathered.py  the convolutions straight over the images, no im2col buffer
gemm.py      the matrix products on ganforge's AVX-512 GEMM
runtime.py   the process: the allocator, which BLAS kernels run
"""
from . import kernels  # noqa: F401  (registers the `cpp` implementations)

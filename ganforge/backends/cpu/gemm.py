"""The matrix products under the CPU convolutions (conv.py).

`NativeGemm` runs float32 products on ganforge's own AVX-512 GEMM (csrc/gemm.cpp), which
reads its operands through their strides, so a transposed or broadcast view costs no
copy; anything else (float64, a CPU without AVX-512) goes to NumPy.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import native


def numpy_sum_of_products(a, b):
    """sum over i of a[i] @ b[i], on NumPy's BLAS."""
    total = a[0] @ b[0]
    for a_i, b_i in zip(a[1:], b[1:]):
        total += a_i @ b_i
    return total


def _merged_batch(arrays):
    """3-D views (B, rows, cols) of same-shaped arrays whose leading axes can be flattened
    into one without a copy, or None when some stride pattern does not allow it."""
    lead = arrays[0].shape[:-2]
    if len(lead) == 1:
        return arrays
    views = []
    for x in arrays:
        size, stride = 1, 0
        for extent, step in reversed(list(zip(lead, x.strides[:-2]))):
            if extent == 1:
                continue
            if size > 1 and step != size * stride:
                return None
            if size == 1:
                stride = step
            size *= extent
        views.append(as_strided(x, (int(np.prod(lead)),) + x.shape[-2:], (stride,) + x.strides[-2:],
                                writeable=x.flags.writeable))
    return views


class NativeGemm:
    @staticmethod
    def usable(*arrays):
        return all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in arrays) \
            and native.available()[0] and native.module().gemm_supported()

    # Below this many rows (output channels, times the taps in a transposed convolution),
    # most of each 8-row register tile is wasted; those unfold, and NumPy's BLAS multiplies.
    # A thin depth or width (the 16 taps of a 1-channel image, in dcgan28's first layer and
    # in the last one's input and weight gradients) is no reason to unfold: gathered,
    # those ran 1.3-1.6x faster than im2col and a GEMM, or than NumPy's 64 per-sample
    # products for a weight gradient.
    GATHER_FROM = 8

    @classmethod
    def gathers(cls, *arrays, dims):
        """Whether a convolution whose GEMM is dims = (M, K, N) should run as one GEMM over
        gathered operands (gathered.py) rather than unfold and multiply."""
        return cls.usable(*arrays) and dims[0] >= cls.GATHER_FROM

    @staticmethod
    def _thin(a, b):
        """Fewer rows or columns than one 8 x 32 register tile (a matrix-vector product, a
        16-tap weight gradient): most of the tile would be wasted, and NumPy's BLAS has
        kernels for such shapes."""
        return a.shape[-2] < 8 or b.shape[-1] < 32

    @classmethod
    def matmul(cls, a, b):
        """a @ b with NumPy's broadcasting of leading axes."""
        if not cls.usable(a, b) or a.ndim < 2 or b.ndim < 2:
            return np.matmul(a, b)
        if cls._thin(a, b):
            a_t, b_t = a.swapaxes(-1, -2), b.swapaxes(-1, -2)
            if cls._thin(b_t, a_t):
                return np.matmul(a, b)
            # Thin one way, not the other (512 x 81 times 81 x 16, a 4x4 one-output layer's
            # weight gradient): (b^T a^T)^T here. On NumPy's BLAS a product that large is
            # split between threads, which then spin for a while and take a core from the
            # next convolution: CycleGAN's step at batch 1 ran 445 ms with
            # OPENBLAS_NUM_THREADS=1, 600-820 without, four such products a step.
            return cls.matmul(b_t, a_t).swapaxes(-1, -2)
        if a.ndim == b.ndim == 2:  # no leading axes to broadcast (their machinery costs ~10 us a call)
            out = np.empty((1, a.shape[0], b.shape[1]), dtype=np.float32)
            native.module().gemm(a[None], b[None], out)
            return out[0]
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) or (1,)
        out = np.empty(lead + (a.shape[-2], b.shape[-1]), dtype=np.float32)
        cls._into(np.broadcast_to(a, lead + a.shape[-2:]), np.broadcast_to(b, lead + b.shape[-2:]), out)
        return out.reshape(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + out.shape[-2:])

    @classmethod
    def _into(cls, a, b, out):
        merged = _merged_batch([a, b, out])
        if merged is None:  # the leading axes cannot be merged: one call per index of the first
            for a_i, b_i, out_i in zip(a, b, out):
                cls._into(a_i, b_i, out_i)
        else:
            native.module().gemm(*merged, accumulate=False)

    @classmethod
    def sum_of_products(cls, a, b):
        """sum over i of a[i] @ b[i] for a (B, M, K), b (B, K, N): the GEMM accumulates
        into one (M, N) output whose batch stride is 0."""
        if not cls.usable(a, b) or cls._thin(a, b):
            return numpy_sum_of_products(a, b)
        out = np.empty((a.shape[1], b.shape[2]), dtype=np.float32)
        native.module().gemm(a, b, as_strided(out, (a.shape[0],) + out.shape, (0,) + out.strides))
        return out

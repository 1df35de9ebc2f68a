"""Which kernels NumPy's OpenBLAS runs, for `ganforge info` and the benchmarks; and how
the C library's allocator treats freed memory (`hold_freed_memory`).

On a CPU with AVX-512, ganforge's float32 convolutions run on its own GEMM
(csrc/gemm.cpp); everything else that multiplies matrices (matmul, float64, CPUs without
AVX-512) runs on NumPy's BLAS, whose kernel set OpenBLAS picks from the CPU unless
OPENBLAS_CORETYPE names one. Naming an AVX2 set ("Haswell") on a CPU with AVX-512 halves
its GEMM throughput (on the development machine, 207 against about 390 GFLOP/s on 2 cores).
"""
import glob
import os

AVX512_FLAGS = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}  # what OpenBLAS's SkylakeX kernels use
AVX2_CORES = {"haswell", "zen", "sandybridge", "prescott", "nehalem", "core2", "excavator", "steamroller"}


def cpu_flags():
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_core():
    """The kernel set NumPy's OpenBLAS is running, as OpenBLAS names it, or None if unknown."""
    import ctypes

    import numpy as np
    for path in glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                     "openblas_get_corename"):
            function = getattr(lib, name, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode()
    return None


def blas_kernel_note():
    """One line on the BLAS kernels in use, with a hint when they are narrower than the CPU."""
    core = openblas_core()
    if core is None:
        return "kernel set unknown (not NumPy's bundled OpenBLAS)"
    note = f"OpenBLAS kernels: {core}"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if forced:
        note += f" (OPENBLAS_CORETYPE={forced})"
    if core.lower() in AVX2_CORES and AVX512_FLAGS <= cpu_flags():
        note += "; this CPU has AVX-512, whose kernels run NumPy's GEMMs about twice as fast: unset " \
                "OPENBLAS_CORETYPE or set it to SkylakeX"
    return note


# glibc's allocator hands an allocation over 128 KiB (its starting threshold, which it
# then moves) to mmap and gives freed memory at the top of its heaps back to the system,
# so the next array of a training step often lands on fresh pages, which the kernel
# must fault in and zero: measured 2,500 page faults and 5-8 ms of system time per
# dcgan28 step. With fixed thresholds, freed activations are reused in place: 81 faults
# and under 2 ms.
# Larger arrays (SRGAN's 96 px activations are 38 MB, its dense layer's weight gradient
# 75 MB) would still go to mmap, and come back as fresh pages every time: with mmap off
# they come from the heap too, which keeps up to TRIM_THRESHOLD free at its top (a step's
# worth of them). SRGAN's 96 px step: 10,000 -> 350 faults, 0.95 of its time (PyTorch's,
# in the same process, moved as much).
MMAP_THRESHOLD = 32 << 20  # glibc's largest dynamic threshold
MMAP_MAX = 0               # no allocation goes to mmap
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # glibc's mallopt() parameters


def hold_freed_memory():
    """Have glibc keep freed memory (up to TRIM_THRESHOLD per heap) for reuse, and serve
    every allocation from its heaps, none from mmap. This sets the whole process's
    allocator, so ganforge's command line does it and a library user may call it; True
    where it took effect (glibc), False elsewhere."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all([mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                mallopt(_M_MMAP_MAX, MMAP_MAX)])

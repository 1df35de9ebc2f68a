"""Run ganforge's CUDA kernels on the CPU (see emulate.h), through the same Python
wrappers that launch them with CuPy (ganforge/backends/gpu/kernels.py).

`compile_source(name, directory)` builds ganforge/backends/gpu/cuda/<name>.cu with g++ into a shared
library; `EmulatedKernel` is called as a CuPy RawKernel is, `kernel(grid, block, args)`,
and insists on the argument types CuPy would need: NumPy arrays for pointers and NumPy
scalars (np.int32, np.float32, ...) of the kernel's parameter types for the rest, since
a bare Python int or float would reach a real kernel with the wrong width.
"""
import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ganforge.backends.gpu import runtime as kernels

HERE = Path(__file__).resolve().parent

_SCALARS = [(np.int32, ctypes.c_int32), (np.int64, ctypes.c_int64), (np.uint64, ctypes.c_uint64),
            (np.float32, ctypes.c_float), (np.float64, ctypes.c_double)]


def entry_points(source_text):
    """The extern "C" kernel names a .cu file defines, both precisions."""
    names = re.findall(r"(\w+)_##SUFFIX\(", source_text)
    return [f"{name}_{suffix}" for name in names for suffix in ("f32", "f64")]


def compile_source(name, directory):
    compiler = shutil.which("g++")
    if compiler is None:
        raise RuntimeError("the CUDA emulator needs g++ (C++20)")
    cuda_dir = kernels.source_dir() / "cuda"
    source = cuda_dir / f"{name}.cu"
    directory = Path(directory)
    (directory / "kernel_list.h").write_text(
        "".join(f"GANFORGE_EMULATED({entry})\n" for entry in entry_points(source.read_text())))
    library = directory / f"{name}.so"
    command = [compiler, "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", f"-I{cuda_dir}", f"-I{directory}",
               "-include", str(HERE / "emulate.h"), "-include", str(source), str(HERE / "launch.cpp"),
               "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"emulator build of {source.name} failed:\n{result.stderr}")
    return ctypes.CDLL(str(library))


class EmulatedKernel:
    def __init__(self, library, name):
        self.library, self.name = library, name

    @staticmethod
    def _argument(value):
        if isinstance(value, np.ndarray):
            if not value.flags.c_contiguous:
                raise ValueError("kernels take contiguous arrays")
            return ctypes.c_void_p(value.ctypes.data)
        for numpy_type, c_type in _SCALARS:
            if isinstance(value, numpy_type):
                return c_type(value.item())
        raise TypeError(f"a kernel argument must be a NumPy array or a sized NumPy scalar, not "
                        f"{type(value).__name__} ({value!r})")

    def __call__(self, grid, block, args):
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        holders = [self._argument(a) for a in args]
        pointers = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p)
                                                      for h in holders])
        status = self.library.emulate_launch(self.name.encode(), ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]),
                                             ctypes.c_uint(grid[2]), ctypes.c_uint(int(block[0])), pointers)
        if status:
            raise KeyError(f"no kernel {self.name} in the emulated library")

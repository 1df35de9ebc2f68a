"""Compile every Triton kernel for real GPUs, on a machine without one.

The interpreter (tests/test_gpu_kernels.py) checks what the kernels compute, but it is
more lenient than the compiler: a kernel can pass there and still fail to compile. Triton
compiles for a named target with no device present, so this runs each wrapper in
ganforge/backends/gpu/triton with a launcher that records the launches instead of running them, turns
each recorded launch into a signature, and compiles it to a cubin for sm_80 and sm_90.

    python -m tests.triton_compile        (prints one JSON line per compiled kernel)

It must run without TRITON_INTERPRET (the kernels are then JIT functions, not
interpreted ones), so the tests call it in a subprocess.
"""
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

ARCHITECTURES = (80, 90)
# Keywords of a launch that are compile options, not the kernel's constexpr parameters.
LAUNCH_OPTIONS = ("num_warps", "num_stages")


class RecordingLaunch:
    """Stands in for ganforge.backends.gpu.runtime.TritonLaunch: records each launch, runs nothing."""

    def __init__(self, name):
        from ganforge.backends.gpu import runtime as kernels
        self.xp, self.module, self.launches = np, kernels.triton_module(name), []

    def __call__(self, kernel, grid, *args, **meta):
        self.launches.append((kernel.fn.__name__, args, meta))


def argument_type(value):
    if isinstance(value, np.ndarray):
        return {"float32": "*fp32", "float64": "*fp64"}[value.dtype.name]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, (int, np.integer)):
        return "i32"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {value!r}")


def recorded_launches():
    """(module, kernel name, signature, constexprs) for every distinct launch the wrappers make."""
    launches = {}
    for dtype in (np.float32, np.float64):
        conv = RecordingLaunch("conv")
        x, w = np.zeros((2, 4, 7, 7), dtype), np.zeros((4, 3, 4, 4), dtype)
        conv.module.conv2d(conv, x, np.zeros((6, 4, 3, 3), dtype), (5, 5), (1, 1), (0, 0), (1, 1), 1)
        conv.module.conv_transpose2d(conv, x, w, (14, 14), (2, 2), (1, 1), (1, 1), 1)  # phase GEMMs
        conv.module.conv_transpose2d(conv, x, w, (17, 17), (2, 2), (1, 1), (2, 2), 1)  # masked, dilated
        conv.module.conv2d_weight_grad(conv, x, np.zeros((2, 6, 5, 5), dtype), (6, 4, 3, 3), (1, 1), (0, 0),
                                       (1, 1), 1)
        # shapes large enough for the 128x128 tiles on 8 warps
        conv.module.conv2d(conv, np.zeros((2, 4, 82, 82), dtype), np.zeros((72, 4, 3, 3), dtype), (80, 80), (1, 1),
                           (0, 0), (1, 1), 1)
        conv.module.conv2d_weight_grad(conv, np.zeros((2, 8, 7, 7), dtype), np.zeros((2, 96, 5, 5), dtype),
                                       (96, 8, 3, 3), (1, 1), (0, 0), (1, 1), 1)
        norm = RecordingLaunch("spectral_norm")
        norm.module.power_iteration(norm, np.zeros((8, 16), dtype), np.zeros(8, dtype), 2, 1e-12, scale=True)
        for launch, module in ((conv, "conv"), (norm, "spectral_norm")):
            for name, args, meta in launch.launches:
                kernel = getattr(launch.module, name)
                signature = {arg: argument_type(value) for arg, value in zip(kernel.arg_names, args)}
                constexprs = {k: v for k, v in meta.items() if k not in LAUNCH_OPTIONS}
                options = {k: v for k, v in meta.items() if k in LAUNCH_OPTIONS}
                signature.update({arg: "constexpr" for arg in constexprs})
                key = (module, name, json.dumps(signature, sort_keys=True), json.dumps(meta, sort_keys=True))
                launches[key] = (module, name, signature, constexprs, options)
    return list(launches.values())


def compile_one(job):
    import triton
    from triton.backends.compiler import GPUTarget

    from ganforge.backends.gpu import runtime as kernels
    module, name, signature, constexprs, options, arch = job
    kernel = getattr(kernels.triton_module(module), name)
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    dtype = "fp64" if "*fp64" in signature.values() else "fp32"
    return {"kernel": name, "dtype": dtype, "constexprs": constexprs, "options": options, "arch": f"sm_{arch}",
            "cubin_bytes": len(compiled.asm["cubin"]), "num_warps": compiled.metadata.num_warps}


def main():
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("unset TRITON_INTERPRET: the kernels must be JIT functions to be compiled")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated
    jobs = [(*launch, arch) for launch in recorded_launches() for arch in ARCHITECTURES]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for result in pool.map(compile_one, jobs):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Two builds of ganforge's compiled module, A and B, timed in one process in turns.

On a host whose speed drifts by tens of percent (the development machine), two builds
timed one after the other in separate runs differ by more than most kernel changes do.
Here both are loaded side by side and alternate in blocks, each block warmed up for half a
second first (conftest.WARM_UP_S), and the ratio is that of the medians:

    python bench/ab_builds.py before.so after.so step:dcgan28      one training step
    python bench/ab_builds.py before.so after.so step:mlp_gan:256  one step of a builder in
                                                                     ganforge/gan/benchmarks.py
    python bench/ab_builds.py before.so after.so gemm:256x3136x2048  one float32 GEMM
    python bench/ab_builds.py before.so after.so conv:dcgan64-G4     one conv layer of bench/test_conv.py,
                                                                     forward and both gradients
    python bench/ab_builds.py a.so a.so:GANFORGE_SPIN_US=1000 step:dcgan28   one build, two settings
    python bench/ab_builds.py a.so a.so step:stylegan2:32 --a-kernels add=ref,mul=ref
                                                                     one build, A with some ops on
                                                                     their `ref` (GANFORGE_KERNELS)

A build is the `_C*.so` that `pip install -e .` or `cmake --build` makes; copy it aside
before rebuilding. `PATH:NAME=VALUE` sets an environment variable while that build
loads and runs its first kernels (the ones read once, such as GANFORGE_NUM_THREADS).

Why the loading is done by hand: Python keeps one extension module per name, so a second
import of `ganforge._C` from another file hands back the first. Each build is copied to
a file of its own, opened with its own dlopen, and its module created from its
PyModuleDef (pybind11's multi-phase init), so each has its own code and its own statics
(worker pool, thread counts).
"""
import argparse
import ctypes
import importlib.machinery
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from in_turns import BLOCK, in_turns  # noqa: E402  (the alternating blocks, as for the frameworks)


def load_build(spec, tag, folder):
    """The module in the .so file `spec` ("PATH" or "PATH:NAME=VALUE"), loaded as a copy of
    its own named ganforge._<tag>."""
    path, _, setting = spec.partition(":")
    if setting:
        name, _, value = setting.partition("=")
        os.environ[name] = value
    copy = os.path.join(folder, f"_C_{tag}.so")
    shutil.copy(path, copy)
    library = ctypes.PyDLL(copy, mode=os.RTLD_LOCAL | os.RTLD_NOW)
    init = library.PyInit__C
    init.restype = ctypes.c_void_p
    module_def = init()
    api = ctypes.pythonapi
    api.PyModule_FromDefAndSpec2.restype = ctypes.py_object
    api.PyModule_FromDefAndSpec2.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.c_int]
    api.PyModule_ExecDef.argtypes = [ctypes.py_object, ctypes.c_void_p]
    module_spec = importlib.machinery.ModuleSpec(f"ganforge._{tag}", None, origin=copy)
    module = api.PyModule_FromDefAndSpec2(module_def, module_spec, 1013)  # 1013: the C API version
    module.__spec__, module.__file__ = module_spec, copy
    if api.PyModule_ExecDef(module, module_def) != 0:
        raise ImportError(f"{path}: its module did not initialize")
    # The settings above are read once, when first needed: need them now, while set (the
    # kernel threads, and a GEMM large enough for the worker pool, which reads the rest).
    module.num_threads()
    module.gemm(np.ones((1, 256, 256), np.float32), np.ones((1, 256, 256), np.float32),
                np.empty((1, 256, 256), np.float32), accumulate=False)
    if setting:
        del os.environ[name]
    return module


def workload(what):
    """A function to time: step:MODEL (a benchmark model's training step; step:NAME:ARGS for
    a builder of ganforge/gan/benchmarks.py with its integer arguments), gemm:MxNxK or
    conv:LAYER (a layer of bench/test_conv.py, its name with a dash: dcgan28-G2)."""
    kind, _, arg = what.partition(":")
    if kind == "step":
        from ganforge.gan import benchmarks
        name, *sizes = arg.split(":")
        if sizes:  # a model with builder arguments in ganforge/gan/benchmarks.py: step:cyclegan:4
            return getattr(benchmarks, name)(*map(int, sizes))[1]
        return benchmarks.build(arg)[2]
    if kind == "gemm":
        from ganforge.backends.cpu import native
        m, n, k = map(int, arg.split("x"))
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((1, m, k), dtype=np.float32), rng.standard_normal((1, k, n), dtype=np.float32)
        c = np.empty((1, m, n), np.float32)
        return lambda: native.module().gemm(a, b, c, accumulate=False)
    if kind == "conv":
        from in_turns import conv_step
        from test_conv import LAYERS
        layer = {layer[0].replace(" ", "-"): layer for layer in LAYERS}.get(arg)
        if layer is None:
            raise SystemExit(f"unknown layer {arg!r}: one of {', '.join(layer[0].replace(' ', '-') for layer in LAYERS)}")
        return conv_step(layer, np.random.default_rng(0))[0]
    raise SystemExit(f"unknown workload {what!r}: step:MODEL, gemm:MxNxK or conv:LAYER")


def with_build(module, fn, kernels=None):
    """fn, run with `module` as the compiled module that every kernel call goes to, and
    GANFORGE_KERNELS set to `kernels` (the registry reads it on every call) or unset."""
    from ganforge.backends.cpu import native

    def run():
        native._C = module
        if kernels:
            os.environ["GANFORGE_KERNELS"] = kernels
        else:
            os.environ.pop("GANFORGE_KERNELS", None)
        fn()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="build A: PATH or PATH:NAME=VALUE")
    parser.add_argument("b", help="build B")
    parser.add_argument("what", help="step:MODEL, gemm:MxNxK or conv:LAYER")
    parser.add_argument("--blocks", type=int, default=10, help=f"blocks of {BLOCK} timed calls per build")
    parser.add_argument("--a-kernels", help="GANFORGE_KERNELS while A runs (add=ref,mul=ref: those ops on NumPy)")
    parser.add_argument("--b-kernels", help="GANFORGE_KERNELS while B runs")
    args = parser.parse_args()
    import ganforge.backends.cpu.runtime
    ganforge.backends.cpu.runtime.hold_freed_memory()
    with tempfile.TemporaryDirectory() as folder:
        fn = workload(args.what)
        a, b = in_turns(with_build(load_build(args.a, "A", folder), fn, args.a_kernels),
                        with_build(load_build(args.b, "B", folder), fn, args.b_kernels), args.blocks)
    print(f"{args.what}: A {a * 1e3:.2f} ms  B {b * 1e3:.2f} ms  B/A {b / a:.3f}")


if __name__ == "__main__":
    main()

"""A model's convolutions inside its training step, shape by shape, ganforge beside PyTorch.

    python bench/conv_shapes.py cyclegan 4
    python bench/conv_shapes.py srgan 16
    python bench/conv_shapes.py srgan 16 28 4 1      (size, scale, channels: Fashion-MNIST's)
    python bench/conv_shapes.py stylegan2 32

ganforge: every call of the compiled convolutions (conv2d, conv_transpose2d,
conv2d_weight_grad) in a step, timed at the kernel registry and grouped by op and
operand shapes. PyTorch: its twin's step (bench/torch_MODEL.py) under torch.profiler,
grouped by input shapes: aten::mkldnn_convolution is a forward, aten::convolution_backward
both gradients of a layer together. Timed inside the step on purpose: with its inputs in
cache a layer ran up to several times faster alone than in the step (docs/cyclegan.md), so
per-layer timings taken alone do not say where a step's time goes.
"""
import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CONVOLUTIONS = ("conv2d", "conv_transpose2d", "conv2d_weight_grad")


def ganforge_table(model, batch, steps, extra=()):
    """(total ms, calls) per step of each (op, operand shapes, geometry) in ganforge's step."""
    from ganforge import dispatch
    from ganforge.gan import benchmarks
    import ganforge.backends.cpu  # noqa: F401  (registers the compiled kernels)
    _, step = getattr(benchmarks, model)(batch, *extra)
    step()
    step()
    times, calls = collections.Counter(), collections.Counter()
    originals = {}
    for op in CONVOLUTIONS:
        kernel = dispatch.implementations(op)["cpp"]
        originals[op] = kernel.fn

        def timed(*args, op=op, fn=kernel.fn):
            key = (op,) + tuple(a.shape if hasattr(a, "shape") else a for a in args)
            start = time.perf_counter()
            result = fn(*args)
            times[key] += time.perf_counter() - start
            calls[key] += 1
            return result
        kernel.fn = timed
    dispatch._resolved.clear()
    try:
        for _ in range(steps):
            step()
    finally:
        for op, fn in originals.items():
            dispatch.implementations(op)["cpp"].fn = fn
        dispatch._resolved.clear()
    return {key: (times[key] * 1e3 / steps, calls[key] // steps) for key in times}


def torch_table(model, batch, steps, torch, extra=()):
    """(total ms, calls) per step of each (aten op, input shapes) in PyTorch's twin step."""
    from torch.profiler import ProfilerActivity, profile
    one_step = __import__("torch_" + model).step_fn(batch, *extra)
    step = one_step
    if model == "stylegan2":  # ganforge's benchmark step is a period of 16, the lazy regularizers' cycle
        def step():
            for _ in range(16):
                one_step()
    step()
    step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    return {(event.key, str([s for s in event.input_shapes if s])): (event.self_cpu_time_total / 1e3 / steps,
                                                                     event.count // steps)
            for event in prof.key_averages(group_by_input_shape=True)
            if event.key in ("aten::mkldnn_convolution", "aten::convolution_backward")}


def show(title, table):
    print(f"\n{title}: {sum(ms for ms, _ in table.values()):.1f} ms a step")
    for key, (ms, count) in sorted(table.items(), key=lambda kv: -kv[1][0]):
        print(f"{ms:9.2f} ms  x{count:<3d} {ms / max(count, 1):8.2f} ms each   " + "  ".join(map(str, key)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["cyclegan", "srgan", "stylegan2"])
    parser.add_argument("batch", type=int)
    parser.add_argument("extra", type=int, nargs="*",
                        help="the model's next arguments, as ganforge.gan.benchmarks and bench/torch_MODEL.py take them")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch CPU is the reference here: pip install torch==2.13.0")
    from conftest import blas_threads
    torch.set_num_threads(blas_threads())
    unit = "16-step period" if args.model == "stylegan2" else "step"
    settings = f" {tuple(args.extra)}" if args.extra else ""
    print(f"{args.model}, batch {args.batch}{settings}: the convolutions of one {unit}, {args.steps} of them timed")
    show("ganforge (op, operand shapes, geometry)", ganforge_table(args.model, args.batch, args.steps, args.extra))
    show("PyTorch (op, input shapes)", torch_table(args.model, args.batch, args.steps, torch, args.extra))


if __name__ == "__main__":
    main()

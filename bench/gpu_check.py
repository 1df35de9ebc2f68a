"""Everything GPU-related in one run: build, test, measure, compare with PyTorch.

    python3 bench/gpu_check.py [--out DIR] [--peer PATH/torch_steps.py] [--skip-tests] [--sweep-tiles SECONDS]

On a machine with an NVIDIA GPU, CuPy, Triton and PyTorch (PyTorch only as the
yardstick), it
  1. prints the GPU, the library versions and the precision each side uses;
  2. builds: nvcc compiles ganforge/backends/gpu/cuda for this GPU's architecture (CuPy compiles the
     same sources with NVRTC when they are first launched);
  3. runs the `gpu` tests (every op on CuPy, tests/test_gpu_kernels.py);
  4. measures the device's ceilings: a device-to-device copy (TB/s, bytes read and
     written) and a float32 GEMM through cuBLAS, TF32 on and off (TFLOP/s);
  5. times each kernel (Triton, CUDA, and `ref` on CuPy) against PyTorch's equivalent at
     the shapes of bench/BENCH_MODELS.md, on fresh random inputs, median of triton.testing.do_bench:
       - transposed convolution forward, its input gradient (a conv2d) and its weight
         gradient, for every ConvT layer of dcgan28 (batch 64) and dcgan64 (batch 128),
         against cuDNN with cudnn.benchmark on, at the same precision: Triton with TF32
         (GANFORGE_TF32=1) against cuDNN with TF32; Triton in float32 (ganforge's default),
         the CUDA kernels and ref against cuDNN's float32;
       - the fused spectral-norm step (power iteration and W / sigma) against
         torch.nn.utils.spectral_norm's eager update, for sngan28's D weights and 512x8192;
       - the fused gradient penalty (interpolation, norms, penalty, backward) against
         the same arithmetic in eager PyTorch, at wgangp28's and dcgan64's input sizes;
  6. times a WGAN-GP critic step of wgangp28, and whole training steps, against PyTorch
     (bench/torch_steps.py, or --peer); each step also with the CUDA convolutions
     and with TF32, and how long the GPU is busy in it (the rest is Python on the host);
and prints one table of ratios (ganforge time / PyTorch time: below 1 is faster) with
achieved TFLOP/s or TB/s. Everything measured is also written to --out as JSON.
With --sweep-tiles, it then times every tile shape of the Triton convolutions.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# --- shapes (bench/BENCH_MODELS.md) -------------------------------------------------------------

# (name, batch, in channels, out channels, kernel, stride, padding, input size)
CONV_TRANSPOSE_LAYERS = [
    ("dcgan28 G1", 64, 100, 256, 7, 1, 0, 1),
    ("dcgan28 G2", 64, 256, 128, 4, 2, 1, 7),
    ("dcgan28 G3", 64, 128, 1, 4, 2, 1, 14),
    ("dcgan64 G1", 128, 100, 512, 4, 1, 0, 1),
    ("dcgan64 G2", 128, 512, 256, 4, 2, 1, 4),
    ("dcgan64 G3", 128, 256, 128, 4, 2, 1, 8),
    ("dcgan64 G4", 128, 128, 64, 4, 2, 1, 16),
    ("dcgan64 G5", 128, 64, 3, 4, 2, 1, 32),
]
# sngan28's D weights as (out, in * k * k) matrices, and a large one
SPECTRAL_NORM_MATRICES = [("sngan28 D1", 64, 16), ("sngan28 D2", 128, 1024), ("sngan28 D3", 1, 6272),
                          ("512x8192", 512, 8192)]
# the critic's input gradient, (batch, features): wgangp28 and dcgan64's D
GRADIENT_PENALTY_SHAPES = [("wgangp28", 64, 784), ("dcgan64", 128, 3 * 64 * 64)]


def conv_flops(batch, cin, cout, kernel, size):
    """Multiply-adds x 2 of a transposed convolution (each input pixel meets each tap once);
    its input- and weight-gradient convolutions do the same number."""
    return 2 * batch * cin * size * size * cout * kernel * kernel


# --- timing -------------------------------------------------------------------------------

def median_ms(fn):
    """Median milliseconds of fn() on the GPU (device events, L2 flushed between runs)."""
    import triton.testing
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def relative_error(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-30))


def measure(row, impl, run, result_of, expected, work, unit):
    """Time run() into row (ms, relative error, achieved rate); a kernel that fails is
    recorded with its error and the check goes on with the others."""
    import cupy as cp
    try:
        row[f"{impl}_error"] = relative_error(cp.asnumpy(result_of(run())), expected)
        row[f"{impl}_ms"] = median_ms(run)
        row[f"{impl}_{unit}"] = work / row[f"{impl}_ms"] / 1e9
    except Exception as exc:  # report it in the table instead of losing the whole run
        row[f"{impl}_failed"] = f"{type(exc).__name__}: {exc}"
        row[f"{impl}_ms"] = row[f"{impl}_{unit}"] = float("nan")


# --- the parts ----------------------------------------------------------------------------

def environment():
    import cupy as cp
    import torch
    import triton
    props = cp.cuda.runtime.getDeviceProperties(0)
    return {
        "gpu": props["name"].decode(), "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": props["multiProcessorCount"], "cupy": cp.__version__, "triton": triton.__version__,
        "torch": torch.__version__, "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "python": platform.python_version(), "numpy": np.__version__,
        "cudnn.benchmark": True, "torch cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "torch matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "precision": "convolutions: PyTorch/cuDNN timed with TF32 (its default) and in float32; ganforge Triton "
                     "timed with TF32 (GANFORGE_TF32=1) and in float32 (its default), CUDA plain float32 FMA (no "
                     "tensor cores), ref CuPy/cuBLAS float32; everything else float32",
    }


def build(log):
    """nvcc for this GPU: a compile error stops the check here."""
    import cupy as cp
    props = cp.cuda.runtime.getDeviceProperties(0)
    arch = f"sm_{props['major']}{props['minor']}"
    cuda_dir = ROOT / "ganforge" / "backends" / "gpu" / "cuda"
    for source in sorted(cuda_dir.glob("*.cu")):
        command = ["nvcc", "-std=c++17", f"-arch={arch}", "-cubin", f"-I{cuda_dir}", "-Xptxas", "-v",
                   "-o", os.devnull, str(source)]
        done = subprocess.run(command, capture_output=True, text=True)
        log.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
        if done.returncode:
            raise SystemExit(f"nvcc failed on {source.name}:\n{done.stderr}")
    return arch


def run_gpu_tests(log):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)
    # pytest-xdist, where installed, runs them on 8 workers (one GPU is plenty for them)
    workers = ["-n", "8"] if importlib.util.find_spec("xdist") else []
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *workers,
                           str(ROOT / "tests")], capture_output=True, text=True, env=env, cwd=ROOT)
    log.write(done.stdout + done.stderr)
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"returncode": done.returncode, "summary": summary}


def ceilings():
    import cupy as cp
    import torch
    n = 1 << 28  # 1 GiB of float32
    a, b = cp.random.standard_normal(n, dtype=cp.float32), cp.empty(n, dtype=cp.float32)
    copy_ms = median_ms(lambda: b.__setitem__(Ellipsis, a))
    out = {"copy_TBps": 2 * n * 4 / copy_ms / 1e9}
    m = 8192
    x, y = torch.randn(m, m, device="cuda"), torch.randn(m, m, device="cuda")
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        out[f"sgemm_{'tf32' if tf32 else 'fp32'}_TFLOPs"] = 2 * m ** 3 / median_ms(lambda: x @ y) / 1e9
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def conv_rows():
    import cupy as cp
    import torch
    import torch.nn.functional as tF
    from ganforge import dispatch
    from ganforge.ops import conv
    rows = []
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    for name, n, c, o, k, s, p, size in CONV_TRANSPOSE_LAYERS:
        out = (size - 1) * s - 2 * p + k
        x = rng.standard_normal((n, c, size, size)).astype(np.float32)
        w = (rng.standard_normal((c, o, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        gy = rng.standard_normal((n, o, out, out)).astype(np.float32)
        xc, wc, gyc = cp.asarray(x), cp.asarray(w), cp.asarray(gy)
        xt, wt, gyt = (torch.from_numpy(a).cuda() for a in (x, w, gy))
        geometry = ((s, s), (p, p), (1, 1), 1)
        flops = conv_flops(n, c, o, k, size)
        cases = {
            "forward": (lambda impl: dispatch.implementations("conv_transpose2d")[impl].fn(xc, wc, (out, out),
                                                                                          *geometry),
                        lambda: tF.conv_transpose2d(xt, wt, stride=s, padding=p),
                        lambda: conv.conv_transpose2d_ref(x.astype(np.float64), w.astype(np.float64), (out, out),
                                                          *geometry)),
            "input grad": (lambda impl: dispatch.implementations("conv2d")[impl].fn(gyc, wc, *geometry),
                           lambda: tF.conv2d(gyt, wt, stride=s, padding=p),
                           lambda: conv.conv2d_ref(gy.astype(np.float64), w.astype(np.float64), *geometry)),
            "weight grad": (lambda impl: dispatch.implementations("conv2d_weight_grad")[impl].fn(gyc, xc, w.shape,
                                                                                               *geometry),
                            lambda: torch.ops.aten.convolution_backward(gyt, xt, wt, None, [s, s], [p, p], [1, 1],
                                                                        True, [0, 0], 1, [False, True, False])[1],
                            lambda: conv.conv2d_weight_grad_ref(gy.astype(np.float64), x.astype(np.float64),
                                                                w.shape, *geometry)),
        }
        for part, (ours, theirs, reference) in cases.items():
            expected = reference()
            row = {"kernel": "conv_transpose2d", "shape": name, "part": part}
            # cuDNN at both precisions: Triton's TF32 products are compared with cuDNN's TF32
            # (PyTorch's default), the CUDA kernels' and cuBLAS's float32 with cuDNN's float32.
            for precision, allowed in (("tf32", True), ("fp32", False)):
                torch.backends.cudnn.allow_tf32 = allowed
                row[f"torch_{precision}_ms"] = median_ms(theirs)
                row[f"torch_{precision}_error"] = relative_error(theirs().cpu().numpy(), expected)
                row[f"torch_{precision}_TFLOPs"] = flops / row[f"torch_{precision}_ms"] / 1e9
            torch.backends.cudnn.allow_tf32 = True
            # Triton twice: with TF32 (GANFORGE_TF32=1) against cuDNN's TF32, and in plain
            # float32 (ganforge's default) against cuDNN's float32, as the CUDA kernels and ref.
            row["baseline"] = {"triton": "torch_tf32", "triton_fp32": "torch_fp32", "cuda": "torch_fp32",
                               "ref": "torch_fp32"}
            for impl in ("triton", "triton_fp32", "cuda", "ref"):
                kernel = impl.split("_")[0]
                with kernel_choice("", tf32=impl == "triton"):
                    measure(row, impl, lambda: ours(kernel), lambda result: result, expected, flops, "TFLOPs")
            rows.append(row)
    return rows


def spectral_norm_rows():
    import cupy as cp
    import torch
    from ganforge import dispatch
    from ganforge.ops import spectral
    rows = []
    rng = np.random.default_rng(1)
    for name, r, c in SPECTRAL_NORM_MATRICES:
        w = rng.standard_normal((r, c)).astype(np.float32)
        u = rng.standard_normal(r).astype(np.float32)
        u /= np.linalg.norm(u)
        expected = spectral.spectral_norm_with(spectral.power_iteration_ref)(w.astype(np.float64),
                                                                             u.astype(np.float64), 1, 1e-12)[3]
        layer = torch.nn.utils.spectral_norm(torch.nn.Linear(c, r, bias=False).cuda())
        with torch.no_grad():
            layer.weight_orig.copy_(torch.from_numpy(w))
            layer.weight_u.copy_(torch.from_numpy(u))
        hook = next(h for h in layer._forward_pre_hooks.values() if hasattr(h, "compute_weight"))
        u_start = layer.weight_u.clone()

        def theirs():  # the eager update spectral_norm runs before every training-mode forward
            layer.weight_u.copy_(u_start)
            return hook.compute_weight(layer, do_power_iteration=True)
        with torch.no_grad():
            torch_result = theirs().cpu().numpy()
            torch_ms = median_ms(theirs)
        wc, uc = cp.asarray(w), cp.asarray(u)
        row = {"kernel": "spectral_norm step", "shape": name, "part": "u, v, sigma, W/sigma", "torch_ms": torch_ms,
               "torch_error": relative_error(torch_result, expected)}
        minimum_bytes = 2 * w.nbytes  # W read once, W / sigma written once
        for impl in ("triton", "cuda", "ref"):
            fn = dispatch.implementations("spectral_norm")[impl].fn
            measure(row, impl, lambda: fn(wc, uc, 1, 1e-12), lambda result: result[3], expected, minimum_bytes,
                    "TBps")
        row["torch_TBps"] = minimum_bytes / torch_ms / 1e9
        rows.append(row)
    return rows


def gradient_penalty_rows():
    import cupy as cp
    import torch
    from ganforge import dispatch
    from ganforge.ops import penalty
    rows = []
    rng = np.random.default_rng(2)
    for name, n, f in GRADIENT_PENALTY_SHAPES:
        real, fake, g = (rng.standard_normal((n, f)).astype(np.float32) for _ in range(3))
        eps = rng.uniform(size=n).astype(np.float32)
        ref_value, ref_norms = penalty.penalty_ref(g.astype(np.float64), 1.0, False)
        expected = penalty.penalty_backward_ref(g.astype(np.float64), ref_norms, 1.0, 1.0, False)
        rt, ft, gt, et = (torch.from_numpy(a).cuda() for a in (real, fake, g, eps))

        def theirs():
            x_hat = et[:, None] * rt + (1 - et[:, None]) * ft
            grad = gt.detach().requires_grad_()
            value = ((grad.norm(2, dim=1) - 1) ** 2).mean()
            return x_hat, value, torch.autograd.grad(value, grad)[0]
        row = {"kernel": "gradient penalty", "shape": name, "part": "x_hat, penalty, backward",
               "torch_ms": median_ms(theirs), "torch_error": relative_error(theirs()[2].cpu().numpy(), expected)}
        rc, fc, gc, ec = (cp.asarray(a) for a in (real, fake, g, eps))
        one = cp.asarray(1.0, dtype=cp.float32)
        minimum_bytes = 5 * g.nbytes  # real, fake read and x_hat written; g read; dP/dg written

        def ours(impl):
            kernels = {op: dispatch.implementations(op)[impl].fn for op in
                       ("gradient_penalty_interpolate", "gradient_penalty", "gradient_penalty_backward")}
            x_hat = kernels["gradient_penalty_interpolate"](rc, fc, ec)
            value, norms = kernels["gradient_penalty"](gc, 1.0, False)
            return x_hat, value, kernels["gradient_penalty_backward"](gc, norms, one, 1.0, False)
        for impl in ("cuda", "ref"):
            measure(row, impl, lambda: ours(impl), lambda result: result[2], expected, minimum_bytes, "TBps")
        row["torch_TBps"] = minimum_bytes / row["torch_ms"] / 1e9
        rows.append(row)
    return rows


def load_peer(path):
    spec = importlib.util.spec_from_file_location("torch_steps", path)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    return peer


def step_rows(peer_path, models=("wgangp28", "dcgan28", "sngan28", "dcgan64"), repeats=30):
    """Whole training steps (host clock around synchronized steps: they include Python); each
    the median of `repeats` steps, the lower of two rounds taken in turns with the other
    kernel choices."""
    import cupy as cp
    import torch
    from ganforge import optim
    from ganforge.gan import benchmarks
    from ganforge import functional as F
    from ganforge.gan.penalties import gradient_penalty
    from ganforge.tensor import Generator, rand, randn
    peer = load_peer(peer_path) if peer_path and Path(peer_path).exists() else None

    def timed(step, sync):
        for _ in range(5):
            step()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    rows = []
    # The WGAN-GP critic step alone: D(fake) - D(real) + 10 GP, backward (a double backward), Adam.
    G, D, _, batch = benchmarks.build("wgangp28", device="cuda")
    opt_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    noise = Generator(7)
    real = (rand(batch, 1, 28, 28, generator=noise) * 2 - 1).to("cuda")
    fake = G(randn(batch, 100, 1, 1, generator=noise).to("cuda")).detach()

    def critic_step():
        loss = F.mean(D(fake)) - F.mean(D(real)) + gradient_penalty(D, real, fake, 10.0, generator=noise)
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    row = {"kernel": "train step", "shape": "wgangp28", "part": "critic step (GP)",
           "ganforge_ms": timed(critic_step, cp.cuda.Device().synchronize)}
    if peer is not None:
        tG, tD, _, _ = peer.make("wgangp28", "cuda")
        topt = torch.optim.Adam(tD.parameters(), 2e-4, betas=(0.5, 0.999))
        treal = torch.rand(batch, 1, 28, 28, device="cuda") * 2 - 1
        tfake = tG(torch.randn(batch, 100, 1, 1, device="cuda")).detach()

        def torch_critic_step():
            eps = torch.rand(batch, 1, 1, 1, device="cuda")
            x_hat = (eps * treal + (1 - eps) * tfake).requires_grad_()
            grad, = torch.autograd.grad(tD(x_hat).sum(), x_hat, create_graph=True)
            loss = tD(tfake).mean() - tD(treal).mean() + 10 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            topt.zero_grad()
            loss.backward()
            topt.step()
        row["torch_ms"] = timed(torch_critic_step, torch.cuda.synchronize)
    rows.append(row)
    for model in models:
        _, _, step, _ = benchmarks.build(model, device="cuda")
        row = {"kernel": "train step", "shape": model, "part": "D + G step"}
        # The step under each choice of convolution kernels, in turns; and how much of it the
        # GPU is busy (a step much longer than its kernels is bound by Python on the host).
        for _ in range(2):
            for label, (spec, tf32) in STEP_CHOICES.items():
                with kernel_choice(spec, tf32):
                    row.setdefault(f"{label}_runs_ms", []).append(timed(step, cp.cuda.Device().synchronize))
        for label, (spec, tf32) in STEP_CHOICES.items():
            row[f"{label}_ms"] = min(row[f"{label}_runs_ms"])
            with kernel_choice(spec, tf32):
                row[f"{label}_gpu_ms"], row[f"{label}_launches"] = gpu_busy(step)
        row["ganforge_ms"] = row["default_ms"]
        if peer is not None:
            tstep = peer.step_fn(model, *peer.make(model, "cuda"), "cuda")
            row["torch_ms"] = timed(tstep, torch.cuda.synchronize)
        rows.append(row)
    return rows


# label -> (GANFORGE_KERNELS, TF32 on): the default (Triton convolutions in float32), the CUDA
# convolutions, and the Triton ones with TF32
STEP_CHOICES = {"default": ("", False), "cuda_convs": ("conv2d=cuda,conv_transpose2d=cuda,conv2d_weight_grad=cuda",
                                                       False), "tf32": ("", True)}


@contextlib.contextmanager
def kernel_choice(spec, tf32):
    """GANFORGE_KERNELS=spec and TF32 on or off inside the block; both as they were after it."""
    from ganforge import backend
    previous, previous_tf32 = os.environ.get("GANFORGE_KERNELS"), backend.tf32_enabled()
    os.environ["GANFORGE_KERNELS"] = spec
    backend.set_tf32(tf32)
    try:
        yield
    finally:
        backend.set_tf32(previous_tf32)
        if previous is None:
            del os.environ["GANFORGE_KERNELS"]
        else:
            os.environ["GANFORGE_KERNELS"] = previous


def gpu_busy(step, steps=3):
    """(milliseconds of GPU kernels and copies per step, launches per step), read with
    PyTorch's profiler (CUPTI sees CuPy's and Triton's launches as well as its own)."""
    import cupy as cp
    import torch
    from torch.profiler import ProfilerActivity, profile
    step()
    cp.cuda.Device().synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        cp.cuda.Device().synchronize()
    device = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.time_range.elapsed_us() for e in device) / 1e3 / steps, len(device) / steps


# --- the Triton convolutions' tiles -------------------------------------------------------

SWEEP_TILES = [(64, 64, 32), (128, 64, 32), (64, 128, 32), (128, 128, 32), (128, 64, 64), (64, 64, 64)]
SWEEP_WARPS_STAGES = [(4, 3), (8, 3), (4, 4)]


def tile_sweep(seconds, path):
    """Every tile shape x (warps, pipeline stages) for the Triton convolutions (TF32) at the
    ConvT layers, against the tiles `_tiles` picks: the measurements behind that rule.
    Stops starting new measurements after `seconds`; each finished row is saved to `path`."""
    import cupy as cp
    from ganforge.backends.gpu import runtime as kernels
    module = kernels.triton_module("conv")
    deadline, rows = time.time() + seconds, []
    rng = np.random.default_rng(3)
    for name, n, c, o, k, s, p, size in CONV_TRANSPOSE_LAYERS:
        out = (size - 1) * s - 2 * p + k
        x, w, gy = (cp.asarray(rng.standard_normal(shape, dtype=np.float32)) for shape in
                    ((n, c, size, size), (c, o, k, k), (n, o, out, out)))
        geometry = ((s, s), (p, p), (1, 1), 1)
        parts = {"forward": lambda launch, **kw: module.conv_transpose2d(launch, x, w, (out, out), *geometry, **kw),
                 "input grad": lambda launch, **kw: module.conv2d(launch, gy, w, (size, size), *geometry, **kw),
                 "weight grad": lambda launch, **kw: module.conv2d_weight_grad(launch, gy, x, w.shape, *geometry,
                                                                               **kw)}
        for part, run in parts.items():
            if time.time() > deadline:
                print(f"tiles: stopped after {seconds:.0f} s, before {name} {part}", flush=True)
                return rows
            launch = kernels.TritonLaunch("conv", x)
            row = {"shape": name, "part": part, "picked_ms": median_ms(lambda: run(launch))}
            for tiles in SWEEP_TILES:
                for warps, stages in SWEEP_WARPS_STAGES:
                    options = LaunchOptions(launch, num_warps=warps, num_stages=stages)
                    row[f"{tiles} {warps}w{stages}s"] = median_ms(lambda: run(options, blocks=tiles))
            best = min((key for key in row if key.startswith("(")), key=row.get)
            row["best"], row["best_ms"] = best, row[best]
            print(f"tiles: {name} {part}: picked {row['picked_ms']:.4f} ms, best {row['best_ms']:.4f} ms ({best})",
                  flush=True)
            rows.append(row)
            path.write_text(json.dumps(rows, indent=1))
    return rows


class LaunchOptions:
    """A TritonLaunch that adds launch options (num_warps, num_stages) to every launch."""

    def __init__(self, launch, **options):
        self.launch, self.options, self.xp, self.module = launch, options, launch.xp, launch.module

    def __call__(self, kernel, grid, *args, **meta):
        self.launch(kernel, grid, *args, **{**meta, **self.options})


# --- the table ----------------------------------------------------------------------------

IMPLEMENTATIONS = ("triton", "triton_fp32", "cuda", "ref")


def table(rows):
    """Markdown: each ganforge kernel's time, and its ratio to PyTorch at the same precision."""
    lines = ["| kernel | shape | part | PyTorch ms | triton (TF32) ms (x) | triton fp32 ms (x) | cuda ms (x) | "
             "ref ms (x) | best rate |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["kernel"] == "train step":
            ratio = f"{r['ganforge_ms'] / r['torch_ms']:.2f}" if "torch_ms" in r else "n/a"
            choices = "; ".join(f"{label.replace('_', ' ')} {r[f'{label}_ms']:.2f} (GPU busy {r[f'{label}_gpu_ms']:.2f}, "
                                f"{r[f'{label}_launches']:.0f} launches)" for label in STEP_CHOICES
                                if f"{label}_gpu_ms" in r)
            lines.append(f"| {r['kernel']} | {r['shape']} | {r['part']} | {r.get('torch_ms', float('nan')):.3f} | "
                         f"ganforge {r['ganforge_ms']:.3f} ({ratio}) | {choices} | | | |")
            continue
        unit = "TFLOPs" if "triton_TFLOPs" in r else "TBps"
        impls = [i for i in IMPLEMENTATIONS if f"{i}_ms" in r]
        baseline = r.get("baseline", {impl: "torch" for impl in impls})
        theirs = " / ".join(f"{r[f'{b}_ms']:.4f}" + (f" {b[6:]}" if b != "torch" else "")
                            for b in dict.fromkeys(baseline.values()))
        cells = [f"{r[f'{impl}_ms']:.4f} ({r[f'{impl}_ms'] / r[baseline[impl] + '_ms']:.2f})" if impl in impls
                 else "" for impl in IMPLEMENTATIONS]
        timed = [i for i in impls if i != "ref" and r[f"{i}_ms"] == r[f"{i}_ms"]] or ["triton"]  # NaN: failed
        best = min(timed, key=lambda i: r[f"{i}_ms"])
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['part']} | {theirs} | {' | '.join(cells)} | "
                     f"{best} {r[f'{best}_{unit}']:.2f} {unit} (PyTorch {r[baseline[best] + '_' + unit]:.2f}) |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    parser.add_argument("--peer", default=os.environ.get("GANFORGE_PEER", str(ROOT / "bench" / "torch_steps.py")))
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--sweep-tiles", type=float, default=0, metavar="SECONDS",
                        help="also time every tile shape of the Triton convolutions, for up to SECONDS")
    args = parser.parse_args()
    os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": environment()}
    print(json.dumps(report["environment"], indent=1), flush=True)
    with open(out / "gpu_check.log", "w") as log:
        report["arch"] = build(log)
        print(f"build: nvcc compiled ganforge/backends/gpu/cuda for {report['arch']}", flush=True)
        if not args.skip_tests:
            report["tests"] = run_gpu_tests(log)
            print(f"gpu tests: {report['tests']['summary']} (exit {report['tests']['returncode']})", flush=True)
    report["ceilings"] = ceilings()
    print("ceilings:", json.dumps(report["ceilings"]), flush=True)
    rows = []
    for part in (conv_rows, spectral_norm_rows, gradient_penalty_rows):
        rows += part()
        (out / "gpu_check.json").write_text(json.dumps(dict(report, rows=rows), indent=1))
    try:
        rows += step_rows(args.peer)
    except Exception as exc:  # the kernel table above still stands
        report["steps_failed"] = f"{type(exc).__name__}: {exc}"
        print(f"FAILED training steps: {report['steps_failed']}")
    report["rows"] = rows
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print("\nratios are ganforge / PyTorch at the same precision (below 1: faster): Triton with TF32 against cuDNN "
          "with TF32; Triton in float32 (ganforge's default), CUDA and ref against cuDNN in float32; errors vs "
          "float64 are in gpu_check.json")
    print(table(rows))
    for label, impls in (("TF32", ("triton",)), ("float32", ("triton_fp32", "cuda"))):
        worst = max((r[f"{i}_error"] for r in rows for i in impls if f"{i}_error" in r), default=0.0)
        print(f"largest relative error of a ganforge {label} kernel vs float64: {worst:.2e}")
    for r in rows:
        for impl in IMPLEMENTATIONS:
            if f"{impl}_failed" in r:
                print(f"FAILED {impl} {r['kernel']} {r['shape']} {r['part']}: {r[f'{impl}_failed']}")
    failed = any(k.endswith("_failed") for r in rows for k in r) or "steps_failed" in report
    if args.sweep_tiles:  # last: everything above is printed and saved whatever it takes
        report["tile_sweep"] = tile_sweep(args.sweep_tiles, out / "gpu_tile_sweep.json")
    return 0 if report.get("tests", {"returncode": 0})["returncode"] == 0 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())

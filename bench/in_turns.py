"""ganforge against PyTorch with the two taking turns, for a shared machine whose speed drifts.

pytest-benchmark times all of one framework's rounds, then all of the other's, often
seconds apart; on a host whose speed moves by tens of percent from one second to the
next (as the development machine's does), the ratio then says as much about the host as
about the frameworks. Here the two run in alternating blocks: each block first runs its
framework's step untimed for half a second (conftest.WARM_UP_S), because the other
framework's worker threads are still spinning then (OpenBLAS's and PyTorch's OpenMP
threads wait that way after each call; alternating single steps was measured to slow
both down, PyTorch's by 2x), then times BLOCK steps. The ratio is that of the medians of
the timed steps.

    python bench/in_turns.py steps          one training step of dcgan28, wgangp28, sngan28
    python bench/in_turns.py conv [--slow]  the conv layers of dcgan28 (and dcgan64)
    python bench/in_turns.py cyclegan       one CycleGAN step at 64 px, batch 1 and 4
    python bench/in_turns.py mlp            one step of the `gan` variant's MLPs, batch 64 and 256
    python bench/in_turns.py srgan          one SRGAN step, batch 16: 96 px photos and Fashion-MNIST, x4
    python bench/in_turns.py stylegan2      16 StyleGAN2 steps (one period of its lazy regularizers), 32 px, batch 32
    python bench/in_turns.py stylegan2-fused   the same, ganforge's modulated convolutions unfused against fused
    python bench/in_turns.py applications   text2image's step, anomaly's GAN and encoder steps, batch 64
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

BLOCK = 5


def in_turns(first, second, blocks):
    """Median seconds per call of first() and second(), run in alternating blocks."""
    from conftest import warm_up
    times = ([], [])
    for _ in range(blocks):
        for fn, out in zip((first, second), times):
            warm_up(fn)
            for _ in range(BLOCK):
                start = time.perf_counter()
                fn()
                out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def steps(torch, blocks):
    from ganforge.gan import benchmarks
    from test_train_step import MODELS, peer_module
    peer = peer_module()
    for model in MODELS:
        torch.manual_seed(0)
        theirs = peer.step_fn(model, *peer.make(model, "cpu"), "cpu")
        ours = benchmarks.build(model)[2]
        ours_s, theirs_s = in_turns(ours, theirs, blocks)
        print(f"{model:10s} ganforge {ours_s * 1e3:7.1f} ms   torch {theirs_s * 1e3:7.1f} ms   "
              f"ratio {ours_s / theirs_s:.2f}", flush=True)


def model_steps(torch, blocks, label, batches, theirs_for, ours_for):
    """A model's own train_step against its PyTorch twin's, at each batch size; the twin
    is built first, right after seeding PyTorch."""
    for batch in batches:
        torch.manual_seed(0)
        theirs = theirs_for(batch)
        ours_s, theirs_s = in_turns(ours_for(batch)[1], theirs, blocks)
        print(f"{label} batch {batch:3d}  ganforge {ours_s * 1e3:7.2f} ms   torch {theirs_s * 1e3:7.2f} ms   "
              f"ratio {ours_s / theirs_s:.2f}", flush=True)


def cyclegan_steps(torch, blocks):
    """ganforge's CycleGAN step against bench/torch_cyclegan.py's, at 64 px."""
    import torch_cyclegan
    from ganforge.gan import benchmarks
    model_steps(torch, blocks, "cyclegan64", (1, 4), torch_cyclegan.step_fn, benchmarks.cyclegan)


def mlp_steps(torch, blocks):
    """The `gan` variant's train_step against bench/torch_steps.py's mlp_gan twin."""
    import torch_steps
    from ganforge.gan import benchmarks
    model_steps(torch, blocks, "gan mlp", (64, 256), torch_steps.mlp_gan_step_fn, benchmarks.mlp_gan)


def srgan_steps(torch, blocks):
    """ganforge's SRGAN step against bench/torch_srgan.py's, batch 16 x4: the paper's 96 px
    RGB crops, and Fashion-MNIST's 28 px grey images."""
    import torch_srgan
    from ganforge.gan import benchmarks
    for label, size, channels in (("srgan 96px rgb", 96, 3), ("srgan fashion28", 28, 1)):
        model_steps(torch, blocks, label, (16,), lambda b: torch_srgan.step_fn(b, size, 4, channels),
                    lambda b: benchmarks.srgan(b, size, 4, channels))


def stylegan2_steps(torch, blocks):
    """ganforge's StyleGAN2 step against bench/torch_stylegan2.py's, 32 px grey, batch 32; a
    call is 16 steps (R1 once, the path-length penalty 4 times), printed per step."""
    import torch_stylegan2
    from ganforge.gan import benchmarks
    global BLOCK
    BLOCK = 1  # a call is already 16 steps

    def theirs_for(batch):
        step = torch_stylegan2.step_fn(batch)

        def period():
            for _ in range(16):
                step()
        return period
    for batch in (32,):
        torch.manual_seed(0)
        theirs = theirs_for(batch)
        ours_s, theirs_s = in_turns(benchmarks.stylegan2(batch)[1], theirs, blocks)
        print(f"stylegan2 32px batch {batch}  ganforge {ours_s / 16 * 1e3:7.1f} ms/step   torch "
              f"{theirs_s / 16 * 1e3:7.1f} ms/step   ratio {ours_s / theirs_s:.2f}", flush=True)


def stylegan2_fused(blocks):
    """ganforge's StyleGAN2 period with its modulated convolutions unfused (as it trains)
    against fused (one grouped convolution per layer, the paper's form), in turns."""
    from ganforge.gan import benchmarks
    from ganforge.nn import ModulatedConv2d
    global BLOCK
    BLOCK = 1
    periods = []
    for fused in (False, True):
        model, period = benchmarks.stylegan2(32)
        for layer in model.nets["G"].modules():
            if isinstance(layer, ModulatedConv2d):
                layer.fused = fused
        periods.append(period)
    unfused_s, fused_s = in_turns(*periods, blocks)
    print(f"stylegan2 32px batch 32  unfused {unfused_s / 16 * 1e3:7.1f} ms/step   fused {fused_s / 16 * 1e3:7.1f} "
          f"ms/step   fused/unfused {fused_s / unfused_s:.2f}", flush=True)


def application_steps(torch, blocks):
    """text2image's step and anomaly's two phases' steps against bench/torch_applications.py's."""
    import torch_applications
    from ganforge.gan import benchmarks
    model_steps(torch, blocks, "text2image", (64,), torch_applications.text2image_step_fn, benchmarks.text2image)
    model_steps(torch, blocks, "anomaly gan", (64,), torch_applications.anomaly_gan_step_fn, benchmarks.anomaly_gan)
    model_steps(torch, blocks, "anomaly encoder", (64,), torch_applications.anomaly_encoder_step_fn,
                benchmarks.anomaly_encoder)


def conv_step(layer, rng, torch=None):
    """(ganforge's, PyTorch's) forward plus both gradients of a bench/test_conv.py layer,
    on the same random input and weights; PyTorch's is None without torch."""
    import ganforge as gf
    from ganforge import functional as F
    from test_conv import shapes
    x_shape, w_shape, _ = shapes(layer)
    transposed, stride, padding = layer[1], layer[5], layer[6]
    x_np, w_np = rng.standard_normal(x_shape), rng.standard_normal(w_shape) * 0.05
    x = gf.tensor(x_np, dtype="float32", requires_grad=True)
    w = gf.tensor(w_np, dtype="float32", requires_grad=True)
    op = F.conv_transpose2d if transposed else F.conv2d

    def ours():
        y = op(x, w, None, stride, padding, impl="cpp")
        return gf.grad(y, [x, w], gf.ones_like(y))

    if torch is None:
        return ours, None
    xt = torch.tensor(x_np, dtype=torch.float32, requires_grad=True)
    wt = torch.tensor(w_np, dtype=torch.float32, requires_grad=True)
    top = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d

    def theirs():
        y = top(xt, wt, None, stride, padding)
        return torch.autograd.grad(y, [xt, wt], torch.ones_like(y))
    return ours, theirs


def conv(torch, blocks, slow):
    from test_conv import LAYERS, group
    rng = np.random.default_rng(0)
    for layer in LAYERS:
        if layer[0].startswith("dcgan64") and not slow:
            continue
        ours_s, theirs_s = in_turns(*conv_step(layer, rng, torch), blocks)
        print(f"{group(layer):55s} ganforge {ours_s * 1e3:8.2f} ms   torch {theirs_s * 1e3:8.2f} ms   "
              f"ratio {ours_s / theirs_s:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["steps", "conv", "cyclegan", "mlp", "srgan", "stylegan2", "stylegan2-fused",
                                             "applications"])
    parser.add_argument("--blocks", type=int, default=6, help="blocks of %d timed steps per framework" % BLOCK)
    parser.add_argument("--slow", action="store_true", help="conv: dcgan64's layers too")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch CPU is the reference here: pip install torch==2.13.0")
    from conftest import blas_threads
    torch.set_num_threads(blas_threads())
    print(f"in turns: {args.blocks} blocks of {BLOCK} timed steps each, after half a second untimed; "
          f"PyTorch on {torch.get_num_threads()} threads")
    if args.what == "steps":
        steps(torch, args.blocks)
    elif args.what == "cyclegan":
        cyclegan_steps(torch, args.blocks)
    elif args.what == "srgan":
        srgan_steps(torch, args.blocks)
    elif args.what == "mlp":
        mlp_steps(torch, args.blocks)
    elif args.what == "applications":
        application_steps(torch, args.blocks)
    elif args.what == "stylegan2":
        stylegan2_steps(torch, args.blocks)
    elif args.what == "stylegan2-fused":
        stylegan2_fused(args.blocks)
    else:
        conv(torch, args.blocks, args.slow)


if __name__ == "__main__":
    main()

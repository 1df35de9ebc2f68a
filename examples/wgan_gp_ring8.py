"""WGAN-GP on a ring of 8 Gaussians, written with nothing but ganforge's core.

The networks are plain weight tensors and the optimizer is ten lines of Adam; the data,
the gradient penalty (which differentiates through a gradient, create_graph=True) and the
mode-coverage metric come from ganforge.data, ganforge.gan and ganforge.metrics.
It writes the generator's samples (samples.npy), a scatter plot over the mixture
(samples.png, with Pillow installed) and prints mode coverage by the VEEGAN/PacGAN
protocol of bench/BENCH_MODELS.md.

    python examples/wgan_gp_ring8.py --out runs/ring8
"""
import argparse
import json
import math
import os
import time

import numpy as np

import ganforge as gf
import ganforge.functional as F

def mlp(sizes, rng):
    """Weights of a fully connected net, He-initialized, as tensors that require grad."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
        params += [gf.tensor(w, dtype="float32", requires_grad=True), gf.zeros(fan_out, requires_grad=True)]
    return params


def forward(params, x):
    for i in range(0, len(params), 2):
        x = x @ params[i] + params[i + 1]
        if i + 2 < len(params):
            x = F.leaky_relu(x, 0.2)
    return x


class Adam:
    def __init__(self, params, lr, betas=(0.5, 0.9), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [np.zeros_like(p.numpy()) for p in params]
        self.v = [np.zeros_like(p.numpy()) for p in params]

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        scale = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        with gf.no_grad():
            for p, g, m, v in zip(self.params, grads, self.m, self.v):
                g = g.numpy()
                m += (1 - b1) * (g - m)
                v += (1 - b2) * (g * g - v)
                p -= scale * m / (np.sqrt(v) + self.eps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="generator updates")
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="initial learning rate, decayed linearly to 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/wgan_gp_ring8")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    rng = np.random.default_rng(args.seed)
    gf.manual_seed(args.seed)  # the penalty's interpolation weights come from ganforge's generator
    generator, critic = mlp([2, 128, 128, 2], rng), mlp([2, 128, 128, 1], rng)
    opt_g, opt_d = Adam(generator, args.lr), Adam(critic, args.lr)
    fixed_z = gf.tensor(rng.standard_normal((2500, 2)), dtype="float32")

    start = time.time()
    for step in range(1, args.steps + 1):
        for _ in range(args.n_critic):
            real = gf.tensor(gf.data.sample_mixture("ring8", args.batch_size, rng))
            with gf.no_grad():
                fake = forward(generator, gf.tensor(rng.standard_normal((args.batch_size, 2)), dtype="float32"))
            loss_d = forward(critic, fake).mean() - forward(critic, real).mean() \
                + gf.gan.gradient_penalty(lambda x: forward(critic, x), real, fake, weight=0.1)
            opt_d.step(gf.grad(loss_d, critic))
        z = gf.tensor(rng.standard_normal((args.batch_size, 2)), dtype="float32")
        loss_g = -forward(critic, forward(generator, z)).mean()
        opt_g.step(gf.grad(loss_g, generator))
        # Decaying the learning rate to zero lets the generator settle onto the modes
        # instead of jittering around them (which the 3-std quality test would punish).
        opt_g.lr = opt_d.lr = args.lr * (1 - step / args.steps)
        if step % 250 == 0 or step == args.steps:
            with gf.no_grad():
                coverage = gf.metrics.mode_coverage(forward(generator, fixed_z).numpy(), "ring8")
            print(f"step {step:5d}  loss_d {loss_d.item():+.4f}  loss_g {loss_g.item():+.4f}  "
                  f"modes {coverage['modes']}/8  high-quality {coverage['high_quality_percent']:.1f}%  "
                  f"({time.time() - start:.0f}s)", flush=True)

    with gf.no_grad():
        samples = forward(generator, fixed_z).numpy()
    np.save(os.path.join(args.out, "samples.npy"), samples)
    coverage = gf.metrics.mode_coverage(samples, "ring8")
    with open(os.path.join(args.out, "coverage.json"), "w") as f:
        json.dump(coverage, f, indent=2)
    try:
        gf.io.save_scatter(os.path.join(args.out, "samples.png"), samples, gf.data.RING8_MEANS, extent=1.6)
        print(f"wrote {args.out}/samples.png")
    except ImportError as exc:
        print(f"{exc}: no samples.png")
    print(f"wrote {args.out}/samples.npy; coverage {coverage}")


if __name__ == "__main__":
    main()

"""PyTorch reference for the benchmark models in bench/BENCH_MODELS.md.

Times one training step of each model on the CPU (or CUDA with --device cuda)
and prints one JSON line per model: median seconds per step.
"""
import argparse, json, time, statistics
import torch, torch.nn as nn, torch.nn.functional as F


def g28(z=100, bn=True):
    norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.ConvTranspose2d(z, 256, 7, 1, 0, bias=False), norm(256), nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), norm(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 1, 4, 2, 1), nn.Tanh())


def d28(bn=True, sn=False):
    wrap = nn.utils.spectral_norm if sn else (lambda m: m)
    norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
    return nn.Sequential(
        wrap(nn.Conv2d(1, 64, 4, 2, 1)), nn.LeakyReLU(0.2),
        wrap(nn.Conv2d(64, 128, 4, 2, 1)), norm(128), nn.LeakyReLU(0.2),
        wrap(nn.Conv2d(128, 1, 7, 1, 0)), nn.Flatten())


def g64(z=100):
    return nn.Sequential(
        nn.ConvTranspose2d(z, 512, 4, 1, 0, bias=False), nn.BatchNorm2d(512), nn.ReLU(),
        nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())


def d64():
    return nn.Sequential(
        nn.Conv2d(3, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2),
        nn.Conv2d(256, 512, 4, 2, 1, bias=False), nn.BatchNorm2d(512), nn.LeakyReLU(0.2),
        nn.Conv2d(512, 1, 4, 1, 0, bias=False), nn.Flatten())


def make(name, dev):
    if name == "dcgan28":
        return g28().to(dev), d28().to(dev), (1, 28), 64
    if name == "wgangp28":
        return g28().to(dev), d28(bn=False).to(dev), (1, 28), 64
    if name == "sngan28":
        return g28().to(dev), d28(bn=False, sn=True).to(dev), (1, 28), 64
    if name == "dcgan64":
        return g64().to(dev), d64().to(dev), (3, 64), 128
    raise SystemExit(name)


def step_fn(name, G, D, shape, batch, dev):
    c, s = shape
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, c, s, s, device=dev) * 2 - 1

    def step():
        z = torch.randn(batch, 100, 1, 1, device=dev)
        fake = G(z)
        if name in ("dcgan28", "dcgan64"):
            lr, lf = D(real), D(fake.detach())
            ld = F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) + \
                F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        elif name == "sngan28":
            ld = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake.detach())).mean()
        else:  # wgan-gp critic step
            fd = fake.detach()
            eps = torch.rand(batch, 1, 1, 1, device=dev)
            xh = (eps * real + (1 - eps) * fd).requires_grad_(True)
            g, = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
            gp = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
            ld = D(fd).mean() - D(real).mean() + 10 * gp
        od.zero_grad(set_to_none=True); ld.backward(); od.step()
        out = D(fake)
        if name in ("dcgan28", "dcgan64"):
            lg = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        else:
            lg = -out.mean()
        og.zero_grad(set_to_none=True); lg.backward(); og.step()
    return step


def mlp(z_dim, out_dim, activation, hidden=256, depth=3):
    layers, width = [], z_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


def mlp_gan_step_fn(batch, z_dim=2, dev="cpu"):
    """The `gan` variant's step (ganforge/gan/models/gan.py) on a fixed batch of 2-D points:
    MLPs of three 256-wide hidden layers, Adam(1e-3, (0.5, 0.999)), the non-saturating loss."""
    G = mlp(z_dim, 2, nn.ReLU).to(dev)
    D = mlp(2, 1, lambda: nn.LeakyReLU(0.2)).to(dev)
    og = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 1e-3, betas=(0.5, 0.999))
    real = torch.randn(batch, 2, device=dev)

    def step():
        fake = G(torch.randn(batch, z_dim, device=dev))
        ld = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
        od.zero_grad(set_to_none=True); ld.backward(); od.step()
        D.requires_grad_(False)
        lg = F.softplus(-D(fake)).mean()
        og.zero_grad(set_to_none=True); lg.backward(); og.step()
        D.requires_grad_(True)
        return ld.item(), lg.item()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="dcgan28,wgangp28,sngan28")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tf32", action="store_true", help="let cuDNN/cuBLAS use TF32 (off: true fp32)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.manual_seed(0)
    for name in a.models.split(","):
        G, D, shape, batch = make(name, a.device)
        step = step_fn(name, G, D, shape, batch, a.device)
        for _ in range(3):
            step()
        ts = []
        for _ in range(a.steps):
            if a.device == "cuda": torch.cuda.synchronize()
            t = time.perf_counter(); step()
            if a.device == "cuda": torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        print(json.dumps({"model": name, "framework": f"torch {torch.__version__}", "device": a.device,
                          "batch": batch, "threads": a.threads, "median_s": statistics.median(ts), "min_s": min(ts)}))


if __name__ == "__main__":
    main()

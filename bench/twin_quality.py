"""Same network, same budget, same quality? ganforge's `dcgan` or `cgan` against its PyTorch twin,
scored by the classifier ganforge ships (Fréchet distance of its features, precision and
recall, 10 000 samples against the 10 000 test images; docs/quality.md).

ganforge trains with `ganforge train dcgan`'s own settings (gan.Trainer) and is scored with
its raw generator and with the EMA one that `sample`, `generate` and the demo use. The twin
is the same network in PyTorch (bench/torch_steps.py's dcgan28; for cgan, the embedding
fed to G beside z and the projection discriminator with spectral norm), trained with the
same Adam and loss (non-saturating; hinge for cgan), and
with settings that the flags choose, so that a difference can be pinned on the engine or
on the recipe:

    --torch-init dcgan|default        N(0, 0.02) as ganforge's dcgan, or PyTorch's own
    --torch-batches same|replacement  ganforge's epoch-shuffled order (its DataLoader, same
                                      seed), or batches drawn at random with replacement
    --ganforge-option KEY=VALUE       a training option for the ganforge run (ema_decay=0.99)

    python bench/twin_quality.py --steps 1200 --seeds 0 1 2
    python bench/twin_quality.py --model cgan --steps 1200
    python bench/twin_quality.py --steps 1200 --torch-init default --torch-batches replacement

Rows go to bench/results/twin_quality.jsonl, one per run and generator.
"""
import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
RESULTS = os.path.join(HERE, "results", "twin_quality.jsonl")
SAMPLES = 10_000


_TEST_FEATURES = []


def requested_labels(model):
    """What a conditional generator is asked for: the classes in turn (as `ganforge evaluate`)."""
    return np.arange(SAMPLES) % 10 if model == "cgan" else None


def score(images, labels=None):
    """FD, precision, recall (and the rest of `ganforge evaluate`'s report, with the class
    accuracy for a conditional generator) of 10 000 samples in [-1, 1] against the 10 000
    test images."""
    from ganforge.data import load_fashion_mnist
    from ganforge.metrics.fashion_classifier import classifier_features, classify_features, load_classifier
    from ganforge.metrics.image_quality import quality_report
    classifier = load_classifier()
    if not _TEST_FEATURES:  # the test images' features once, not per run
        _TEST_FEATURES.append(classifier_features(classifier, load_fashion_mnist(None, "test")[0][:SAMPLES]))
    features = classifier_features(classifier, images)
    report = quality_report(_TEST_FEATURES[0], features, 0)
    if labels is not None:
        report["class_accuracy"] = float((classify_features(classifier, features) == labels).mean())
    return report


def train_ganforge(model, seed, steps, options):
    from ganforge.gan import Trainer
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, out, seed=seed, steps=steps, progress=False, sample_every=10 ** 9,
                          checkpoint_every=10 ** 9, log_every=10 ** 9, **options)
        start = time.time()
        while trainer.step < steps:
            trainer.train_step()
        seconds = time.time() - start
        return {"raw": trainer.model.sample(SAMPLES), "ema": trainer.averaged_model().sample(SAMPLES)}, seconds


def torch_twin(model):
    """(G, D, losses) of the PyTorch twin: G(z, *cond), D(x, *cond); losses(d_real, d_fake)
    -> D's loss and losses(None, d_fake) -> G's."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch_steps import d28, g28
    if model == "dcgan":
        def losses(real, fake):
            bce = F.binary_cross_entropy_with_logits
            if real is None:
                return bce(fake, torch.ones_like(fake))
            return bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
        return g28(), d28(), losses

    class ConditionalG(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.net = nn.Embedding(10, 32), g28(z=132)

        def forward(self, z, labels):
            return self.net(torch.cat([z, self.embed(labels).view(len(z), -1, 1, 1)], 1))

    class ProjectionD(nn.Module):
        def __init__(self):
            super().__init__()
            sn = nn.utils.spectral_norm
            self.features = nn.Sequential(sn(nn.Conv2d(1, 64, 4, 2, 1)), nn.LeakyReLU(0.2),
                                          sn(nn.Conv2d(64, 128, 4, 2, 1)), nn.LeakyReLU(0.2), nn.Flatten())
            self.head, self.embed = sn(nn.Linear(128 * 7 * 7, 1)), sn(nn.Embedding(10, 128 * 7 * 7))

        def forward(self, x, labels):
            phi = self.features(x)
            return self.head(phi) + (self.embed(labels) * phi).sum(1, keepdim=True)

    def hinge(real, fake):
        if real is None:
            return -fake.mean()
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return ConditionalG(), ProjectionD(), hinge


def train_torch(model, seed, steps, init, batches, batch_size=64, lr=2e-4, ema_decay=0.999):
    import torch

    from ganforge.data import DataLoader, load_fashion_mnist
    torch.manual_seed(seed)
    G, D, losses = torch_twin(model)
    if init == "dcgan":  # ganforge's nets.dcgan_init (under spectral norm the trained tensor is weight_orig)
        for m in list(G.modules()) + list(D.modules()):
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.normal_(getattr(m, "weight_orig", m.weight), 0.0, 0.02)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.normal_(m.weight, 1.0, 0.02)
                torch.nn.init.zeros_(m.bias)
    opt_g = torch.optim.Adam(G.parameters(), lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr, betas=(0.5, 0.999))
    images, labels = (torch.from_numpy(a) for a in load_fashion_mnist(None, "train"))
    order = DataLoader(np.arange(len(images)), batch_size=batch_size, seed=seed)  # ganforge's own order
    rng = np.random.default_rng(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    ema = copy.deepcopy(G)
    start = time.time()
    for step in range(steps):
        index = order.next_batch().numpy() if batches == "same" else rng.integers(0, len(images), batch_size)
        real, cond = images[index], ((labels[index],) if model == "cgan" else ())
        fake = G(torch.randn(batch_size, 100, 1, 1, generator=noise), *cond)
        loss_d = losses(D(real, *cond), D(fake.detach(), *cond))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        loss_g = losses(None, D(fake, *cond))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
        with torch.no_grad():  # ganforge's EMA rule (optim.EMA), for the same comparison on this side
            decay = min(ema_decay, (1 + step) / (10 + step))
            for a, p in zip(ema.parameters(), G.parameters()):
                a.mul_(decay).add_(p, alpha=1 - decay)
            for a, b in zip(ema.buffers(), G.buffers()):
                a.copy_(b)
    seconds = time.time() - start
    z = torch.randn(SAMPLES, 100, 1, 1, generator=torch.Generator().manual_seed(0))
    asked = requested_labels(model)
    cond = (torch.from_numpy(asked),) if asked is not None else ()
    samples = {}
    for name, net in (("raw", G), ("ema", ema)):
        net.eval()
        with torch.no_grad():
            samples[name] = torch.cat([net(z[i:i + 500], *(c[i:i + 500] for c in cond))
                                       for i in range(0, SAMPLES, 500)]).numpy()
    return samples, seconds


def parse_option(text):
    key, _, value = text.partition("=")
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass
    return key, value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["dcgan", "cgan"], default="dcgan")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frameworks", nargs="+", default=["ganforge", "torch"])
    parser.add_argument("--torch-init", choices=["dcgan", "default"], default="dcgan")
    parser.add_argument("--torch-batches", choices=["same", "replacement"], default="same")
    parser.add_argument("--ganforge-option", action="append", default=[], type=parse_option, metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    options = dict(args.ganforge_option)
    rows = []
    for seed in args.seeds:
        for framework in args.frameworks:
            if framework == "ganforge":
                samples, seconds = train_ganforge(args.model, seed, args.steps, options)
                setting = {"options": options}
            else:
                samples, seconds = train_torch(args.model, seed, args.steps, args.torch_init, args.torch_batches)
                setting = {"init": args.torch_init, "batches": args.torch_batches}
            for generator, images in samples.items():
                report = score(images, requested_labels(args.model))
                row = {"model": args.model, "framework": framework, **setting, "generator": generator, "seed": seed,
                       "steps": args.steps, "train_s": round(seconds, 1), **report}
                rows.append(row)
                print(f"seed {seed} {framework:8s} {generator:3s} {json.dumps(setting)}: FD {report['fd']:.2f}  "
                      f"precision {report['precision']:.3f}  recall {report['recall']:.3f}  ({seconds:.0f} s)",
                      flush=True)
                os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\nmeans over seeds " + " ".join(map(str, args.seeds)))
    for key in sorted({(r["framework"], r["generator"]) for r in rows}):
        fds = [r["fd"] for r in rows if (r["framework"], r["generator"]) == key]
        spread = f" (spread {min(fds):.2f}-{max(fds):.2f})" if len(fds) > 1 else ""
        print(f"  {key[0]:8s} {key[1]:3s} FD {statistics.mean(fds):.2f}{spread}")


if __name__ == "__main__":
    main()

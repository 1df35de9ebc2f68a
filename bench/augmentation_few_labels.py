"""Few labels: does a cGAN trained on the labelled images add accuracy when its samples
join them? With 10 and with 100 labelled Fashion-MNIST images per class (drawn by the
seed), the shipped classifier's network is trained on the real labelled images alone,
and on the same images plus cGAN samples (real images repeated to as many as the
samples, so each batch is half real); both are tested on the real test set.

The cGAN (`ganforge train cgan --labels-per-class N`) sees the labelled images only, not
the other training images: a plain conditional GAN, not a semi-supervised one.

    python bench/augmentation_few_labels.py --per-class 10 100 --seeds 0 1 2 --json bench/results/augmentation_few_labels.jsonl
"""
import argparse
import json
import os
import time

import numpy as np

from ganforge.data import load_fashion_mnist
from ganforge.gan import Trainer
from ganforge.gan.trainer import labelled_subset
from ganforge.metrics.fashion_classifier import classify, fit_classifier


def accuracy(images, labels, test, steps, seed):
    classifier = fit_classifier(images, labels, batch_size=64, seed=seed, log=False, steps=steps)
    return float((classify(classifier, test[0]) == test[1]).mean())


def one(per_class, seed, args, train, test):
    chosen = labelled_subset(train[1], per_class, seed)
    real, labels = train[0][chosen], train[1][chosen]
    start = time.time()
    trainer = Trainer("cgan", os.path.join(args.out_dir, f"cgan-{per_class}-seed{seed}"), labels_per_class=per_class,
                      seed=seed, steps=args.gan_steps, progress=False, sample_every=args.gan_steps,
                      checkpoint_every=args.gan_steps)
    trainer.train()
    gan_s = time.time() - start
    wanted = np.arange(args.samples) % 10
    synthetic = trainer.averaged_model().sample(args.samples, labels=wanted, seed=1000 + seed)
    repeats = int(np.ceil(args.samples / len(real)))
    mixed = np.concatenate([np.tile(real, (repeats, 1, 1, 1))[:args.samples], synthetic])
    mixed_labels = np.concatenate([np.tile(labels, repeats)[:args.samples], wanted])
    return {"per_class": per_class, "seed": seed, "gan_steps": args.gan_steps, "samples": args.samples,
            "classifier_steps": args.classifier_steps, "cgan_seconds": round(gan_s),
            "real_only": accuracy(real, labels, test, args.classifier_steps, seed),
            "real_plus_cgan": accuracy(mixed, mixed_labels, test, args.classifier_steps, seed)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gan-steps", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=6000, help="cGAN samples added (the classes in turn)")
    parser.add_argument("--classifier-steps", type=int, default=1500)
    parser.add_argument("--out-dir", default="runs/few-labels")
    parser.add_argument("--json", help="append each row to this JSON-lines file")
    args = parser.parse_args()
    train, test = load_fashion_mnist(None, "train"), load_fashion_mnist(None, "test")
    rows = []
    for per_class in args.per_class:
        for seed in args.seeds:
            row = one(per_class, seed, args, train, test)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\n| labelled per class | real only | real + cGAN samples | gain |\n|---|---|---|---|")
    for per_class in args.per_class:
        mine = [r for r in rows if r["per_class"] == per_class]
        real = np.array([r["real_only"] for r in mine]) * 100
        both = np.array([r["real_plus_cgan"] for r in mine]) * 100
        error = lambda v: v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0  # noqa: E731
        print(f"| {per_class} | {real.mean():.1f} ± {error(real):.1f} | {both.mean():.1f} ± {error(both):.1f} | "
              f"{(both - real).mean():+.1f} ± {error(both - real):.1f} |")


if __name__ == "__main__":
    main()

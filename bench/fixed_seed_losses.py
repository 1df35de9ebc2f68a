"""Losses of short fixed-seed training runs (dcgan and sngan on Fashion-MNIST, wgan-gp and gan on
ring8), to check that an optimization changes results only by float32 rounding:

    OPENBLAS_NUM_THREADS=1 python bench/fixed_seed_losses.py --out before.json   (on the old commit)
    OPENBLAS_NUM_THREADS=1 python bench/fixed_seed_losses.py --out after.json    (on the new one)
    python bench/fixed_seed_losses.py --compare before.json after.json

GAN training amplifies rounding from step to step, so judge the differences against the
spread between two BLAS thread counts on one commit (OPENBLAS_NUM_THREADS=1 and 2).
"""
import argparse
import json
import tempfile

RUNS = [("dcgan", "fashion-mnist"), ("wgan-gp", "ring8"), ("sngan", "fashion-mnist"), ("gan", "ring8")]


def losses(steps):
    from ganforge.gan import Trainer
    result = {}
    for model, data in RUNS:
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(model, folder, data=data, steps=steps, batch_size=64, log_every=1,
                              sample_every=10**9, checkpoint_every=10**9, progress=False)
            result[model] = trainer.train()
    return result


def compare(a, b):
    for variant in a:
        worst = [max(abs(x[k] - y[k]) / abs(x[k]) for k in x if k != "step") for x, y in zip(a[variant], b[variant])]
        print(f"{variant:8s} largest relative loss difference by step: " +
              ", ".join(f"{i + 1}: {w:.1e}" for i, w in enumerate(worst)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", help="write the losses here (JSON)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two files written with --out")
    args = parser.parse_args()
    if args.compare:
        compare(*(json.load(open(path)) for path in args.compare))
        return
    result = losses(args.steps)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

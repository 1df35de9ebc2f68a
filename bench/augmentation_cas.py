"""The classification accuracy score (Ravuri & Vinyals 2019) of a class-conditional run: a
classifier trained on its samples only, tested on the real Fashion-MNIST test set, beside
the same classifier trained on the real training set (the recipe of the shipped feature
classifier: ganforge/metrics/fashion_classifier.py).

    python bench/augmentation_cas.py runs/cgan --n 60000 --seeds 0 1 2
"""
import argparse
import json
import time

import numpy as np

from ganforge.data import load_fashion_mnist
from ganforge.gan import load_model
from ganforge.metrics.fashion_classifier import classify, fit_classifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a cgan run folder")
    parser.add_argument("--n", type=int, default=60000, help="generated training images (the real set's size)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="classifier seeds")
    parser.add_argument("--real", action="store_true", help="also train on the real images (the baseline)")
    parser.add_argument("--json", help="append the rows to this JSON-lines file")
    args = parser.parse_args()
    model = load_model(args.run)
    if not model.conditional:
        raise SystemExit(f"{args.run} holds a {model.name} run: the score needs a class-conditional (cgan) one")
    test_images, test_labels = load_fashion_mnist(None, "test")
    labels = np.arange(args.n) % model.data.num_classes
    sources = {"generated": (model.sample(args.n, labels=labels, seed=1234), labels)}
    if args.real:
        sources["real"] = load_fashion_mnist(None, "train")
    for name, (images, train_labels) in sources.items():
        for seed in args.seeds:
            start = time.time()
            classifier = fit_classifier(images, train_labels, args.epochs, seed=seed, log=False)
            accuracy = float((classify(classifier, test_images) == test_labels).mean())
            row = {"run": args.run, "step": model.step, "train_on": name, "images": len(images), "seed": seed,
                   "epochs": args.epochs, "test_accuracy": accuracy, "seconds": round(time.time() - start)}
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

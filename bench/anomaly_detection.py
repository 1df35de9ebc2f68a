"""The one-class protocol on Fashion-MNIST: for each class, train `anomaly` on that class's
training images alone (less the 10% held out for the threshold), score the whole test
set, and report AUROC (the class's 1000 test images normal, the other 9000 anomalous),
with the CPU time of each class's training, beside the published rows.

    python bench/anomaly_detection.py --classes 0 1 2 3 4 5 6 7 8 9 --json bench/results/anomaly_fashion.jsonl

One class after another in this process (set GANFORGE_NUM_THREADS for the threads);
a class already in --json is skipped, so an interrupted study continues. --rescore scores
the runs already trained in --out-dir again, with this script's --nearest (their training
times come from --json's earlier rows of the same runs).
"""
import argparse
import json
import os
import time

import numpy as np

from ganforge.data import load_fashion_mnist
from ganforge.gan import Trainer, load_model
from ganforge.gan.trainer import normal_images_of_run
from ganforge.metrics.anomaly import auroc, report_of

# per class 0-9 and mean AUROC (%), one-class protocol on Fashion-MNIST
PUBLISHED = [
    ("GEOM (Golan & El-Yaniv 2018)", [99.4, 97.6, 91.1, 89.9, 92.1, 93.4, 83.3, 98.9, 90.8, 99.2], 93.5),
    ("ARNet (Huang et al. 2019)", None, 93.9),
    ("Deep SAD (Ruff et al. 2020)", None, "89.2 ± 6.2"),
    ("OCGAN (a reproduction)", None, 86.7),
]


def run_class(k, args, trained=None):
    """Train class k's run (or, with `trained`, the row of its earlier training, load it)
    and score the test set."""
    out = os.path.join(args.out_dir, f"class-{k}")
    if trained:
        model = load_model(out)
        if model.step != args.steps:
            raise ValueError(f"--rescore: {out} is at step {model.step}, not --steps {args.steps}")
        model.config["nearest"] = args.nearest  # a setting of the score alone: training does not use it
        cpu, wall = trained["train_cpu_s"], trained["train_wall_s"]
    else:
        trainer = Trainer("anomaly", out, normal_class=k, steps=args.steps, encoder_steps=args.encoder_steps,
                          transformations=args.transformations, nearest=args.nearest,
                          seed=args.seed, progress=False, sample_every=args.steps, checkpoint_every=args.steps,
                          log_every=100)
        wall, cpu = time.time(), time.process_time()
        trainer.train()
        wall, cpu = time.time() - wall, time.process_time() - cpu
        trainer.save()
        model = trainer.model
    images, labels = load_fashion_mnist(None, "test")
    held_out, training = normal_images_of_run(model.config, "held-out", "train")
    scoring = time.process_time()
    threshold = model.threshold(held_out, args.fpr, training)
    scores = model.anomaly_scores(images)
    scoring = time.process_time() - scoring
    report = report_of(scores, labels != k, threshold, len(held_out))
    # every test image's scores, so that other weightings of the parts can be measured later
    np.savez(os.path.join(out, "test_scores.npz"), labels=labels, **scores)
    return {"class": k, "steps": args.steps, "encoder_steps": args.encoder_steps, "seed": args.seed,
            "transformations": model.config["transformations"], "nearest": args.nearest,
            "train_cpu_s": round(cpu), "train_wall_s": round(wall), "score_cpu_s": round(scoring),
            **{f"auroc_{name}": row["auroc"] for name, row in report["scores"].items()},
            "tpr": report["scores"]["score"]["tpr"], "fpr": report["scores"]["score"]["fpr"],
            "auroc_nearest_pixels": nearest_training_image_auroc(training, images, labels, k)}


def nearest_training_image_auroc(training, test_images, test_labels, k):
    """A reference without learning: score = squared pixel distance to the nearest normal
    training image (`training`: the same images the GAN trained on)."""
    normal = training.reshape(len(training), -1)
    test = test_images.reshape(len(test_images), -1)
    squared = (normal ** 2).sum(1)[None]
    nearest = np.concatenate([((chunk ** 2).sum(1)[:, None] + squared - 2 * chunk @ normal.T).min(1)
                              for chunk in np.array_split(test, 10)])
    return auroc(nearest, test_labels != k)


def table(rows):
    rows = sorted(rows, key=lambda r: r["class"])
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    head = "| method | " + " | ".join(str(r["class"]) for r in rows) + " | mean |"
    lines = [head, "|---" * (len(rows) + 2) + "|"]
    parts = ["residual"] + ["transformations"] * bool(rows[0].get("transformations")) + \
        ["nearest"] * bool(rows[0].get("nearest"))
    score = " + ".join(parts) if len(parts) > 1 else "f-AnoGAN's residual"
    for key, name in (("auroc_score", f"**ganforge anomaly** ({score})"),
                      ("auroc_transformations", "ganforge anomaly, D's transformation task alone"),
                      ("auroc_nearest", "ganforge anomaly, nearest normal training image in D's features alone"),
                      ("auroc_residual", "ganforge anomaly, f-AnoGAN's residual alone (pixels + features)"),
                      ("auroc_pixels", "ganforge anomaly, pixel residual alone"),
                      ("auroc_features", "ganforge anomaly, D-feature residual alone"),
                      ("auroc_nearest_pixels", "nearest normal training image in pixels (no learning)")):
        if key not in rows[0]:
            continue
        lines.append(f"| {name} | " + " | ".join(pct(r[key]) for r in rows) + f" | {pct(mean(key))} |")
    lines.append("| CPU s to train | " + " | ".join(str(r["train_cpu_s"]) for r in rows) + " | |")
    if any("score_cpu_s" in r for r in rows):
        lines.append("| CPU s to score the test set | " + " | ".join(str(r.get("score_cpu_s", "")) for r in rows)
                     + " | |")
    if len(rows) == 10:
        for name, per_class, mean_value in PUBLISHED:
            cells = [f"{v:.1f}" for v in per_class] if per_class else [""] * 10
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean_value} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--encoder-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transformations", type=int, default=72, choices=(0, 8, 72))
    parser.add_argument("--nearest", type=int, default=1, help="the score's nearest normal training images (0: none)")
    parser.add_argument("--rescore", action="store_true",
                        help="score the runs already in --out-dir again instead of training (needs --json's rows)")
    parser.add_argument("--fpr", type=float, default=0.05)
    parser.add_argument("--out-dir", default="runs/anomaly-study")
    parser.add_argument("--json", help="append each class's row to this JSON-lines file (and skip classes in it)")
    args = parser.parse_args()
    earlier = []
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            earlier = [r for r in map(json.loads, f) if r["steps"] == args.steps and r["seed"] == args.seed
                       and r.get("transformations", 0) == args.transformations]
    rows = [r for r in earlier if r.get("nearest", 0) == args.nearest]
    for k in args.classes:
        if any(r["class"] == k for r in rows):
            continue
        trained = None
        if args.rescore:
            trained = next((r for r in earlier if r["class"] == k), None)
            if trained is None:
                raise SystemExit(f"--rescore: --json has no row of class {k} at --steps {args.steps}, seed "
                                 f"{args.seed}: train it first (leave out --rescore)")
        row = run_class(k, args, trained)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(table([r for r in rows if r["class"] in args.classes]))


if __name__ == "__main__":
    main()

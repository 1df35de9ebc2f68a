"""Mode coverage of GAN recipes on ring8 and grid25 (the protocol of bench/BENCH_MODELS.md):
train each recipe (ganforge.gan.recipes: a model and its options) on each mixture with
several seeds, draw 2500 samples from the generator's EMA weights, and report modes
captured, percent high-quality samples and KL, as mean and standard error over seeds,
beside the published numbers.

    python bench/mode_coverage.py --recipes gan,gan-r1,wgan-gp,sngan --seeds 5 --out docs/mode_coverage.md

Each run trains in its own process (two at a time by default, one BLAS thread each).
"""
import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ganforge.gan.recipes import RECIPES, recipe

PUBLISHED = [  # (method, ring8 modes, ring8 HQ%, grid25 modes, grid25 HQ%, source)
    ("GAN", 1, 99.3, 3.3, 0.5, "VEEGAN, Table 1"),
    ("Unrolled GAN", 7.6, 35.6, 23.6, 16.0, "VEEGAN, Table 1"),
    ("VEEGAN", 8.0, 52.9, 24.6, 40.0, "VEEGAN, Table 1"),
    ("WGAN-GP", 6.8, 59.6, 24.2, 28.7, "GDPP, Table 1"),
    ("GDPP", 8.0, 71.7, 24.8, 68.5, "GDPP, Table 1"),
    ("GAN", 6.3, 98.2, 17.3, 94.8, "PacGAN, Table 1"),
    ("PacGAN4", 7.8, 95.9, 24.8, 93.6, "PacGAN, Table 1"),
]



def run(name, data, seed, steps):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "ganforge.gan.recipes", name, data, str(seed), str(steps)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return name, data, seed, {"error": done.stderr.strip().splitlines()[-1]}
    return name, data, seed, json.loads(done.stdout.strip().splitlines()[-1])


def mean_and_error(values):
    values = np.asarray(values, dtype=np.float64)
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{values.mean():.1f} ± {error:.1f}"


def table(results, recipes, datasets, seeds, steps):
    lines = [f"Mode coverage, {seeds} seeds per cell (mean ± standard error), 2500 samples from the EMA "
             f"generator, steps: {steps} (each recipe's unless a number).", "",
             "| method | " + " | ".join(f"{d} modes | {d} HQ% | {d} KL" for d in datasets) + " | source |",
             "|---" * (1 + 3 * len(datasets)) + "|---|"]
    for name in recipes:
        cells = []
        for data in datasets:
            runs = [r for (v, d, _), r in results.items() if v == name and d == data and "error" not in r]
            if not runs:
                cells += ["failed"] * 3
                continue
            cells += [mean_and_error([r["modes"] for r in runs]),
                      mean_and_error([r["high_quality_percent"] for r in runs]),
                      f"{np.mean([r['kl'] for r in runs]):.2f}"]
        lines.append(f"| ganforge {name}: {RECIPES[name][2]} | " + " | ".join(cells) + " | this run |")
    if datasets == ["ring8", "grid25"]:
        for method, r_modes, r_hq, g_modes, g_hq, source in PUBLISHED:
            lines.append(f"| {method} | {r_modes} | {r_hq} | | {g_modes} | {g_hq} | | {source} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="gan,gan-r1,wgan-gp,sngan", help=f"from: {', '.join(RECIPES)}")
    parser.add_argument("--data", default="ring8,grid25")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", default="default", help="generator steps, or 'default' for each recipe's")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", help="also write the table (and the raw results as JSON) here")
    args = parser.parse_args()
    recipes, datasets = args.recipes.split(","), args.data.split(",")
    for name in recipes:
        recipe(name)  # an unknown name fails now, not after the other runs
    jobs = [(v, d, s, args.steps) for v in recipes for d in datasets for s in range(args.seeds)]
    results = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for name, data, seed, result in pool.map(lambda job: run(*job), jobs):
            results[(name, data, seed)] = result
            print(f"{name:10s} {data:7s} seed {seed}: {result}", flush=True)
    text = table(results, recipes, datasets, args.seeds, args.steps)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump([{"recipe": v, "data": d, "seed": s, **r} for (v, d, s), r in results.items()], f, indent=1)


if __name__ == "__main__":
    main()

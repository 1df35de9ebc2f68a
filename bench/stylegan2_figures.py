"""The pictures of docs/stylegan2.md from a trained run: a truncation sweep (the same
seeds at psi 1, 0.85, 0.7, 0.5 and 0, one row each), the style-mixing grid, and a latent walk.

    python bench/stylegan2_figures.py runs/stylegan2-fashion32 --out docs
"""
import argparse
import os

import numpy as np

from ganforge import io
from ganforge.gan import load_model

TRUNCATIONS = (1.0, 0.85, 0.7, 0.5, 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--columns", type=int, default=10)
    args = parser.parse_args()
    model = load_model(args.run)
    sweep = np.concatenate([model.sample(args.columns, seed=1, truncation=psi) for psi in TRUNCATIONS])
    io.save_image_grid(os.path.join(args.out, "stylegan2-truncation.png"), sweep, rows=args.columns)
    images, columns = model.style_mixing_grid(rows=3, columns=6, seed=2)
    io.save_image_grid(os.path.join(args.out, "stylegan2-mix.png"), images, rows=columns)
    io.save_gif(os.path.join(args.out, "stylegan2-walk.gif"), model.latent_walk(6, 24, seed=3))
    print(f"wrote stylegan2-truncation.png (rows: psi {', '.join(map(str, TRUNCATIONS))}), stylegan2-mix.png "
          f"(ranges {', '.join(model.style_ranges())}) and stylegan2-walk.gif to {args.out} from {args.run} "
          f"at step {model.step}")


if __name__ == "__main__":
    main()

"""CycleGAN on fashion-edges against its floor and its ceiling (issue 18's quality protocol):

  identity    every image left as it is
  supervised  the same generators trained on the true pairs with L1 alone (pix2pix without
              its GAN term): what unpaired training could reach at best
  cyclegan    a trained run (`ganforge train cyclegan --data fashion-edges ...`)

each scored on the 10000 test pairs: L1 and PSNR per direction, and the Fashion-MNIST
classifier's accuracy on edges -> garment translations. The supervised generators get the
run's own steps, batch size, widths and optimizer.

    python bench/cyclegan_quality.py runs/cyclegan-fashion-edges [--json bench/results/cyclegan_fashion_edges.json]
"""
import argparse
import json
import time

import numpy as np

from ganforge import functional as F
from ganforge import io, optim
from ganforge.data import DataLoader, edge_maps, load_fashion_mnist
from ganforge.gan import load_model
from ganforge.gan.steps import update
from ganforge.metrics.translation import identity_translation, translation_scores
from ganforge.tensor import manual_seed


def train_supervised(model, steps, batch_size, seed=0):
    """Fresh generators of the run's shape, trained on (edges, garment) pairs with L1."""
    manual_seed(seed)
    fresh = type(model)(model.config, model.data)
    G_ab, G_ba = fresh.nets["G_ab"], fresh.nets["G_ba"]
    garments, _ = load_fashion_mnist(model.config.get("data_path"), "train")
    loader = DataLoader(edge_maps(garments), garments, batch_size=batch_size, seed=seed)
    lr, betas = model.config["lr"], tuple(model.config["betas"])
    opt_ab, opt_ba = optim.Adam(G_ab.parameters(), lr=lr, betas=betas), optim.Adam(G_ba.parameters(), lr=lr, betas=betas)
    start = time.time()
    for step in range(steps):
        edges, garment = loader.next_batch()
        update(opt_ab, F.l1_loss(G_ab(edges), garment))
        update(opt_ba, F.l1_loss(G_ba(garment), edges))
        if (step + 1) % 500 == 0:
            print(f"supervised: step {step + 1}/{steps} ({time.time() - start:.0f} s)", flush=True)
    for net in fresh.nets.values():
        net.eval()
    return fresh


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a CycleGAN run trained on fashion-edges")
    parser.add_argument("--n", type=int, default=10000, help="test pairs scored")
    parser.add_argument("--json", help="write the table here too")
    parser.add_argument("--picture", help="a PNG of test translations by each model")
    args = parser.parse_args()
    model = load_model(args.run)
    if model.name != "cyclegan" or model.data.name != "fashion-edges":
        raise SystemExit(f"{args.run} is not a CycleGAN run on fashion-edges")
    steps, batch = model.step, model.config["batch_size"]
    supervised = train_supervised(model, steps, batch)
    rows = {}
    for name, translate in (("identity", identity_translation), ("supervised L1", supervised.translate),
                            ("cyclegan", model.translate)):
        rows[name] = translation_scores(translate, args.n)
        print(name, json.dumps(rows[name]), flush=True)
    print(f"\n{args.n} fashion-edges test pairs; cyclegan and supervised: {steps} steps of batch {batch}")
    print(f"{'':16s}{'edges->garment L1':>19s}{'PSNR':>8s}{'class acc':>11s}{'garment->edges L1':>19s}{'PSNR':>8s}")
    for name, scores in rows.items():
        g, e = scores["edges -> garment"], scores["garment -> edges"]
        print(f"{name:16s}{g['l1']:19.4f}{g['psnr']:8.2f}{g['class_accuracy']:11.3f}{e['l1']:19.4f}{e['psnr']:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "steps": steps, "batch_size": batch, "n": args.n, **rows}, f, indent=1)
    if args.picture:
        from ganforge.data import load_fashion_edges
        edges, garments, _ = load_fashion_edges(split="test")
        pick = slice(0, 10)
        grid = [edges[pick], supervised.translate(edges[pick], "ab"), model.translate(edges[pick], "ab"), garments[pick],
                supervised.translate(garments[pick], "ba"), model.translate(garments[pick], "ba")]
        io.save_image_grid(args.picture, np.concatenate(grid), rows=10, scale=3)


if __name__ == "__main__":
    main()

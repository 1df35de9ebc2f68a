"""Super-resolution runs beside bicubic interpolation (issue 19's table and crop picture):
PSNR and SSIM on the luma with `scale` border pixels cropped (bench/BENCH_MODELS.md's
protocol), on Fashion-MNIST the shipped classifier's accuracy on the upscaled test
images (does the garment stay recognizable), and "detail": the mean absolute difference
between neighbouring pixels of the luma, over the originals' (metrics.super_resolution).

    python bench/srgan_quality.py runs/sr-fashion-x4 runs/srgan-fashion-x4 \\
        --json bench/results/srgan_quality.json --picture docs/srgan-fashion-x4.png
    python bench/srgan_quality.py runs/sr-photos-x4 runs/srgan-photos-x4 --data data/photos/test ...

Every run must upscale by the same factor. Rows go into --json keyed by data set and
scale, so that runs of several settings collect in one file.
"""
import argparse
import json
import os

import numpy as np

from ganforge import io
from ganforge.data import load_fashion_mnist, resize_bicubic
from ganforge.data.folder import list_images, read_image
from ganforge.gan import load_model
from ganforge.metrics import upscaling_report
from ganforge.metrics.super_resolution import bicubic_downscale


def label(model):
    return "srresnet" if model.config["content_only"] else f"srgan ({model.config['content'] or 'mse'})"


def picture(path, models, originals, scale, crop=48):
    """Rows of: bicubic, each run's upscaling, the original, for a crop of `crop` pixels
    from the middle of each held-out image (the whole image when it is smaller)."""
    rows = []
    for hr in originals:
        hr = hr[:, :hr.shape[1] - hr.shape[1] % scale, :hr.shape[2] - hr.shape[2] % scale][None]
        lr = bicubic_downscale(hr, scale)
        upscaled = [np.clip(resize_bicubic(lr, *hr.shape[2:]), -1, 1)] + [m.upscale(lr) for m in models] + [hr]
        size = min(crop, hr.shape[2], hr.shape[3])
        top, left = (hr.shape[2] - size) // 2 // scale * scale, (hr.shape[3] - size) // 2 // scale * scale
        rows.append(np.concatenate([u[:, :, top:top + size, left:left + size] for u in upscaled]))
    images = np.concatenate(rows)
    columns = len(models) + 2
    if images.shape[1] != 3:  # grey and colour rows in one picture: all as RGB
        images = np.repeat(images, 3, axis=1)
    io.save_image_grid(path, images, rows=columns, scale=4 if crop <= 32 else 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="super-resolution runs (srgan, with or without --content-only)")
    parser.add_argument("--data", help="a folder of held-out images (default: the Fashion-MNIST test set)")
    parser.add_argument("--n", type=int, default=10000, help="Fashion-MNIST test images scored")
    parser.add_argument("--json", help="add the rows to this JSON file")
    parser.add_argument("--picture", help="a PNG of crops: bicubic, each run, the original")
    parser.add_argument("--picture-items", type=int, default=6)
    args = parser.parse_args()
    models = [load_model(run) for run in args.runs]
    scales = {m.scale for m in models}
    if len(scales) != 1 or any(m.data_kind != "paired" for m in models):
        raise SystemExit("every run must be a super-resolution run of one scale")
    scale = scales.pop()
    if args.data:
        originals, labels = [read_image(p, models[0].channels) for p in list_images(args.data)], None
        data = os.path.basename(os.path.normpath(os.path.dirname(os.path.normpath(args.data)))) or args.data
        crop = 96
    else:
        images, labels = load_fashion_mnist(None, "test")
        originals, labels, data, crop = images[:args.n], labels[:args.n], "fashion-mnist", 28
    table = {}
    for run, model in zip(args.runs, models):
        report = upscaling_report(model.upscale, originals, scale, labels)
        table.setdefault("bicubic", report["bicubic"])
        if "original" in report:
            table.setdefault("original", report["original"])
        table[label(model)] = {**report["model"], "run": run, "steps": model.step}
    names = ["psnr", "ssim", "detail"] + (["class_accuracy"] if labels is not None else [])
    print(f"{data} x{scale}, {len(originals)} held-out images")
    print(f"{'':22s}" + "".join(f"{n:>16s}" for n in names))
    for row, values in table.items():
        print(f"{row:22s}" + "".join(f"{values[n]:16.4f}" if n in values else f"{'-':>16s}" for n in names))
    if args.json:
        saved = json.load(open(args.json)) if os.path.exists(args.json) else {}
        saved[f"{data} x{scale}"] = table
        with open(args.json, "w") as f:
            json.dump(saved, f, indent=1)
    if args.picture:
        items = originals[:args.picture_items]
        picture(args.picture, models, list(items), scale, crop)


if __name__ == "__main__":
    main()

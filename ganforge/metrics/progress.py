"""The measures a run takes of itself while it trains (`ganforge train --eval-every N`):
the scores `ganforge evaluate` prints, on fewer images, as one flat row per evaluation
({"step": ..., "fd": ..., ...}) for the run's metrics.jsonl, its curves and its report."""
import numpy as np

from ..data import load_fashion_mnist
from .fashion_classifier import generated_report
from .mode_coverage import mode_coverage
from .super_resolution import upscaling_report
from .translation import translation_scores


def measurable(model):
    """Why `model`'s data has no measure here (a sentence), or None when it has one."""
    data = model.data.name
    if model.data_kind == "unpaired":
        return None if data == "fashion-edges" else f"{data} has no true pairs to measure translations against"
    if data in ("fashion-mnist", "ring8", "grid25"):
        return None
    return f"{data} has no reference measure here (ganforge's classifier knows Fashion-MNIST)"


def training_scores(model, n=2000, data_path=None, seed=0):
    """{measure: value} of `model` as it stands (its networks in eval mode): FD, KID,
    precision, recall and, for a conditional model, class accuracy for Fashion-MNIST
    samples; mode coverage for the 2-D mixtures; L1, PSNR and class accuracy for
    fashion-edges translations; PSNR, SSIM and class accuracy for upscaled Fashion-MNIST."""
    if measurable(model) is not None:
        raise ValueError(measurable(model))
    if model.data_kind == "unpaired":
        scores = translation_scores(model.translate, n, data_path)
        return {f"{direction}: {name}": value for direction, row in scores.items() for name, value in row.items()}
    if model.data_kind == "paired":
        images, labels = load_fashion_mnist(data_path, "test")
        return upscaling_report(model.upscale, images[:n], model.scale, labels[:n])["model"]
    labels = np.arange(n) % model.data.num_classes if model.conditional else None
    samples = model.sample(n, labels=labels, seed=seed)
    if model.data.name in ("ring8", "grid25"):
        return dict(mode_coverage(samples, model.data.name))
    return generated_report(samples, labels, n, data_path, seed)

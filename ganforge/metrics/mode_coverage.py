"""Mode coverage on the 2-D mixtures (the VEEGAN / PacGAN protocol of bench/BENCH_MODELS.md)."""
import numpy as np

from ..data.mixtures import mixture


def mode_coverage(samples, name_or_means="ring8", std=None):
    """Modes captured, percent of high-quality samples and KL from uniform.

    A sample is high quality if it lies within 3 std of its nearest mean; a mode is
    captured if it is the nearest mean of at least one high-quality sample; the KL is
    that of the high-quality samples' mode histogram from the uniform one (NaN when no
    sample is high quality)."""
    if isinstance(name_or_means, str):
        means, std = mixture(name_or_means)
    else:
        means = np.asarray(name_or_means)
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != means.shape[1]:
        raise ValueError(f"mode_coverage expects samples of shape (N, {means.shape[1]}), got {samples.shape}")
    distances = np.linalg.norm(samples[:, None, :] - means[None], axis=2)
    nearest, closest = distances.argmin(axis=1), distances.min(axis=1)
    good = closest <= 3 * std
    counts = np.bincount(nearest[good], minlength=len(means))
    p = counts / max(counts.sum(), 1)
    # with no high-quality sample there is no histogram to compare: NaN, not a perfect 0
    kl = float(np.sum(p[p > 0] * np.log(p[p > 0] * len(means)))) if good.any() else float("nan")
    return {"modes": int((counts > 0).sum()), "high_quality_percent": float(100.0 * good.mean()), "kl": kl}

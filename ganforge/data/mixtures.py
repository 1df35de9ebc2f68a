"""The 2-D Gaussian mixtures of the mode-collapse literature (VEEGAN, PacGAN), exactly as
bench/BENCH_MODELS.md defines them."""
import math

import numpy as np

# ring8: 8 means on the unit circle at angles 2 pi k / 8 (not linspace(0, 2 pi, 8), which
# repeats the first point and yields 7 distinct modes), std 0.01.
RING8_MEANS = np.array([[math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)] for k in range(8)])
RING8_STD = 0.01

# grid25: means on {-4, -2, 0, 2, 4}^2, std 0.05.
GRID25_MEANS = np.array([[x, y] for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)], dtype=np.float64)
GRID25_STD = 0.05

MIXTURES = {"ring8": (RING8_MEANS, RING8_STD), "grid25": (GRID25_MEANS, GRID25_STD)}


def mixture(name):
    """(means, std) of a named mixture."""
    if name not in MIXTURES:
        raise ValueError(f"unknown mixture {name!r}: choose from {', '.join(MIXTURES)}")
    return MIXTURES[name]


def sample_mixture(name, n, rng):
    """n points (float32, shape (n, 2)) from the mixture: a uniformly chosen mean plus
    isotropic Gaussian noise. `rng` is a numpy Generator."""
    means, std = mixture(name)
    centers = means[rng.integers(0, len(means), size=n)]
    return (centers + std * rng.standard_normal((n, 2))).astype(np.float32)

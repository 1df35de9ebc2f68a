"""Image quality without Inception: measures computed on the features of a small
Fashion-MNIST classifier that ganforge trains itself and ships frozen (bench/BENCH_MODELS.md).

- Frechet distance (FD) between Gaussians fitted to the two feature sets;
- KID, the unbiased squared MMD under the kernel (x.y / d + 1)^3, averaged over subsets;
- precision and recall (Kynkaanniemi et al. 2019, k = 3): the share of each set inside
  the other's k-nearest-neighbour balls;
- density and coverage (Naeem et al. 2020, k = 5);
- class accuracy: how often the classifier agrees with the label a conditional
  generator was asked for.

Each function takes two (N, D) NumPy feature arrays, `real` first.
"""
import numpy as np

CHUNK = 1024  # rows of a distance matrix computed at a time (10k x 10k would be 400 MB)


def frechet_distance(real, fake):
    """||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    # tr (S_r S_f)^(1/2) = tr (A S_f A)^(1/2) with A = S_r^(1/2): A S_f A is symmetric,
    # so its square root's trace is the sum of the roots of its eigenvalues.
    w, v = np.linalg.eigh(s_r)
    root_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_r @ s_f @ root_r)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(np.sum((mu_r - mu_f) ** 2) + np.trace(s_r) + np.trace(s_f) - 2 * trace_root)


def kernel_inception_distance(real, fake, subsets=100, subset_size=1000, seed=0):
    """(mean, std) over `subsets` random subsets of the unbiased MMD^2, cubic polynomial kernel."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(real)} and {len(fake)}")
    rng = np.random.default_rng(seed)
    dim = real.shape[1]
    estimates = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates.append(off_diagonal - 2 * k_xy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def _distances(a, b):
    """Euclidean distances between the rows of a and b, float32 (one chunk of rows of a)."""
    squared = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]
    return np.sqrt(np.clip(squared, 0, None))


def _knn_radii(x, k):
    """Distance from each row of x to its k-th nearest other row."""
    radii = np.empty(len(x), np.float32)
    for start in range(0, len(x), CHUNK):
        d = _distances(x[start:start + CHUNK], x)
        radii[start:start + CHUNK] = np.partition(d, k, axis=1)[:, k]  # column 0 is the row itself
    return radii


def _ball_counts(points, centres, radii):
    """For each point, how many of the balls (centres, radii) contain it."""
    counts = np.empty(len(points), np.int64)
    for start in range(0, len(points), CHUNK):
        counts[start:start + CHUNK] = (_distances(points[start:start + CHUNK], centres) <= radii[None]).sum(1)
    return counts


def precision_recall(real, fake, k=3):
    """Precision: share of fake samples inside some real sample's k-NN ball; recall: the reverse."""
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    precision = (_ball_counts(fake, real, _knn_radii(real, k)) > 0).mean()
    recall = (_ball_counts(real, fake, _knn_radii(fake, k)) > 0).mean()
    return float(precision), float(recall)


def density_coverage(real, fake, k=5):
    """Density: real k-NN balls containing each fake sample, averaged and divided by k;
    coverage: share of real samples whose k-NN ball holds at least one fake sample."""
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    radii = _knn_radii(real, k)
    density = _ball_counts(fake, real, radii).sum() / (k * len(fake))
    nearest_fake = np.empty(len(real), np.float32)
    for start in range(0, len(real), CHUNK):
        nearest_fake[start:start + CHUNK] = _distances(real[start:start + CHUNK], fake).min(1)
    return float(density), float((nearest_fake <= radii).mean())


def quality_report(real, fake, seed=0):
    """Every distributional measure above, as one dict."""
    kid, kid_std = kernel_inception_distance(real, fake, seed=seed)
    precision, recall = precision_recall(real, fake)
    density, coverage = density_coverage(real, fake)
    return {"fd": frechet_distance(real, fake), "kid": kid, "kid_std": kid_std, "precision": precision,
            "recall": recall, "density": density, "coverage": coverage}

"""The quality measures: mode coverage, and the image measures checked against
brute-force definitions and cases with known answers; the frozen classifier."""
import shutil

import numpy as np
import pytest

from ganforge import io
from ganforge.metrics import image_quality as iq
from ganforge.metrics import mode_coverage
from ganforge.metrics.fashion_classifier import WEIGHTS, classify, fashion_mnist_report, load_classifier

from .conftest import needs_fashion_mnist


def cloud(n, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim))  # correlated features


def test_frechet_distance_known_answers():
    x = cloud(4000)
    assert iq.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(6.0)
    assert iq.frechet_distance(x, x + shift) == pytest.approx(np.sum(shift ** 2), rel=1e-9)
    # doubling the centred cloud: S_f = 4 S_r commutes with S_r, and FD = tr(S_r) + |mean shift|^2
    centred = x - x.mean(0)
    expected = np.trace(np.cov(x, rowvar=False)) + np.sum(x.mean(0) ** 2)
    assert iq.frechet_distance(x, 2 * centred) == pytest.approx(expected, rel=1e-9)


def test_kid_is_the_unbiased_mmd_and_near_zero_for_one_distribution():
    m = 30  # one subset as large as both sets: the estimate uses them whole (their order is irrelevant)
    x, y = cloud(m, 3, seed=1), cloud(m, 3, seed=2) + 0.5
    kernel = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    brute_xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    brute_yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    brute_xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    kid, spread = iq.kernel_inception_distance(x, y, subsets=1, subset_size=m)
    assert kid == pytest.approx(brute_xx + brute_yy - 2 * brute_xy, rel=1e-9)
    assert spread == 0.0
    same, _ = iq.kernel_inception_distance(cloud(2000, seed=3), cloud(2000, seed=3)[::-1], subsets=5)
    different, _ = iq.kernel_inception_distance(cloud(2000, seed=3), cloud(2000, seed=4) + 1.0, subsets=5)
    assert abs(same) < 0.1 * different


def brute_radii(x, k):
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    return np.sort(d, axis=1)[:, k]


def test_precision_recall_density_coverage_match_their_definitions():
    real, fake = cloud(60, 3, seed=5), cloud(50, 3, seed=6) * 1.3 + 0.4
    d = np.linalg.norm(fake[:, None] - real[None], axis=2)  # (fake, real)
    r_real, r_fake = brute_radii(real, 3), brute_radii(fake, 3)
    precision = np.mean([(d[i] <= r_real).any() for i in range(50)])
    recall = np.mean([(d[:, j] <= r_fake).any() for j in range(60)])
    assert iq.precision_recall(real, fake) == pytest.approx((precision, recall), abs=1e-12)
    r5 = brute_radii(real, 5)
    density = (d <= r5[None]).sum() / (5 * 50)
    coverage = np.mean([d[:, j].min() <= r5[j] for j in range(60)])
    assert iq.density_coverage(real, fake) == pytest.approx((density, coverage), rel=1e-6)


def test_identical_sets_score_perfectly_and_far_sets_score_zero():
    x = cloud(300)
    assert iq.precision_recall(x, x) == (1.0, 1.0)
    assert iq.density_coverage(x, x)[1] == 1.0
    assert iq.precision_recall(x, x + 1000.0) == (0.0, 0.0)
    assert iq.density_coverage(x, x + 1000.0) == (0.0, 0.0)


def test_kid_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        iq.kernel_inception_distance(cloud(1), cloud(5))


def test_mode_coverage_on_a_perfect_and_a_collapsed_sampler():
    rng = np.random.default_rng(0)
    from ganforge.data import sample_mixture
    perfect = mode_coverage(sample_mixture("grid25", 2500, rng), "grid25")
    assert perfect["modes"] == 25 and perfect["high_quality_percent"] > 97 and perfect["kl"] < 0.02
    collapsed = mode_coverage(np.zeros((2500, 2)) + [2.0, 2.0], "grid25")
    assert collapsed == {"modes": 1, "high_quality_percent": 100.0, "kl": pytest.approx(np.log(25))}
    diverged = mode_coverage(np.full((100, 2), 50.0), "grid25")
    assert diverged["modes"] == 0 and diverged["high_quality_percent"] == 0 and np.isnan(diverged["kl"])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        mode_coverage(np.zeros((5, 3)), "ring8")


def test_the_classifier_refuses_weights_that_are_not_the_pinned_ones(tmp_path):
    assert load_classifier() is not None
    tampered = tmp_path / "classifier.safetensors"
    shutil.copyfile(WEIGHTS, tampered)
    tensors = io.load_tensors(str(tampered))
    tensors["head.bias"] = tensors["head.bias"] + 1
    io.save_tensors(str(tampered), tensors)
    with pytest.raises(io.CheckpointError, match="not the pinned classifier"):
        load_classifier(str(tampered))
    with pytest.raises(FileNotFoundError, match="python -m ganforge.metrics.fashion_classifier"):
        load_classifier(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        classify(load_classifier(), np.zeros((2, 3, 28, 28)))


@needs_fashion_mnist
def test_the_frozen_classifier_on_real_data():
    from ganforge.data import load_fashion_mnist
    images, labels = load_fashion_mnist(split="test")
    assert (classify(load_classifier(), images[:2000]) == labels[:2000]).mean() > 0.85
    # held-out real images, asked for their own labels, score like real data
    report = fashion_mnist_report(images[2000:3000], labels[2000:3000], n=1000)
    real, generated = report["real (train)"], report["generated"]
    assert generated["class_accuracy"] > 0.85 and real["class_accuracy"] > 0.85
    assert generated["fd"] < 5 * max(real["fd"], 1e-3) and generated["precision"] > 0.5
    noise = fashion_mnist_report(np.random.default_rng(0).uniform(-1, 1, (1000, 1, 28, 28)), n=1000)["generated"]
    # noise can land inside an outlier's large ball (precision's known weakness), but it
    # covers none of the real data
    assert noise["fd"] > 10 * generated["fd"] and noise["recall"] < 0.05 and noise["coverage"] < 0.05


def test_fit_classifier_learns_a_separable_toy_set():
    """The shipped classifier's recipe, on 256 images of two kinds (bright top or bright
    bottom half): it must tell them apart, and come back in eval mode."""
    from ganforge.metrics.fashion_classifier import classify, fit_classifier
    rng = np.random.default_rng(0)
    labels = np.arange(256) % 2
    images = np.full((256, 1, 28, 28), -1.0, dtype=np.float32)
    for i, label in enumerate(labels):
        images[i, 0, label * 14:(label + 1) * 14] = 1.0
    images += rng.normal(0, 0.3, images.shape).astype(np.float32)
    model = fit_classifier(images, labels, epochs=3, batch_size=32, log=False)
    assert not model.training and (classify(model, images) == labels).mean() > 0.95

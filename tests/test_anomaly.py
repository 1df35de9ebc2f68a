"""Anomaly detection: AUROC against its definition, the normal/held-out split, the model's
two phases and exact resume, and the score and evaluate commands with their errors."""
import csv
import os

import numpy as np
import pytest

from ganforge import cli, io
from ganforge.autograd import no_grad
from ganforge.gan import Trainer
from ganforge.gan.steps import in_eval_mode
from ganforge.gan.models.anomaly import geometric_transformations, transform
from ganforge.gan.trainer import normal_images
from ganforge.metrics.anomaly import auroc
from ganforge.tensor import Tensor

from .conftest import needs_fashion_mnist
from .test_trainer import QUICK, resumed_beside_straight, small, state_of

pytestmark = pytest.mark.usefixtures("small_fashion_split")


def pairwise_auroc(scores, anomalous):
    """AUROC by its definition: over every (anomaly, normal) pair, 1 when the anomaly
    scores higher, 1/2 on a tie."""
    a, n = scores[anomalous], scores[~anomalous]
    return np.mean((a[:, None] > n[None, :]) + 0.5 * (a[:, None] == n[None, :]))


def test_auroc_is_the_chance_that_an_anomaly_scores_higher():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 200).astype(float)  # many ties
    anomalous = rng.random(200) < 0.3
    scores[anomalous] += 1.5
    assert auroc(scores, anomalous) == pytest.approx(pairwise_auroc(scores, anomalous), abs=1e-12)
    assert auroc([0.1, 0.2, 0.9], [False, False, True]) == 1.0
    assert auroc([0.9, 0.2, 0.1], [True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9], [True, False, False]) == 0.0
    with pytest.raises(ValueError, match="both anomalous and normal"):
        auroc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match="one score and one label per example"):
        auroc([0.1, 0.2], [False])


def test_the_normal_images_split_into_training_and_held_out_by_the_seed():
    images = np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1)
    labels = np.arange(100) % 10
    classes = tuple(f"c{i}" for i in range(10))
    config = {"normal_class": 3, "held_out": 0.2, "seed": 7, "data": "fashion-mnist"}
    train, train_labels = normal_images(config, images, labels, classes)
    held, _ = normal_images(config, images, labels, classes, part="held-out")
    assert (train_labels == 3).all() and len(train) == 8 and len(held) == 2
    assert sorted(np.concatenate([train, held]).ravel()) == list(range(3, 100, 10))
    again, _ = normal_images(config, images, labels, classes)
    np.testing.assert_array_equal(train, again)
    other_seed, _ = normal_images({**config, "seed": 8}, images, labels, classes, part="held-out")
    assert len(other_seed) == 2
    assert normal_images({"seed": 0}, images, labels, classes)[0] is images  # other models' data as it was
    with pytest.raises(ValueError, match=r"--normal-class 10 is out of range: fashion-mnist has classes 0-9 \(0 c0"):
        normal_images({**config, "normal_class": 10}, images, labels, classes)
    with pytest.raises(ValueError, match="the images of a folder given with --data are all taken as normal"):
        normal_images(config, images, None, None)
    with pytest.raises(ValueError, match="--held-out is the fraction"):
        normal_images({**config, "held_out": 1.5}, images, labels, classes)


ANOMALY = {"steps": 6, "encoder_steps": 2, "held_out": 0.25}


def anomaly_run(tiny_fashion, folder, **extra):
    return Trainer("anomaly", str(folder), **small("anomaly", tiny_fashion, **{**ANOMALY, **extra}))


def test_the_gan_trains_first_then_the_encoder_and_a_resume_is_exact(tiny_fashion, tmp_path):
    straight = anomaly_run(tiny_fashion, tmp_path / "straight")
    straight.train(steps=4)
    after_gan = state_of(straight)
    history = straight.train()
    assert [sorted(h) for h in history[-2:]] == [["loss_features", "loss_pixels", "step"]] * 2
    assert [sorted(h) for h in history[:4]] == [["loss_d", "loss_g", "loss_transformations", "step"]] * 4
    after = state_of(straight)
    for key, value in after_gan.items():  # the encoder's steps move E alone (batch-norm statistics included)
        assert np.array_equal(value, after[key]) == (not key.startswith("E.")), key
    resumed_beside_straight("anomaly", tmp_path / "twice", 3, **small("anomaly", tiny_fashion, **ANOMALY))
    with open(tmp_path / "straight" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "loss_d", "loss_g", "loss_transformations", "loss_pixels", "loss_features"]
    assert rows[0]["loss_pixels"] == "" and rows[-1]["loss_d"] == "" and float(rows[-1]["loss_pixels"]) > 0


def test_encoder_steps_must_leave_the_gan_some(tiny_fashion, tmp_path):
    with pytest.raises(ValueError, match="--encoder-steps must be between 1 and --steps - 1"):
        anomaly_run(tiny_fashion, tmp_path, encoder_steps=6)
    with pytest.raises(ValueError, match=r"--transformations is 72 \(mirror, turns and shifts\), 8"):
        anomaly_run(tiny_fashion, tmp_path, transformations=9)


def test_the_transformations_mirror_turn_and_shift_with_black_coming_in():
    images = np.random.default_rng(0).uniform(-0.5, 1, (3, 2, 10, 10)).astype(np.float32)
    turned = transform(images, True, 3, 0, 0)
    np.testing.assert_array_equal(turned, np.rot90(np.flip(images, 3), 3, axes=(2, 3)))
    for dy, dx in [(2, 0), (0, -2), (-2, 2)]:
        shifted = transform(images, False, 0, dy, dx)
        rolled = np.roll(images, (dy, dx), axis=(2, 3))
        came_in = np.zeros((10, 10), dtype=bool)
        came_in[:dy] |= dy > 0
        came_in[dy:] |= dy < 0
        came_in[:, :dx] |= dx > 0
        came_in[:, dx:] |= dx < 0
        np.testing.assert_array_equal(shifted[..., ~came_in], rolled[..., ~came_in])
        assert (shifted[..., came_in] == -1).all()
    everything = geometric_transformations(72, 28)
    assert len(set(everything)) == 72 and everything[0] == (False, 0, 0, 0)
    assert {t[2] for t in everything} == {0, -5, 5} and len(geometric_transformations(8, 28)) == 8


def test_scoring_files_folders_and_arrays(tiny_fashion, tmp_path, capsys):
    run = tmp_path / "run"
    anomaly_run(tiny_fashion, run).train()
    from ganforge.gan import load_model
    model = load_model(str(run))
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (5, 1, 28, 28)).astype(np.float32)
    with pytest.raises(ValueError, match=r"call model.calibrate\(held_out_normal_images\(model.config\), "
                                         r"training_normal_images\(model.config\)\) first"):
        model.anomaly_scores(images)
    config = {**model.config, "data_path": tiny_fashion}
    held_out = normal_images(config, *_tiny_images(tiny_fashion), part="held-out")[0]
    training = normal_images(config, *_tiny_images(tiny_fashion))[0]
    with pytest.raises(ValueError, match="compares each image with its nearest normal training images: pass them"):
        model.calibrate(held_out)
    normal = model.calibrate(held_out, training)
    scores = model.anomaly_scores(images)
    np.testing.assert_allclose(scores["residual"], scores["pixels"] + model.config["kappa"] * scores["features"])
    assert all((scores[part] > 0).all() for part in ("pixels", "features", "transformations", "nearest"))
    parts = ("residual", "transformations", "nearest")
    standardized = [(scores[part] - normal[part].mean()) / normal[part].std() for part in parts]
    np.testing.assert_allclose(scores["score"], sum(standardized), rtol=1e-5)
    assert abs(model.combined(normal).mean()) < 1e-9  # the held-out normal images score 0 on average
    np.save(tmp_path / "batch.npy", images)
    assert cli.main(["score", str(run), "--input", str(tmp_path / "batch.npy"), "--out",
                     str(tmp_path / "scores.csv"), "--data-path", tiny_fashion]) == 0
    assert "scored 5 images with anomaly (step 6)" in capsys.readouterr().out
    with open(tmp_path / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "score", "residual", "pixels", "features", "transformations", "nearest",
                             "anomalous"]
    assert [r["file"] for r in rows] == [f"batch.npy[{i}]" for i in range(5)]
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores["score"], rtol=1e-5)
    threshold = model.threshold(held_out, training_images=training)
    assert [int(r["anomalous"]) for r in rows] == list((scores["score"] > threshold).astype(int))
    os.makedirs(tmp_path / "pictures")
    for i in range(2):
        io.save_image(str(tmp_path / "pictures" / f"{i}.png"), images[i])
    assert cli.main(["score", str(run), "--input", str(tmp_path / "pictures"), "--out", str(tmp_path / "f.csv"),
                     "--data-path", tiny_fashion]) == 0
    with open(tmp_path / "f.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    # bad input: one line each
    os.makedirs(tmp_path / "empty")
    np.save(tmp_path / "wrong.npy", images[:, :, :14])
    gan_run = tmp_path / "gan"
    Trainer("gan", str(gan_run), **QUICK).train()
    for argv, message in [([str(run), "--input", str(tmp_path / "empty")], "no PNG or JPEG images found"),
                          ([str(run), "--input", str(tmp_path / "wrong.npy")], "the run scores (N, 1, 28, 28)"),
                          ([str(run), "--input", str(tmp_path / "nowhere")], "neither an image, a folder nor"),
                          ([str(gan_run), "--input", str(tmp_path / "batch.npy")], "does not score anomalies"),
                          ([str(run), "--input", str(tmp_path / "batch.npy"), "--fpr", "2"], "between 0 and 1")]:
        assert cli.main(["score", *argv, "--data-path", tiny_fashion, "--out", str(tmp_path / "x.csv")]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_nearest_part_is_the_distance_in_ds_features_to_the_nearest_training_images(tiny_fashion, tmp_path):
    trainer = anomaly_run(tiny_fashion, tmp_path, nearest=2)
    trainer.train()
    model = trainer.model
    training = normal_images({**model.config, "data_path": tiny_fashion}, *_tiny_images(tiny_fashion))[0]
    model.remember(training)
    images = np.concatenate([training[:3], np.random.default_rng(2).uniform(-1, 1, (4, 1, 28, 28))])
    parts = model.score_parts(images.astype(np.float32))
    with no_grad(), in_eval_mode(*model.nets.values()):
        mine = model.features(Tensor(images.astype(np.float32))).numpy().astype(np.float64)
        remembered = model.features(Tensor(training)).numpy().astype(np.float64)
    squared = ((mine[:, None] - remembered[None]) ** 2).mean(2)
    expected = np.sort(squared, 1)[:, :2].mean(1)
    np.testing.assert_allclose(parts["nearest"], expected, rtol=1e-3, atol=1e-6)
    # a training image is its own nearest one, at distance 0: its part is half the second's
    np.testing.assert_allclose(parts["nearest"][:3], np.sort(squared[:3], 1)[:, 1] / 2, rtol=1e-3)
    model.config["nearest"] = len(training) + 1
    with pytest.raises(ValueError, match=f"--nearest {len(training) + 1} needs at least as many normal training"):
        model.remember(training)
    with pytest.raises(ValueError, match="--nearest is how many nearest normal training images"):
        anomaly_run(tiny_fashion, tmp_path / "bad", nearest=-1)


def test_without_the_transformation_task_the_score_is_f_anogans_residual(tiny_fashion, tmp_path):
    trainer = anomaly_run(tiny_fashion, tmp_path, transformations=0, nearest=0)
    assert "C" not in trainer.model.nets
    history = trainer.train()
    assert sorted(history[0]) == ["loss_d", "loss_g", "step"]
    scores = trainer.model.anomaly_scores(np.zeros((2, 1, 28, 28), np.float32))  # needs no calibration
    assert sorted(scores) == ["features", "pixels", "residual", "score"]
    np.testing.assert_array_equal(scores["score"], scores["residual"])


def _tiny_images(folder):
    from ganforge.data import CLASSES, load_fashion_mnist
    images, labels = load_fashion_mnist(folder, "train", expected_count=0)
    return images, labels, tuple(CLASSES)


@needs_fashion_mnist
def test_evaluate_prints_auroc_on_the_test_set(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer("anomaly", str(run), **dict(QUICK, normal_class=1, steps=3, encoder_steps=1, transformations=8)).train()
    assert cli.main(["evaluate", str(run), "--n", "1000", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "normal class 1 (Trouser): 1000 Fashion-MNIST test images, 105 normal" in out
    import json
    report = json.load(open(tmp_path / "e.json"))
    assert set(report["scores"]) == {"score", "residual", "pixels", "features", "transformations", "nearest"}
    assert report["held_out"] == 600
    assert all(0 <= row["auroc"] <= 1 for row in report["scores"].values())
    assert 0 <= report["scores"]["score"]["fpr"] <= 1
    folder_run = tmp_path / "folder"
    os.makedirs(tmp_path / "normal")
    for i in range(12):
        io.save_image(str(tmp_path / "normal" / f"{i}.png"), np.zeros((1, 28, 28), np.float32))
    Trainer("anomaly", str(folder_run), **dict(QUICK, data=str(tmp_path / "normal"), steps=3, encoder_steps=1,
                                                batch_size=4, channels=1, resolution=28)).train()
    assert cli.main(["evaluate", str(folder_run)]) == 1
    assert "score your own test images with `ganforge score RUN --input FOLDER`" in capsys.readouterr().err

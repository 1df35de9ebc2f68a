"""Scores while training (--eval-every), the curves, and `ganforge report` in a real browser."""
import json
import shutil
import subprocess

import numpy as np
import pytest

from ganforge import cli, io
from ganforge.gan import Trainer, resume_or_start

from .conftest import IN_CI, needs_fashion_mnist
from .test_trainer import QUICK, state_of

EVALUATED = dict(QUICK, steps=6, eval_every=2, eval_samples=300, log_every=1, sample_every=2, checkpoint_every=2)


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_a_run_scores_itself_and_resumes_exactly_with_its_scores(tmp_path):
    straight = Trainer("gan", str(tmp_path / "straight"), **EVALUATED)
    straight.train()
    scores = rows(tmp_path / "straight" / "metrics.jsonl")
    assert [row["step"] for row in scores] == [2, 4, 6]
    assert set(scores[0]) == {"step", "modes", "high_quality_percent", "kl"}
    assert (tmp_path / "straight" / "metrics.png").exists() and (tmp_path / "straight" / "metrics.csv").exists()
    # killed after step 6's lines were written but before its checkpoint: the resumed run
    # must neither repeat them nor differ from the uninterrupted one
    Trainer("gan", str(tmp_path / "resumed"), **EVALUATED).train()
    shutil.rmtree(tmp_path / "resumed" / "checkpoint-000006")
    (tmp_path / "resumed" / "latest").write_text("checkpoint-000004")
    resumed = resume_or_start("gan", str(tmp_path / "resumed"), resume=True)
    assert resumed.step == 4 and [row["step"] for row in rows(tmp_path / "resumed" / "metrics.jsonl")] == [2, 4]
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)
    assert rows(tmp_path / "resumed" / "metrics.jsonl") == scores
    assert rows(tmp_path / "resumed" / "log.jsonl") == rows(tmp_path / "straight" / "log.jsonl")
    with open(tmp_path / "resumed" / "log.csv") as f:
        assert len(f.readlines()) == 1 + 6  # the header and one line per step


def test_scoring_changes_nothing_in_the_training(tmp_path):
    plain = Trainer("gan", str(tmp_path / "plain"), **dict(EVALUATED, eval_every=0))
    plain.train()
    scored = Trainer("gan", str(tmp_path / "scored"), **EVALUATED)
    scored.train()
    for key, value in state_of(plain).items():
        np.testing.assert_array_equal(value, state_of(scored)[key], err_msg=key)


@needs_fashion_mnist
def test_a_fashion_mnist_run_scores_fd_and_a_conditional_one_its_classes(tmp_path):
    for model in ("dcgan", "cgan"):
        trainer = Trainer(model, str(tmp_path / model), data="fashion-mnist",
                          **dict(EVALUATED, steps=2, eval_every=2, eval_samples=200))
        trainer.train()
        [scores] = rows(tmp_path / model / "metrics.jsonl")
        assert {"step", "fd", "kid", "precision", "recall"} <= set(scores) and scores["fd"] > 0
        assert ("class_accuracy" in scores) == (model == "cgan")  # a class asked for: only a conditional model


def test_eval_every_on_data_without_a_measure_is_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(4):
        io.save_image(str(folder / f"{i}.png"), np.zeros((3, 28, 28), dtype=np.float32))
    code = cli.main(["train", "dcgan", "--data", str(folder), "--resolution", "28", "--batch-size", "4", "--eval-every", "10",
                     "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "--eval-every:" in err and "has no reference measure" in err and "\n" not in err.strip()


def test_curves_have_axes_with_matplotlib_and_a_fallback_without(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from PIL import Image
    history = [{"step": s, "loss_d": float(np.sin(s)), "loss_g": float(np.cos(s))} for s in range(1, 60)]
    io.save_loss_curves(tmp_path / "axes.png", history)
    monkeypatch.setattr(io, "_matplotlib_figure", lambda: None)
    io.save_loss_curves(tmp_path / "plain.png", history)
    for name in ("axes.png", "plain.png"):
        assert Image.open(tmp_path / name).size == (640, 360)
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "axes.png").convert("RGB")),
                              np.asarray(Image.open(tmp_path / "plain.png").convert("RGB")))
    smooth = io.smoothed([1.0, np.nan, 3.0, 3.0])
    assert smooth[0] == 1.0 and smooth[1] == 1.0 and 1.0 < smooth[2] < smooth[3] < 3.0
    assert np.isnan(io.smoothed([1.0, 2.0, np.nan, np.nan])[2:]).all()  # a loss of an earlier phase ends there


def chromium():
    """Debian's chromium (the test set-up installs it): missing fails under CI, skips elsewhere."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("CI must have chromium (scripts/setup.sh test installs it)", pytrace=False)
        pytest.skip("chromium is not installed: apt-get install chromium")
    return path


def headless(browser, *arguments):
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def test_the_report_renders_in_a_real_browser_with_every_picture(tmp_path):
    from PIL import Image
    browser = chromium()
    run = tmp_path / "run"
    Trainer("gan", str(run), **EVALUATED).train()
    assert cli.main(["report", str(run)]) == 0
    page = run / "report.html"
    text = page.read_text()
    assert "ganforge train gan --out" in text and "--resume" in text and "src=\"file:" not in text
    dom = headless(browser, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    pictures = 3 + 2  # the sample grids of steps 2, 4 and 6, the loss and the metric curves
    assert f'data-images-loaded="{pictures}/{pictures}"' in dom
    headless(browser, "--window-size=1000,800", f"--screenshot={tmp_path / 'shot.png'}", page.as_uri())
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("L"))
    assert shot.shape == (800, 1000)
    assert shot.std() > 20  # not a blank page: text and pictures drawn

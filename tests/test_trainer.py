"""The trainer and the command: every variant trains end to end, a killed and resumed
run equals one run straight through, and bad input is a one-line error."""
import json
import os

import numpy as np
import pytest

from ganforge import cli, io
from ganforge.data import write_idx
from ganforge.data.fashion_mnist import DEBIAN_PATH
from ganforge.gan import VARIANTS, Trainer, TrainingDiverged, generate, load_generator, resume_or_start

QUICK = dict(steps=3, batch_size=8, sample_every=1000, checkpoint_every=1000, log_every=1, progress=False)


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    """A 64-image stand-in for Fashion-MNIST in IDX files (the real one is slow to train on)."""
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"), rng.integers(0, 256, (64, 28, 28), dtype=np.uint8))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), rng.integers(0, 10, 64, dtype=np.uint8))
    return str(folder)


def small(name, tiny_fashion, **extra):
    data = VARIANTS[name].defaults["data"]
    options = dict(QUICK, **extra)
    if data == "fashion-mnist":
        options["data_path"] = tiny_fashion
    return options


def state_of(trainer):
    return {f"{p}.{k}": v.numpy().copy() for p, net in (("G", trainer.G), ("D", trainer.D))
            for k, v in net.state_dict().items()}


@pytest.fixture(autouse=True)
def small_fashion_split(monkeypatch):
    """The trainer asks for the official 60000 images; the stand-in has 64."""
    from ganforge.gan import trainer as trainer_module
    real = trainer_module.load_fashion_mnist
    monkeypatch.setattr(trainer_module, "load_fashion_mnist",
                        lambda root, split: real(root, split, expected_count=0))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_trains_and_changes_its_weights(name, tiny_fashion, tmp_path):
    trainer = Trainer(name, str(tmp_path), **small(name, tiny_fashion))
    before = state_of(trainer)
    history = trainer.train()
    after = state_of(trainer)
    assert trainer.step == 3 and len(history) == 3
    assert all(np.isfinite(v) for entry in history for v in entry.values())
    changed = [k for k in before if before[k].dtype.kind == "f" and not np.array_equal(before[k], after[k])]
    assert any(k.startswith("G.") for k in changed) and any(k.startswith("D.") for k in changed)
    assert os.path.exists(tmp_path / "latest") and os.path.exists(tmp_path / "samples" / "latest.png")
    assert os.path.exists(tmp_path / "losses.png") and os.path.exists(tmp_path / "log.csv")


@pytest.mark.parametrize("name", ["sngan", "cgan", "gan"])
def test_a_resumed_run_continues_exactly(name, tiny_fashion, tmp_path):
    """Spectral-norm vectors, batch-norm statistics, optimizer moments, learning-rate
    schedules, the EMA, the data order and every random stream must all come back for the
    weights to match bit for bit."""
    straight = Trainer(name, str(tmp_path / "straight"), **small(name, tiny_fashion, steps=6))
    straight.train()
    first = Trainer(name, str(tmp_path / "resumed"), **small(name, tiny_fashion, steps=6))
    first.train(steps=3)
    first.save()
    del first  # "killed"
    resumed = resume_or_start(name, str(tmp_path / "resumed"), resume=True)
    assert resumed.step == 3
    resumed.train()
    a, b = state_of(straight), state_of(resumed)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for key, value in straight.ema.shadow.items():
        np.testing.assert_array_equal(value, resumed.ema.shadow[key], err_msg=f"ema {key}")
    assert straight.history == resumed.history
    assert [opt.lr for opt in (straight.opt_g, straight.opt_d)] == [opt.lr for opt in (resumed.opt_g, resumed.opt_d)]


def test_lr_decay_reaches_zero_on_the_last_step(tmp_path):
    trainer = Trainer("gan", str(tmp_path), **dict(QUICK, steps=4, lr_decay=True))
    base = trainer.opt_g.lr
    trainer.train(steps=2)
    assert trainer.opt_g.lr == pytest.approx(base / 2) and trainer.opt_d.lr == pytest.approx(trainer.variant.lr / 2)
    trainer.train()
    assert trainer.opt_g.lr == 0.0 and trainer.opt_d.lr == 0.0


def test_sampling_a_trained_run(tiny_fashion, tmp_path):
    trainer = Trainer("cgan", str(tmp_path), **small("cgan", tiny_fashion))
    trainer.train()
    samples, info = generate(str(tmp_path), 5, labels=3)
    assert samples.shape == (5, 1, 28, 28) and info["num_classes"] == 10
    G, _ = load_generator(str(tmp_path))
    assert not G.training
    with pytest.raises(ValueError, match="--label must be in \\[0, 10\\)"):
        generate(str(tmp_path), 2, labels=12)
    assert cli.main(["sample", str(tmp_path), "--n", "20", "--out", str(tmp_path / "grid.png"), "--label", "2"]) == 0
    assert os.path.getsize(tmp_path / "grid.png") > 0
    assert cli.main(["sample", str(tmp_path), "--n", "7", "--out", str(tmp_path / "raw.npy")]) == 0
    assert np.load(tmp_path / "raw.npy").shape == (7, 1, 28, 28)
    # drawing in batches changes nothing but BLAS rounding
    np.testing.assert_allclose(generate(str(tmp_path), 7, batch_size=3)[0], generate(str(tmp_path), 7)[0], atol=1e-6)


@pytest.mark.skipif(not os.path.isdir(DEBIAN_PATH), reason="apt-get install dataset-fashion-mnist")
def test_evaluating_a_run(tiny_fashion, tmp_path, capsys):
    trainer = Trainer("cgan", str(tmp_path), **small("cgan", tiny_fashion))
    trainer.train()
    assert cli.main(["evaluate", str(tmp_path), "--n", "60", "--json", str(tmp_path / "quality.json")]) == 0
    printed = capsys.readouterr().out
    assert "real (train)" in printed and "class_accuracy" in printed
    report = json.load(open(tmp_path / "quality.json"))
    assert report["generated"]["fd"] > report["real (train)"]["fd"]  # three steps of training are not real data
    assert report["real (train)"]["class_accuracy"] > 0.7
    ring = Trainer("gan", str(tmp_path / "ring"), **QUICK)
    ring.train()
    assert cli.main(["evaluate", str(tmp_path / "ring")]) == 1
    assert "28x28 grey Fashion-MNIST generators" in capsys.readouterr().err


def test_corrupt_and_truncated_checkpoints_are_clear_errors(tiny_fashion, tmp_path):
    trainer = Trainer("wgan-gp", str(tmp_path), **small("wgan-gp", tiny_fashion))
    trainer.train()
    folder = io.latest_checkpoint(str(tmp_path))
    tensors = os.path.join(folder, "tensors.safetensors")
    data = open(tensors, "rb").read()
    open(tensors, "wb").write(data[: len(data) // 2])
    with pytest.raises(io.CheckpointError, match="truncated or corrupt"):
        io.load_checkpoint(str(tmp_path))
    open(os.path.join(folder, "state.json"), "w").write("{not json")
    with pytest.raises(io.CheckpointError, match="state.json is corrupt"):
        io.load_checkpoint(str(tmp_path))
    with pytest.raises(io.CheckpointError, match="elsewhere does not exist"):
        io.load_checkpoint(str(tmp_path / "elsewhere"))
    with pytest.raises(io.CheckpointError, match="has no checkpoint"):
        io.latest_checkpoint(str(tmp_path / "samples"))


def test_no_half_written_checkpoint_survives_a_crash(tmp_path, monkeypatch):
    def crash(path, tensors):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(io, "save_tensors", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint(str(tmp_path), "checkpoint-000001", {"a": np.zeros(2)}, {})
    assert os.listdir(tmp_path) == []  # no folder, no 'latest'


def test_a_diverging_run_stops_with_a_clear_message(tiny_fashion, tmp_path, monkeypatch):
    trainer = Trainer("gan", str(tmp_path), **QUICK)
    monkeypatch.setattr(trainer, "train_step", lambda: {"loss_d": float("nan"), "loss_g": 0.0})
    with pytest.raises(TrainingDiverged, match="step 0: the losses became non-finite.*--rollback"):
        trainer.train()


def test_rollback_goes_back_to_the_last_checkpoint(tmp_path):
    trainer = Trainer("gan", str(tmp_path), **dict(QUICK, steps=4, rollback=True))
    trainer.train(steps=2)
    trainer.save()
    real_step, calls = trainer.train_step, []

    def flaky():
        losses = real_step()
        calls.append(trainer.step)
        return {"loss_d": float("inf"), "loss_g": 0.0} if len(calls) == 1 else losses
    trainer.train_step = flaky
    trainer.train()
    assert trainer.step == 4 and calls[0] == 3 and calls[1] == 3  # step 3 was redone after the rollback


def test_command_line_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GANFORGE_DATA", raising=False)
    assert cli.main(["train", "stylegan9", "--out", str(tmp_path / "a")]) == 1
    assert "unknown variant 'stylegan9'; `ganforge list` shows them" in capsys.readouterr().err
    assert cli.main(["train", "dcgan", "--data-path", str(tmp_path / "missing"), "--out", str(tmp_path / "b")]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert cli.main(["train", "dcgan", "--data", "ring8", "--out", str(tmp_path / "c")]) == 1
    assert "dcgan needs image data" in capsys.readouterr().err
    assert cli.main(["train", "gan", "--data", "moons", "--out", str(tmp_path / "d")]) == 1
    assert "unknown data set 'moons'" in capsys.readouterr().err
    assert cli.main(["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 1
    assert "checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "gan", "--steps", "2", "--out", str(tmp_path / "e"), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "gan", "--steps", "2", "--out", str(tmp_path / "e")]) == 1
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    err = capsys.readouterr().err
    assert "\n" not in err.strip()


def test_checkpoint_tensors_are_standard_safetensors_files(tmp_path):
    """ganforge writes the format itself (so loading needs NumPy alone); the reference
    implementation must read its files, and ganforge must read the reference's."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"G.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "step": np.array([7], dtype=np.int64),
               "mask": np.array([True, False]), "empty": np.zeros((0, 3), dtype=np.float64)}
    io.save_tensors(tmp_path / "ours.safetensors", tensors)
    for key, value in safetensors_numpy.load_file(str(tmp_path / "ours.safetensors")).items():
        np.testing.assert_array_equal(value, tensors[key])
    safetensors_numpy.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    for key, value in io.load_tensors(tmp_path / "theirs.safetensors").items():
        assert value.dtype == tensors[key].dtype
        np.testing.assert_array_equal(value, tensors[key])


@pytest.mark.parametrize("remedy", [dict(unrolled_steps=2), dict(minibatch_discrimination=True),
                                    dict(clip_grad_norm=0.01)])
def test_mode_collapse_remedies_train_and_resume(remedy, tmp_path):
    straight = Trainer("gan", str(tmp_path / "straight"), **dict(QUICK, steps=4, **remedy))
    before = state_of(straight)
    straight.train()
    after = state_of(straight)
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("D."))
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("G."))
    first = Trainer("gan", str(tmp_path / "resumed"), **dict(QUICK, steps=4, **remedy))
    first.train(steps=2)
    first.save()
    resumed = resume_or_start("gan", str(tmp_path / "resumed"), resume=True)
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)


def test_unrolling_leaves_the_discriminator_where_it_was(tmp_path, monkeypatch):
    """The look-ahead updates shape the generator's gradient, then D and its optimizer go back."""
    trainer = Trainer("gan", str(tmp_path), **dict(QUICK, unrolled_steps=3))
    seen = {}
    real_update = trainer._update

    def update(net, opt, loss):
        if net is trainer.G:  # just before the generator's update: D is 3 steps ahead
            seen["ahead"] = state_of(trainer)
        real_update(net, opt, loss)
    monkeypatch.setattr(trainer, "_update", update)
    step_count = trainer.opt_d.step_count
    trainer.train_step()
    after = state_of(trainer)
    assert trainer.opt_d.step_count == step_count + 1  # one real D update, three undone
    lookahead_only = [k for k in after if k.startswith("D.") and not np.array_equal(after[k], seen["ahead"][k])]
    assert lookahead_only, "D after the step must differ from the unrolled D the generator saw"
    # and it is exactly the D of a run without unrolling (the same first update, then nothing)
    plain = Trainer("gan", str(tmp_path / "plain"), **QUICK)
    plain.train_step()
    for key, value in state_of(plain).items():
        if key.startswith("D."):
            np.testing.assert_array_equal(value, after[key], err_msg=key)


def test_clipping_bounds_the_gradient_norm(tmp_path, monkeypatch):
    trainer = Trainer("gan", str(tmp_path), **dict(QUICK, clip_grad_norm=1e-3))
    norms = []
    real_step = trainer.opt_g.step

    def step():
        norms.append(np.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in trainer.G.parameters())))
        real_step()
    monkeypatch.setattr(trainer.opt_g, "step", step)
    trainer.train_step()
    assert norms and norms[0] <= 1e-3 * (1 + 1e-4)


def test_minibatch_discrimination_needs_a_known_discriminator():
    from ganforge import nn
    from ganforge.gan.nets import with_minibatch_discrimination
    with pytest.raises(ValueError, match="ending in Linear"):
        with_minibatch_discrimination(nn.Sequential(nn.Linear(2, 3), nn.Tanh()))


def test_listed_recipe_commands_set_the_recipes_options(tmp_path, capsys):
    """`ganforge list` prints each recipe as a command; running it must give the recipe."""
    from ganforge.gan.recipes import RECIPES
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    for name, (variant, options, _) in RECIPES.items():
        command = f"ganforge train {variant} {cli.recipe_flags(options)}".rstrip()
        assert command in listing
        out = tmp_path / name
        flags = cli.recipe_flags({**options, "steps": 1}).split()
        assert cli.main(["train", variant, *flags, "--out", str(out), "--no-progress", "--sample-every", "1000"]) == 0
        config = io.load_checkpoint(str(out))[1]["config"]
        for key, value in options.items():
            if key != "steps":
                assert config[key] == (list(value) if isinstance(value, tuple) else value), (name, key)

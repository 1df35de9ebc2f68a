"""The trainer and the command: every model trains end to end, a killed and resumed
run equals one run straight through, and bad input is a one-line error."""
import json
import os

import numpy as np
import pytest

import ganforge as gf
import ganforge.functional as F
from ganforge import cli, io, nn, optim
from ganforge.gan import MODELS, Model, Trainer, TrainingDiverged, generate, load_generator, resume_or_start

from .conftest import import_reference, needs_fashion_mnist

pytestmark = pytest.mark.usefixtures("small_fashion_split")
QUICK = dict(steps=3, batch_size=8, sample_every=1000, checkpoint_every=1000, log_every=1, progress=False)


def small(name, tiny_fashion, **extra):
    data = MODELS[name].defaults["data"]
    options = dict(QUICK, **extra)
    if data in ("fashion-mnist", "fashion-edges"):
        options["data_path"] = tiny_fashion
    if name == "anomaly":  # its GAN trains first, then its encoder: both within the few steps
        options.setdefault("encoder_steps", 1)
    return options


def state_of(trainer):
    return {f"{p}.{k}": v.numpy().copy() for p, net in trainer.model.nets.items() for k, v in net.state_dict().items()}


def resumed_beside_straight(name, folder, split, **options):
    """A run straight through, and the same run stopped after `split` steps, saved,
    dropped and resumed to the end: their weights must agree bit for bit. Returns
    (straight, resumed) for the caller's further checks."""
    straight = Trainer(name, str(folder / "straight"), **options)
    straight.train()
    first = Trainer(name, str(folder / "resumed"), **options)
    first.train(steps=split)
    first.save()
    del first  # "killed"
    resumed = resume_or_start(name, str(folder / "resumed"), resume=True)
    assert resumed.step == split
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)
    return straight, resumed


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_and_changes_its_weights(name, tiny_fashion, tmp_path):
    trainer = Trainer(name, str(tmp_path), **small(name, tiny_fashion))
    before = state_of(trainer)
    history = trainer.train()
    after = state_of(trainer)
    assert trainer.step == 3 and len(history) == 3
    assert all(np.isfinite(v) for entry in history for v in entry.values())
    changed = [k for k in before if before[k].dtype.kind == "f" and not np.array_equal(before[k], after[k])]
    for net in trainer.model.nets:  # G and D, or G_ab, G_ba, D_a and D_b
        assert any(k.startswith(net + ".") for k in changed), net
    assert os.path.exists(tmp_path / "latest") and os.path.exists(tmp_path / "samples" / "latest.png")
    assert os.path.exists(tmp_path / "losses.png") and os.path.exists(tmp_path / "log.csv")


@pytest.mark.parametrize("name", ["sngan", "cgan", "gan"])
def test_a_resumed_run_continues_exactly(name, tiny_fashion, tmp_path):
    """Spectral-norm vectors, batch-norm statistics, optimizer moments, learning-rate
    schedules, the EMA, the data order and every random stream must all come back for the
    weights to match bit for bit."""
    straight, resumed = resumed_beside_straight(name, tmp_path, 3, **small(name, tiny_fashion, steps=6))
    for key, value in straight.ema["G"].shadow.items():
        np.testing.assert_array_equal(value, resumed.ema["G"].shadow[key], err_msg=f"ema {key}")
    assert straight.history == resumed.history
    assert [opt.lr for opt in straight.model.optimizers.values()] == \
        [opt.lr for opt in resumed.model.optimizers.values()]


def test_lr_decay_reaches_zero_on_the_last_step(tmp_path):
    trainer = Trainer("gan", str(tmp_path), **dict(QUICK, steps=4, lr_decay=True))
    opt_g, opt_d = trainer.model.optimizers["G"], trainer.model.optimizers["D"]
    base = opt_g.lr
    trainer.train(steps=2)
    assert opt_g.lr == pytest.approx(base / 2) and opt_d.lr == pytest.approx(trainer.config["lr"] / 2)
    trainer.train()
    assert opt_g.lr == 0.0 and opt_d.lr == 0.0


def test_sampling_a_trained_run(tiny_fashion, tmp_path):
    trainer = Trainer("cgan", str(tmp_path), **small("cgan", tiny_fashion))
    trainer.train()
    samples, model = generate(str(tmp_path), 5, labels=3)
    assert samples.shape == (5, 1, 28, 28) and model.data.num_classes == 10
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


@needs_fashion_mnist
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
    assert "unknown model 'stylegan9'; `ganforge list` shows them" in capsys.readouterr().err
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
    err = capsys.readouterr().err
    assert "already holds a run: pass --resume" in err and "\n" not in err.strip()
    assert cli.main(["train", "wgan", "--unrolled-steps", "2", "--unrolled-form", "true",
                     "--out", str(tmp_path / "f")]) == 1
    assert "wgan's D uses RMSprop: use --unrolled-form first-order" in capsys.readouterr().err


def test_checkpoint_tensors_are_standard_safetensors_files(tmp_path):
    """ganforge writes the format itself (so loading needs NumPy alone); the reference
    implementation must read its files, and ganforge must read the reference's."""
    safetensors_numpy = import_reference("safetensors.numpy", "pip install safetensors")
    tensors = {"G.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "step": np.array([7], dtype=np.int64),
               "mask": np.array([True, False]), "empty": np.zeros((0, 3), dtype=np.float64)}
    io.save_tensors(tmp_path / "ours.safetensors", tensors)
    for key, value in safetensors_numpy.load_file(str(tmp_path / "ours.safetensors")).items():
        np.testing.assert_array_equal(value, tensors[key])
    safetensors_numpy.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    for key, value in io.load_tensors(tmp_path / "theirs.safetensors").items():
        assert value.dtype == tensors[key].dtype
        np.testing.assert_array_equal(value, tensors[key])


@pytest.mark.parametrize("remedy", [dict(unrolled_steps=2), dict(unrolled_steps=2, unrolled_form="true"),
                                    dict(minibatch_discrimination=True),
                                    dict(clip_grad_norm=0.01)])
def test_mode_collapse_remedies_train_and_resume(remedy, tmp_path):
    straight = Trainer("gan", str(tmp_path / "straight"), **dict(QUICK, steps=4, **remedy))
    before = state_of(straight)
    straight.train()
    after = state_of(straight)
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("D."))
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("G."))
    resumed_beside_straight("gan", tmp_path / "twice", 2, **dict(QUICK, steps=4, **remedy))


def test_true_unrolling_trains_d_as_a_plain_run_and_g_differently(tmp_path):
    """Differentiating through the look-ahead changes only the generator's update: D's is
    the plain run's, and G's differs from the first-order form's."""
    runs = {form: Trainer("gan", str(tmp_path / form), **dict(QUICK, unrolled_steps=3, unrolled_form=form))
            for form in ("first-order", "true")}
    plain = Trainer("gan", str(tmp_path / "plain"), **QUICK)
    for trainer in (*runs.values(), plain):
        trainer.train_step()
    true, first = state_of(runs["true"]), state_of(runs["first-order"])
    for key, value in state_of(plain).items():
        if key.startswith("D."):
            np.testing.assert_array_equal(value, true[key], err_msg=key)
    assert any(not np.array_equal(true[k], first[k]) for k in true if k.startswith("G."))


def test_true_unrolling_needs_a_differentiable_optimizer(tmp_path):
    with pytest.raises(ValueError, match="wgan's D uses RMSprop: use --unrolled-form first-order"):
        Trainer("wgan", str(tmp_path), **dict(QUICK, unrolled_steps=2, unrolled_form="true"))
    with pytest.raises(ValueError, match="unknown unrolled form 'second'"):
        Trainer("gan", str(tmp_path), **dict(QUICK, unrolled_steps=2, unrolled_form="second"))


def test_unrolling_leaves_the_discriminator_where_it_was(tmp_path, monkeypatch):
    """The look-ahead updates shape the generator's gradient, then D and its optimizer go back."""
    from ganforge.gan.models import gan as gan_model
    trainer = Trainer("gan", str(tmp_path), **dict(QUICK, unrolled_steps=3))
    opt_g, opt_d = trainer.model.optimizers["G"], trainer.model.optimizers["D"]
    seen = {}
    real_update = gan_model.update

    def update(opt, loss, clip=None):
        if opt is opt_g:  # just before the generator's update: D is 3 steps ahead
            seen["ahead"] = state_of(trainer)
        real_update(opt, loss, clip)
    monkeypatch.setattr(gan_model, "update", update)
    step_count = opt_d.step_count
    trainer.train_step()
    after = state_of(trainer)
    assert opt_d.step_count == step_count + 1  # one real D update, three undone
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
    norms = {}
    for name, opt in trainer.model.optimizers.items():
        def step(name=name, opt=opt, real_step=opt.step):
            norms[name] = np.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in opt.params if p.grad is not None))
            real_step()
        monkeypatch.setattr(opt, "step", step)
    trainer.train_step()
    # the first steps' gradients are far above 1e-3, so clipping brings each norm to the bound itself
    assert norms["G"] == pytest.approx(1e-3, rel=1e-4) and norms["D"] == pytest.approx(1e-3, rel=1e-4)


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


class TwoGenerators(Model):
    """A toy model of three networks: two generators, each drawing half of every fake batch,
    against one discriminator; with an EMA of both generators and a running mean of D's
    score on real data as extra state (an array), to show that the trainer checkpoints
    whatever a model names."""
    name = "two-generators"
    defaults = {"data": "ring8", "batch_size": 16}
    options = {"z_dim": 2, "lr": 1e-3}
    ema = ("G1", "G2")

    def build_networks(self):
        from ganforge.gan.nets import mlp_discriminator, mlp_generator
        self.real_score = np.zeros(1)
        return {"G1": mlp_generator(2, 2, hidden=16, depth=1), "G2": mlp_generator(2, 2, hidden=16, depth=1),
                "D": mlp_discriminator(2, hidden=16, depth=1)}

    def build_optimizers(self):
        from ganforge import optim
        return {name: optim.Adam(net.parameters(), lr=self.config["lr"], betas=(0.5, 0.999))
                for name, net in self.nets.items()}

    def train_step(self, batches):
        import ganforge.functional as F
        from ganforge.gan import discriminator_loss, generator_loss
        from ganforge.gan.steps import frozen, update
        G1, G2, D = self.nets["G1"], self.nets["G2"], self.nets["D"]
        real = next(batches)["x"]
        half = len(real) // 2
        fake = F.concat([G1(gf.randn(half, 2, generator=self.noise)), G2(gf.randn(half, 2, generator=self.noise))])
        out_real = D(real)
        update(self.optimizers["D"], discriminator_loss("non_saturating", out_real, D(fake.detach())))
        with frozen(D):
            loss_g = generator_loss("non_saturating", D(fake))
            self.optimizers["G1"].zero_grad()
            self.optimizers["G2"].zero_grad()
            loss_g.backward()
            self.optimizers["G1"].step()
            self.optimizers["G2"].step()
        self.real_score = 0.9 * self.real_score + 0.1 * out_real.numpy().mean()
        return {"loss_g": loss_g.item(), "real_score": float(self.real_score[0])}

    def state_dict(self):
        return {**super().state_dict(), "real_score": self.real_score}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.real_score = np.array(state["real_score"])

    def preview(self):
        z = gf.randn(64, 2, generator=gf.Generator(0))
        return np.concatenate([self.nets["G1"](z).numpy(), self.nets["G2"](z).numpy()]), None


def test_the_trainer_runs_a_model_of_three_networks_and_resumes_it_exactly(tmp_path):
    """The trainer knows no G and D: it trains, pictures, checkpoints and resumes whatever
    networks, optimizers, EMA copies and state the model names, bit for bit."""
    options = dict(QUICK, steps=6)
    straight = Trainer(TwoGenerators, str(tmp_path / "straight"), **options)
    before = state_of(straight)
    straight.train()
    after = state_of(straight)
    for net in ("G1", "G2", "D"):
        assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith(net + "."))
    assert os.path.exists(tmp_path / "straight" / "samples" / "latest.png")
    first = Trainer(TwoGenerators, str(tmp_path / "resumed"), **options)
    first.train(steps=3)
    first.save()
    tensors, state = io.load_checkpoint(str(tmp_path / "resumed"))
    assert {k.split(".")[0] for k in tensors} == {"G1", "G2", "D", "G1_ema", "G2_ema", "opt", "model"}
    assert set(state["optimizers"]) == {"G1", "G2", "D"} and set(state["ema"]) == {"G1", "G2"}
    resumed = Trainer(TwoGenerators, str(tmp_path / "resumed"), **options).load(str(tmp_path / "resumed"))
    assert resumed.step == 3 and resumed.model.real_score == first.model.real_score
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)
    for name in ("G1", "G2"):
        for key, value in straight.ema[name].shadow.items():
            np.testing.assert_array_equal(value, resumed.ema[name].shadow[key], err_msg=f"{name} ema {key}")
    assert straight.history == resumed.history and straight.model.real_score == resumed.model.real_score
    with pytest.raises(io.CheckpointError, match="holds a 'two-generators' run, not 'gan'"):
        Trainer("gan", str(tmp_path / "other"), **QUICK).load(str(tmp_path / "resumed"))


def as_format_1(folder):
    """Rewrite a gan/dcgan/cgan checkpoint in the layout ganforge wrote before models owned
    their step (checkpoint format 1: a "variant", one G and one D, opt_g/opt_d). A format-1
    run made by that commit was also resumed by hand and matched its own straight run."""
    from ganforge.gan.trainer import _arrays_from
    tensors, state = io.load_checkpoint(folder)
    old_tensors = {k: v for k, v in tensors.items() if not k.startswith(("opt.", "model."))}
    optimizers = {}
    for old, new in (("opt_g", "G"), ("opt_d", "D")):
        saved = _arrays_from(tensors, state["optimizers"][new])
        for i, slot in enumerate(saved["state"]):
            for key, value in list(slot.items()):
                if hasattr(value, "shape"):
                    old_tensors[f"{old}.{i}.{key}"] = value
                    slot[key] = {"tensor": f"{old}.{i}.{key}"}
        optimizers[old] = saved
    data = state["data"]
    old_state = {k: v for k, v in state.items() if k not in ("format", "model", "data", "ema", "optimizers",
                                                               "model_state", "loaders")}
    old_state.update(variant=state["model"], loader=state["loaders"]["x"], data_shape=data["shape"], image_shape=data["image_shape"],
                     num_classes=len(data["classes"]) if data["classes"] else None,
                     ema_updates=state["ema"]["G"], optimizers=optimizers,
                     schedules=[state["model_state"]["schedules"][n] for n in ("G", "D")
                                if n in state["model_state"]["schedules"]])
    target = io.latest_checkpoint(folder)
    io.save_tensors(os.path.join(target, "tensors.safetensors"), old_tensors)
    with open(os.path.join(target, "state.json"), "w") as f:
        json.dump(old_state, f)


@pytest.mark.parametrize("name", ["gan", "cgan"])
def test_a_checkpoint_of_the_format_before_models_still_resumes_exactly(name, tiny_fashion, tmp_path):
    options = small(name, tiny_fashion, steps=4, lr_decay=True)
    straight = Trainer(name, str(tmp_path / "straight"), **options)
    straight.train()
    first = Trainer(name, str(tmp_path / "old"), **options)
    first.train(steps=2)
    first.save()
    as_format_1(str(tmp_path / "old"))
    assert "variant" in io.load_checkpoint(str(tmp_path / "old"))[1]
    samples, model = generate(str(tmp_path / "old"), 3)
    assert model.name == name and model.step == 2 and len(samples) == 3
    resumed = resume_or_start(name, str(tmp_path / "old"), resume=True)
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)


def test_a_checkpoint_from_a_newer_or_unknown_format_is_a_clear_error(tmp_path):
    Trainer("gan", str(tmp_path), **QUICK).train()
    path = os.path.join(io.latest_checkpoint(str(tmp_path)), "state.json")
    state = json.load(open(path))
    json.dump({**state, "format": 99}, open(path, "w"))
    with pytest.raises(io.CheckpointError, match="has checkpoint format 99, newer than this ganforge"):
        generate(str(tmp_path), 2)
    json.dump({"step": 3}, open(path, "w"))
    with pytest.raises(io.CheckpointError, match="is not a ganforge checkpoint"):
        resume_or_start("gan", str(tmp_path), resume=True)


def test_options_a_model_does_not_take_are_an_error(tmp_path):
    with pytest.raises(TypeError, match=r"unknown training options \['unrolled_steps'\] for two-generators"):
        Trainer(TwoGenerators, str(tmp_path), unrolled_steps=2)


class CycleToy(Model):
    """Unpaired a/b batches: two 1x1-conv translators trained on the cycle loss alone."""
    name = "cycle-toy"
    data_kind = "unpaired"
    defaults = {"batch_size": 2, "resolution": 8}
    options = {"lr": 1e-2}
    ema = ()

    def build_networks(self):
        return {"G_ab": nn.Conv2d(3, 3, 1), "G_ba": nn.Conv2d(3, 3, 1)}

    def build_optimizers(self):
        params = list(self.nets["G_ab"].parameters()) + list(self.nets["G_ba"].parameters())
        return {"G": optim.Adam(params, lr=self.config["lr"])}

    def train_step(self, batches):
        from ganforge.gan.steps import update
        batch = next(batches)
        a, b, G_ab, G_ba = batch["a"], batch["b"], self.nets["G_ab"], self.nets["G_ba"]
        assert a.shape == b.shape == (2, 3, 8, 8)
        loss = F.l1_loss(G_ba(G_ab(a)), a) + F.l1_loss(G_ab(G_ba(b)), b)
        update(self.optimizers["G"], loss)
        return {"loss_cycle": loss.item()}

    def preview(self):
        a = self.preview_batch["a"]
        return np.concatenate([a.numpy(), self.nets["G_ab"](a).numpy()]), len(a)


class UpscaleToy(Model):
    """Paired lr/hr batches: upsample and one convolution, trained on the L2 loss."""
    name = "upscale-toy"
    data_kind = "paired"
    defaults = {"data": "fashion-mnist", "batch_size": 4}
    options = {"lr": 1e-2}
    ema = ("G",)

    def build_networks(self):
        return {"G": nn.Sequential(nn.Upsample(scale_factor=self.config["scale"]), nn.Conv2d(1, 1, 3, padding=1))}

    def build_optimizers(self):
        return {"G": optim.Adam(self.nets["G"].parameters(), lr=self.config["lr"])}

    def train_step(self, batches):
        from ganforge.gan.steps import update
        batch = next(batches)
        assert batch["lr"].shape == (4, 1, 7, 7) and batch["hr"].shape == (4, 1, 28, 28)
        loss = F.mse_loss(self.nets["G"](batch["lr"]), batch["hr"])
        update(self.optimizers["G"], loss)
        return {"loss_l2": loss.item()}

    def preview(self):
        return self.nets["G"](self.preview_batch["lr"]).numpy(), None


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    Image = import_reference("PIL.Image", "pip install pillow")
    root = tmp_path_factory.mktemp("domains")
    rng = np.random.default_rng(1)
    for domain, count in (("a", 5), ("b", 7)):
        os.makedirs(root / domain)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / domain / f"{i}.png")
    return str(root / "a"), str(root / "b")


def assert_straight_equals_resumed(model, folder, options):
    straight = Trainer(model, str(folder / "straight"), **dict(options, steps=5))
    straight.train()
    first = Trainer(model, str(folder / "resumed"), **dict(options, steps=5))
    first.train(steps=2)
    first.save()
    resumed = Trainer(model, str(folder / "resumed"), **dict(options, steps=5)).load(str(folder / "resumed"))
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)
    assert straight.history == resumed.history
    assert os.path.exists(folder / "straight" / "samples" / "latest.png")
    return straight


def test_unpaired_domains_come_as_a_and_b_batches_and_resume_exactly(two_folders, tmp_path):
    a, b = two_folders
    trainer = assert_straight_equals_resumed(CycleToy, tmp_path, dict(QUICK, data=a, data_b=b, batch_size=2))
    assert set(trainer.loaders) == {"a", "b"}  # two loaders: the domains are drawn independently
    assert trainer.loaders["a"][1].epochs_done == 2 and trainer.loaders["b"][1].epochs_done == 1
    with pytest.raises(ValueError, match="needs two image sets: --data FOLDER_A --data-b FOLDER_B"):
        Trainer(CycleToy, str(tmp_path / "x"), data=a)


def test_paired_data_are_images_and_their_bicubic_downscales(tiny_fashion, tmp_path):
    assert_straight_equals_resumed(UpscaleToy, tmp_path, dict(QUICK, data_path=tiny_fashion, batch_size=4))
    with pytest.raises(ValueError, match="28x28 images do not divide by --scale 3"):
        Trainer(UpscaleToy, str(tmp_path / "x"), data_path=tiny_fashion, scale=3)


NUMPY_ALONE = r"""
import sys
BLOCKED = ("PIL", "tqdm", "torch", "triton", "cupy", "safetensors", "scipy")
import importlib.machinery
class Block:  # every optional package, and ganforge's compiled module, refuse to import
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked here")
        if name == "ganforge._C":  # found, but it does not load: as a broken build would
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ImportError("the compiled module is blocked here")
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Block())
import warnings
warnings.simplefilter("ignore")
from ganforge.backends.cpu import native
from ganforge.gan import generate
samples, model = generate(sys.argv[1], 5, labels=3)
print(model.name, samples.shape, float(abs(samples).max()) <= 1.0, native.available()[0])
"""


def test_a_trained_run_samples_with_numpy_alone(tiny_fashion, tmp_path):
    import subprocess
    import sys
    Trainer("cgan", str(tmp_path), **small("cgan", tiny_fashion)).train()
    done = subprocess.run([sys.executable, "-c", NUMPY_ALONE, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "cgan (5, 1, 28, 28) True False"


def test_augment_writes_labelled_images_a_pipeline_reads(tiny_fashion, tmp_path, capsys):
    run = tmp_path / "cgan"
    Trainer("cgan", str(run), **small("cgan", tiny_fashion, steps=1)).train()
    assert cli.main(["augment", str(run), "--n", "25", "--out", str(tmp_path / "synthetic.npz")]) == 0
    saved = np.load(tmp_path / "synthetic.npz")
    assert saved["images"].shape == (25, 1, 28, 28) and saved["labels"].tolist() == [i % 10 for i in range(25)]
    assert saved["classes"][0] == "T-shirt/top"
    assert cli.main(["augment", str(run), "--n", "20", "--out", str(tmp_path / "folder")]) == 0
    folders = sorted(os.listdir(tmp_path / "folder"))
    assert len(folders) == 10 and "T-shirt-top" in folders and "Ankle_boot" in folders
    assert all(len(os.listdir(tmp_path / "folder" / f)) == 2 for f in folders)
    dcgan = tmp_path / "dcgan"
    Trainer("dcgan", str(dcgan), **small("dcgan", tiny_fashion, steps=1)).train()
    capsys.readouterr()
    assert cli.main(["augment", str(dcgan), "--out", str(tmp_path / "x.npz")]) == 1
    assert "not class-conditional" in capsys.readouterr().err


def test_ctrl_c_checkpoints_the_step_in_progress_and_the_run_resumes_exactly(tmp_path, monkeypatch, capsys):
    """SIGINT in the middle of a step (here: inside the third) ends the run after that step,
    with a checkpoint of it; --resume then continues as if nothing had happened."""
    import signal
    options = dict(QUICK, steps=5, checkpoint_every=1000)
    straight = Trainer("gan", str(tmp_path / "straight"), **options)
    straight.train()
    interrupted = Trainer("gan", str(tmp_path / "interrupted"), **options)
    real_step = interrupted.model.train_step

    def step_with_a_signal(batches):
        losses = real_step(batches)
        if interrupted.step == 2:  # the third step, half done: the signal arrives now
            os.kill(os.getpid(), signal.SIGINT)
        return losses
    monkeypatch.setattr(interrupted.model, "train_step", step_with_a_signal)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under a shell's background job
    with pytest.raises(KeyboardInterrupt, match="step 3 is checkpointed"):
        interrupted.train()
    assert io.latest_checkpoint(str(tmp_path / "interrupted")).endswith("checkpoint-000003")
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    resumed = resume_or_start("gan", str(tmp_path / "interrupted"), resume=True)
    assert resumed.step == 3
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)


def test_labels_per_class_trains_on_that_many_images_of_each_class(tiny_fashion):
    from ganforge.gan.trainer import DEFAULTS, labelled_subset, load_data
    config = {**DEFAULTS, "data": "fashion-mnist", "data_path": tiny_fashion, "labels_per_class": 2}
    sources, _ = load_data(config)
    labels = sources["x"]["label"]
    assert sorted(np.bincount(labels, minlength=10)) == [2] * 10
    again, _ = load_data(config)
    np.testing.assert_array_equal(again["x"]["x"], sources["x"]["x"])  # the seed draws them
    other, _ = load_data({**config, "seed": 1})
    assert not np.array_equal(other["x"]["x"], sources["x"]["x"])
    with pytest.raises(ValueError, match="--labels-per-class 50: class 0 has only"):
        labelled_subset(labels, 50, 0)

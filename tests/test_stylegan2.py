"""StyleGAN2: its regularizers' gradients, exact resume with its running means, its
inference and editing, and the errors a user meets."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import cli, io
from ganforge import functional as F
from ganforge.gan import Trainer, load_model, resume_or_start
from ganforge.gan.models.stylegan2 import StyleGAN2, SynthesisNetwork
from ganforge.testing import gradcheck, gradgradcheck

from .test_trainer import small, state_of

pytestmark = pytest.mark.usefixtures("small_fashion_split")

TINY = dict(z_dim=8, w_dim=8, width=4, max_channels=8, batch_size=8, resolution=32)


def tiny(tiny_fashion, **extra):
    return small("stylegan2", tiny_fashion, **dict(TINY, **extra))


def test_the_path_length_penalty_is_correct_to_second_order():
    """The penalty differentiates the synthesis network's output with respect to w; its
    gradient (what training follows) and that gradient's gradient must match finite
    differences, through modulated, demodulated, grouped convolutions and upsampling."""
    gf.manual_seed(0)
    net = SynthesisNetwork(w_dim=3, resolution=8, image_channels=1, width=4, max_channels=2).double()
    ws = gf.tensor(np.random.default_rng(0).standard_normal((2, net.num_ws, 3)), requires_grad=True)
    directions = gf.tensor(np.random.default_rng(1).standard_normal((2, 1, 8, 8)) / 8)

    def penalty(ws):
        (g,) = gf.grad(F.sum(net(ws) * directions), ws, create_graph=True)
        lengths = F.sqrt(F.mean(F.sum(g * g, axis=2), axis=1))
        return F.mean((lengths - 0.5) ** 2)

    assert gradcheck(penalty, [ws])
    assert gradgradcheck(penalty, [ws])


def test_a_resumed_run_continues_exactly_with_its_running_means(tiny_fashion, tmp_path):
    """Six steps with both regularizers every two steps: the path-length mean, w's mean,
    the EMA (and its ramp-up) and the mixing draws must all come back."""
    options = tiny(tiny_fashion, steps=6, pl_every=2, r1_every=2)
    straight = Trainer("stylegan2", str(tmp_path / "straight"), **options)
    straight.train()
    first = Trainer("stylegan2", str(tmp_path / "resumed"), **options)
    first.train(steps=3)
    first.save()
    resumed = resume_or_start("stylegan2", str(tmp_path / "resumed"), resume=True)
    assert resumed.model.pl_mean == first.model.pl_mean != 0 and resumed.model.steps_done == 3
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)
    assert straight.model.pl_mean == resumed.model.pl_mean
    assert np.abs(straight.model.nets["G"].mapping.w_avg.numpy()).sum() > 0  # w's mean is tracked
    for key, value in straight.ema["G"].shadow.items():
        np.testing.assert_array_equal(value, resumed.ema["G"].shadow[key], err_msg=f"ema {key}")
    assert [h for h in straight.history] == [h for h in resumed.history]
    assert {"path_length", "r1"} <= set(straight.history[0])


def test_the_trainers_ema_follows_the_models_ramp_up(tiny_fashion, tmp_path):
    trainer = Trainer("stylegan2", str(tmp_path), **tiny(tiny_fashion, steps=3))
    trainer.train()
    ema = trainer.ema["G"]
    assert ema.updates == 3 and ema.current_decay() == trainer.model.ema_decay(3) < 0.5


def test_the_ema_ramps_up_as_ada_does():
    model = StyleGAN2.__new__(StyleGAN2)
    model.config = {"batch_size": 32, "ema_kimg": 10.0, "ema_rampup": 0.05}
    assert model.ema_decay(0) == 0.0  # the first average is the weights themselves
    assert model.ema_decay(100) == pytest.approx(0.5 ** (32 / (100 * 32 * 0.05)))
    assert model.ema_decay(10 ** 6) == pytest.approx(0.5 ** (32 / 10000))


def test_lazy_regularization_corrects_adams_rate_and_betas(tiny_fashion, tmp_path):
    trainer = Trainer("stylegan2", str(tmp_path), **tiny(tiny_fashion))
    g, d = trainer.model.optimizers["G"], trainer.model.optimizers["D"]
    assert g.lr == pytest.approx(0.0025 * 4 / 5) and g.hyper["betas"][1] == pytest.approx(0.99 ** (4 / 5))
    assert d.lr == pytest.approx(0.0025 * 16 / 17) and d.hyper["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))


@pytest.fixture
def trained(tiny_fashion, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stylegan2")
    Trainer("stylegan2", str(folder), **tiny(tiny_fashion, steps=4)).train()
    return folder


def test_truncation_pulls_samples_to_the_mean_image(trained):
    model = load_model(str(trained))
    full, none = model.sample(4, seed=1), model.sample(4, seed=1, truncation=0.0)
    assert full.shape == (4, 1, 32, 32)
    assert not np.allclose(full[0], full[1])
    np.testing.assert_allclose(none, np.broadcast_to(none[:1], none.shape), atol=1e-6)  # every w is w_avg
    np.testing.assert_array_equal(model.sample(4, seed=1), full)  # seeded, and the noise is fixed


def test_the_style_mixing_grid_takes_each_range_from_the_column_sources(trained):
    model = load_model(str(trained))
    images, columns = model.style_mixing_grid(rows=2, columns=3)
    ranges = model.style_ranges()
    assert columns == 4 and len(images) == 4 + len(ranges) * 2 * 4
    assert sorted(i for layers in ranges.values() for i in layers) == list(range(model.nets["G"].num_ws))
    column_sources = images[1:4]
    fine_all = images[4 + 4 * 2 * (len(ranges) - 1):]  # the last range's rows
    assert fine_all.shape[1:] == (1, 32, 32) and not np.allclose(column_sources[0], images[4])


def test_the_commands_sample_mix_and_walk(trained, tmp_path, capsys):
    from PIL import Image
    assert cli.main(["sample", str(trained), "--n", "8", "--truncation", "0.7", "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["mix", str(trained), "--out", str(tmp_path / "mix.png")]) == 0
    assert cli.main(["interpolate", str(trained), "--frames", "6", "--out", str(tmp_path / "walk.gif")]) == 0
    walk = Image.open(tmp_path / "walk.gif")
    assert walk.n_frames == 6 and Image.open(tmp_path / "mix.png").size[0] > 0


def test_projection_finds_the_w_of_a_generated_image(trained, tmp_path):
    model = load_model(str(trained))
    target = model.sample(1, seed=5)[0]
    io.save_image(str(tmp_path / "target.png"), target)
    w, image, losses = model.project(target, steps=60, seed=0)
    assert w.shape == (model.nets["G"].num_ws, model.config["w_dim"]) and image.shape == target.shape
    assert losses[-1] < losses[0] * 0.7  # it moves toward the target
    assert cli.main(["project", str(trained), "--input", str(tmp_path / "target.png"), "--steps", "10",
                     "--out", str(tmp_path / "projected.png")]) == 0
    assert (tmp_path / "projected.png").exists() and (tmp_path / "projected.npy").exists()


def test_wrong_inputs_are_one_line_errors(trained, tiny_fashion, tmp_path, capsys):
    with pytest.raises(ValueError, match="power of two"):
        Trainer("stylegan2", str(tmp_path / "r28"), **tiny(tiny_fashion, resolution=28))
    dcgan = tmp_path / "dcgan"
    Trainer("dcgan", str(dcgan), **small("dcgan", tiny_fashion, steps=1)).train()
    assert cli.main(["mix", str(dcgan), "--out", str(tmp_path / "m.png")]) == 1
    assert "has no W space" in capsys.readouterr().err
    assert cli.main(["sample", str(dcgan), "--truncation", "0.5", "--out", str(tmp_path / "s.png")]) == 1
    assert "has no W space" in capsys.readouterr().err
    assert cli.main(["sample", str(trained), "--truncation", "1.5", "--out", str(tmp_path / "s.png")]) == 1
    assert "--truncation must be in [0, 1]" in capsys.readouterr().err
    assert cli.main(["interpolate", str(dcgan), "--frames", "3", "--out", str(tmp_path / "w.gif")]) == 0

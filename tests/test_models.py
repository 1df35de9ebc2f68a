"""The model files against what they promise: each paper's settings, the networks each
paper prescribes, where a model's random numbers come from, and its pictures."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import nn
from ganforge.gan import MODELS
from ganforge.gan.model import DataInfo, Model
from ganforge.gan.trainer import DEFAULTS
from ganforge.tensor import Generator

FASHION = DataInfo("fashion-mnist", (1, 28, 28), (1, 28, 28), tuple("0123456789"))
FLAT_FASHION = DataInfo("fashion-mnist", (784,), (1, 28, 28), tuple("0123456789"))
RING = DataInfo("ring8", (2,))

REMEDIES_OFF = {"unrolled_steps": 0, "unrolled_form": "first-order", "minibatch_discrimination": False,
                "clip_grad_norm": None}
ADAM_GAN = {"betas": (0.5, 0.999), "n_critic": 1, "penalty": "none", "penalty_weight": 10.0, "lr_decay": False,
            **REMEDIES_OFF}

# What `ganforge list` and docs/training.md promise, each model as its paper trains it
# (batch 64 for the image models: bench/BENCH_MODELS.md's dcgan28).
SETTINGS = {
    # the MLP GAN of the 2-D mixtures' protocol: z of 2, Adam 1e-3, batches of 256
    "gan": ({"data": "ring8", "steps": 5000, "batch_size": 256, "flatten": True},
            {"z_dim": 2, "lr": 1e-3, **ADAM_GAN}),
    # Radford et al. 2016: z of 100, Adam lr 2e-4, beta1 0.5; the layers' own initialization,
    # which measured better than the paper's N(0, 0.02) at 3000 steps (docs/quality.md)
    "dcgan": ({"data": "fashion-mnist", "steps": 3000, "batch_size": 64},
              {"z_dim": 100, "lr": 2e-4, "init": "default", **ADAM_GAN}),
    # Miyato & Koyama 2018 (projection discriminator, hinge loss): DCGAN's optimizer
    "cgan": ({"data": "fashion-mnist", "steps": 3000, "batch_size": 64}, {"z_dim": 100, "lr": 2e-4, "init": "dcgan", **ADAM_GAN}),
    # Mao et al. 2017: Adam lr 2e-4, beta1 0.5
    "lsgan": ({"data": "fashion-mnist", "steps": 3000, "batch_size": 64}, {"z_dim": 100, "lr": 2e-4, **ADAM_GAN}),
    # Miyato et al. 2018 (hinge loss): Adam lr 2e-4, beta1 0.5, one D step
    "sngan": ({"data": "ring8", "steps": 5000, "batch_size": 256}, {"z_dim": 2, "lr": 2e-4, **ADAM_GAN}),
    # Arjovsky et al. 2017: RMSprop lr 5e-5, 5 critic steps, clipping at 0.01, batch 64
    "wgan": ({"data": "fashion-mnist", "steps": 3000, "batch_size": 64},
             {"z_dim": 100, "lr": 5e-5, **ADAM_GAN, "n_critic": 5}),
    # Gulrajani et al. 2017 (toy experiments): Adam lr 1e-4, betas (0.5, 0.9), 5 critic
    # steps, lambda 10, batches of 256
    "wgan-gp": ({"data": "ring8", "steps": 3000, "batch_size": 256},
                {"z_dim": 2, "lr": 1e-4, **ADAM_GAN, "betas": (0.5, 0.9), "n_critic": 5, "penalty": "gp"}),
    # Schlegl et al. 2019 (f-AnoGAN): DCGAN's GAN, then the izi_f encoder with kappa 1; D's
    # transformation task is SS-GAN's (Chen et al. 2019: weight 1 in D's loss) with GEOM's 72;
    # the score's memory of training images is ours (1 nearest, in D's features)
    "anomaly": ({"data": "fashion-mnist", "steps": 3000, "batch_size": 64},
                {"z_dim": 100, "lr": 2e-4, "init": "default", **ADAM_GAN, "normal_class": None,
                 "encoder_steps": 1000, "kappa": 1.0, "held_out": 0.1, "transformations": 72,
                 "transformation_weight": 1.0, "nearest": 1}),
    # Reed et al. 2016 (GAN-INT-CLS) on cgan's recipe: z of 100, Adam 2e-4, beta1 0.5
    "text2image": ({"data": "fashion-mnist", "steps": 3000, "batch_size": 64},
                   {"z_dim": 100, "lr": 2e-4, "init": "dcgan", **ADAM_GAN, "text_dim": 64,
                    "held_out_combinations": True}),
}


def build(name, data, **config):
    cls = MODELS[name]
    return cls({**DEFAULTS, **cls.defaults, **cls.options, **config}, data)


def test_each_model_keeps_its_papers_settings():
    assert set(SETTINGS) <= set(MODELS)
    for name, (defaults, options) in SETTINGS.items():
        assert MODELS[name].defaults == defaults, name
        assert MODELS[name].options == options, name
    assert MODELS["wgan"].weight_clip == 0.01


def layers(net, kind):
    return [m for m in net.modules() if isinstance(m, kind)]


def test_each_model_has_the_networks_its_paper_prescribes():
    wgan_gp = build("wgan-gp", FASHION)  # Gulrajani et al.: no batch norm in the critic
    assert not layers(wgan_gp.nets["D"], nn.BatchNorm2d) and layers(wgan_gp.nets["G"], nn.BatchNorm2d)
    cgan = build("cgan", FASHION)  # a projection discriminator with spectral norm on every layer
    convs = layers(cgan.nets["D"], nn.Conv2d)
    assert convs and all(hasattr(c, "weight_orig") for c in convs)
    dcgan = build("dcgan", FASHION)
    assert layers(dcgan.nets["D"], nn.BatchNorm2d) and not any(hasattr(c, "weight_orig")
                                                                for c in layers(dcgan.nets["D"], nn.Conv2d))


def test_a_model_built_by_hand_draws_the_noise_the_trainer_would_give_it():
    model = build("gan", RING, seed=3)
    np.testing.assert_array_equal(model.noise.uniform((5,), np.float64), Generator(4).uniform((5,), np.float64))

    class Bare(Model):  # a model whose config has no seed: seed 0, so its noise is stream 1
        def build_networks(self):
            return {}
    np.testing.assert_array_equal(Bare({}, RING).noise.uniform((5,), np.float64),
                                  Generator(1).uniform((5,), np.float64))


def test_z_comes_from_the_models_own_stream_and_the_preview_from_a_third():
    first, second = build("gan", RING, seed=0), build("gan", RING, seed=0)
    a = first.z(4).numpy()
    gf.manual_seed(123)  # the global stream must not matter
    np.testing.assert_array_equal(second.z(4).numpy(), a)
    # fixed_z is stream seed + 2: neither the weights' stream (seed) nor the steps' (seed + 1)
    np.testing.assert_array_equal(first.fixed_z.numpy(), gf.randn(2500, 2, generator=Generator(2)).numpy())


def test_pictures_have_the_datas_shape_and_the_protocols_size():
    flat = build("gan", FLAT_FASHION)
    assert flat.preview_size() == 64
    pictures, columns = flat.preview()
    assert pictures.shape == (64, 1, 28, 28) and columns is None
    assert flat.as_pictures(np.zeros((3, 784))).shape == (3, 1, 28, 28)
    assert flat.as_pictures(np.zeros((3, 1, 28, 28))).shape == (3, 1, 28, 28)
    points = build("gan", RING)
    assert points.preview_size() == 2500  # the mode-coverage protocol's sample count
    assert points.preview()[0].shape == (2500, 2)
    assert points.sample(3).shape == (3, 2)


def test_samples_depend_on_the_seed_alone():
    model = build("gan", RING)
    np.testing.assert_array_equal(model.sample(5), model.sample(5, seed=0))
    assert not np.array_equal(model.sample(5), model.sample(5, seed=1))
    cgan = build("cgan", FASHION)
    np.testing.assert_array_equal(cgan.sample(3), cgan.sample(3, seed=0))


def test_cgan_pictures_are_a_row_per_class_and_labels_are_checked():
    cgan = build("cgan", FASHION)
    pictures, columns = cgan.preview()
    assert columns == 8 and pictures.shape == (10 * 8, 1, 28, 28)
    for label in (9, 0):
        assert cgan.sample(2, labels=label).shape == (2, 1, 28, 28)
    for label in (10, -1):
        with pytest.raises(ValueError, match=r"--label must be in \[0, 10\)"):
            cgan.sample(2, labels=label)


def test_the_discriminator_update_adds_the_penalty(monkeypatch):
    """D's loss is its GAN loss plus the penalty (plus, not minus: the penalty is minimized)."""
    from ganforge.gan.models import gan as gan_module
    seen = []
    monkeypatch.setattr(gan_module, "update", lambda optimizer, loss, clip=None: seen.append(loss.item()))
    monkeypatch.setattr(gan_module, "discriminator_penalty", lambda *args: gf.tensor(5.0))
    model = build("gan", RING)
    model.setup_optimizers()
    batches = iter(lambda: {"x": gf.randn(8, 2)}, None)
    loss_d, penalty, _, _ = model.discriminator_step(next(batches))
    assert seen == [pytest.approx(loss_d.item() + 5.0)] and penalty.item() == 5.0


def test_data_info_is_immutable():
    """A model's DataInfo is what its checkpoints record: it cannot change under a run."""
    import dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        FASHION.name = "other"


def test_a_checkpoints_schedules_must_be_this_runs():
    with_decay = build("gan", RING, lr_decay=True, steps=10)
    with_decay.setup_optimizers()
    saved = with_decay.state_dict()
    assert set(saved["schedules"]) == {"G", "D"}
    without = build("gan", RING)
    without.setup_optimizers()
    for state, model in ((saved, without), (without.state_dict(), with_decay),
                         ({"schedules": {"G": saved["schedules"]["G"]}}, with_decay)):
        with pytest.raises(ValueError, match="learning-rate schedules"):
            model.load_state_dict(state)
    with_decay.load_state_dict(saved)


def test_only_named_model_classes_register():
    from ganforge.gan.model import register_model

    class NotAModel:
        name = "not-a-model"

    class Unnamed(Model):
        pass
    for cls in (NotAModel, Unnamed, "gan"):
        with pytest.raises(TypeError, match="a Model subclass with a name"):
            register_model(cls)
    assert "not-a-model" not in MODELS


def test_cgan_samples_the_classes_in_turn_by_default():
    cgan = build("cgan", FASHION)
    np.testing.assert_array_equal(cgan.sample(12), cgan.sample(12, labels=np.arange(12) % 10))


def test_mlp_generators_end_in_tanh_for_images_only():
    assert isinstance(list(build("gan", FLAT_FASHION).nets["G"].modules())[-1], nn.Tanh)
    assert not layers(build("gan", RING).nets["G"], nn.Tanh)


def test_sngan_and_wgan_critics():
    """SNGAN: spectral norm on every layer of D and no batch norm (Miyato et al.); WGAN:
    no batch norm in the critic, whose Lipschitz bound comes from clipping each layer."""
    sngan = build("sngan", FASHION)
    weighted = layers(sngan.nets["D"], (nn.Conv2d, nn.Linear))
    assert weighted and all(hasattr(m, "weight_orig") for m in weighted)
    assert not layers(sngan.nets["D"], nn.BatchNorm2d)
    assert not layers(build("wgan", FASHION).nets["D"], nn.BatchNorm2d)


@pytest.mark.parametrize("model", ["dcgan", "cgan"])
def test_init_chooses_the_dcgan_papers_weights_or_the_layers_own(model):
    """--init dcgan: conv weights ~ N(0, 0.02), as the DCGAN paper has them; --init
    default: the layers' own (PyTorch's kaiming-uniform), whose spread is not 0.02; --init
    dcgan-d: the paper's in D, the layers' own in G. Looked at on each network's first
    convolution."""
    from ganforge.gan import get_model
    data = DataInfo("fashion-mnist", (1, 28, 28), (1, 28, 28), tuple(str(i) for i in range(10)))
    stds = {}
    for init in ("dcgan", "default", "dcgan-d"):
        config = {**get_model(model).options, "seed": 0, "init": init}
        nets = get_model(model)(config, data).nets
        for net in ("G", "D"):
            weight = next(p for name, p in nets[net].named_parameters()
                          if name.endswith(("weight", "weight_orig")) and p.ndim == 4).numpy()
            stds[init, net] = weight.std()
    for net in ("G", "D"):
        assert abs(stds["dcgan", net] - 0.02) < 0.001
        assert abs(stds["default", net] - 0.02) > 0.005
    assert abs(stds["dcgan-d", "G"] - 0.02) > 0.005 and abs(stds["dcgan-d", "D"] - 0.02) < 0.001
    with pytest.raises(ValueError, match="unknown initialization 'xavier'"):
        get_model(model)({**get_model(model).options, "seed": 0, "init": "xavier"}, data)

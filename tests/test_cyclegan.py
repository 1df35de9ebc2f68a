"""CycleGAN: its networks, image pool, crops, data, step, resume, inference and bad input.
(Its layers' gradients are checked with the other layers'; the PyTorch twin's parity is
in test_torch_parity.py.)"""
import os

import numpy as np
import pytest

import ganforge as gf
from ganforge import cli, io
from ganforge.data import edge_maps, random_crop_flip
from ganforge.data.fashion_edges import sobel_magnitude
from ganforge.gan import Trainer, load_model, resume_or_start
from ganforge.gan.models.cyclegan import ImagePool, patch_discriminator, resnet_generator
from ganforge.metrics import mean_absolute_error, psnr
from ganforge.tensor import Generator

from .conftest import import_reference
from .test_trainer import QUICK, state_of

pytestmark = pytest.mark.usefixtures("small_fashion_split")

TINY = dict(QUICK, batch_size=2, width=4, blocks=1, pool_size=3)


def test_the_generator_keeps_the_image_shape_and_the_discriminator_scores_patches():
    gf.manual_seed(0)
    G = resnet_generator(3, width=4, blocks=2)
    x = gf.randn(2, 3, 32, 36)
    y = G(x)
    assert y.shape == x.shape and float(abs(y.numpy()).max()) <= 1.0  # tanh
    # 70x70 PatchGAN (3 strided layers): 64 -> 32 -> 16 -> 8, then two 4x4 stride-1 convs: 7, 6
    assert patch_discriminator(3, 4, 3)(gf.randn(1, 3, 64, 64)).shape == (1, 1, 6, 6)
    # the small-image variant, one strided layer fewer: 28 -> 14 -> 7 -> 6 -> 5
    assert patch_discriminator(1, 4, 2)(gf.randn(1, 1, 28, 28)).shape == (1, 1, 5, 5)
    # the paper's initialization: N(0, 0.02) weights, zero biases
    first = G._modules["1"]
    assert abs(float(first.weight.numpy().std()) - 0.02) < 0.004 and not first.bias.numpy().any()


def test_a_residual_block_adds_its_input():
    gf.manual_seed(0)
    G = resnet_generator(1, width=2, blocks=1)
    block = G._modules["10"]
    x = gf.randn(1, 8, 6, 6)
    np.testing.assert_allclose(block(x).numpy(), x.numpy() + block.body(x).numpy(), rtol=1e-6)


def test_the_image_pool_fills_then_swaps_half_the_time():
    pool, noise = ImagePool(size=4), Generator(0)
    first = gf.Tensor(np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1))
    np.testing.assert_array_equal(pool.query(first, noise).numpy(), first.numpy())  # filling: back as they came
    swapped = 0
    for step in range(200):
        new = gf.Tensor(np.full((1, 1, 1, 1), 100.0 + step, dtype=np.float32))
        before = [image.copy() for image in pool.images]
        out = pool.query(new, noise).numpy()
        if out[0, 0, 0, 0] != 100.0 + step:  # an older image came out, and the new one took its place
            swapped += 1
            assert any(np.array_equal(out[0], image) for image in before)
            assert sum(np.array_equal(image, new.numpy()[0]) for image in pool.images) == 1
        else:
            assert all(np.array_equal(a, b) for a, b in zip(before, pool.images))
        assert len(pool.images) == 4
    assert 70 < swapped < 130  # probability 1/2
    restored = ImagePool(size=9)
    restored.load_state_dict(pool.state_dict())
    assert restored.size == 4 and all(np.array_equal(a, b) for a, b in zip(restored.images, pool.images))


def test_random_crops_and_flips_are_pieces_of_the_image():
    images = np.random.default_rng(0).standard_normal((64, 2, 9, 7)).astype(np.float32)
    crops = random_crop_flip(gf.Tensor(images), 5, Generator(1)).numpy()
    assert crops.shape == (64, 2, 5, 5)
    flipped, corners = 0, set()
    for image, crop in zip(images, crops):
        found = [(top, left, flip) for top in range(5) for left in range(3) for flip in (False, True)
                 if np.array_equal(crop, (lambda c: c[:, :, ::-1] if flip else c)(image[:, top:top + 5, left:left + 5]))]
        assert len(found) == 1
        flipped += found[0][2]
        corners.add(found[0][:2])
    assert 16 < flipped < 48 and len(corners) > 8
    with pytest.raises(ValueError, match="images of 9x7 cannot be cropped to 8x8"):
        random_crop_flip(gf.Tensor(images), 8, Generator(1))


def test_edge_maps_mark_steep_gradients_dark_on_white():
    image = -np.ones((1, 1, 6, 6), dtype=np.float32)
    image[..., 3:] = 1.0  # a vertical step from black to white
    magnitude = sobel_magnitude((image + 1) / 2)
    np.testing.assert_allclose(magnitude[0, 0, :, 2:4], 4.0)  # [1 2 1] across a unit step
    np.testing.assert_allclose(magnitude[0, 0, :, [0, 1, 4, 5]], 0.0)
    edges = edge_maps(image)
    assert edges.dtype == np.float32
    np.testing.assert_array_equal(edges[0, 0, 0], [1, 1, -1, -1, 1, 1])


def test_psnr_and_l1_on_the_unit_scale():
    reference = np.zeros((2, 1, 4, 4), dtype=np.float32)
    shifted = reference + 0.2  # 0.1 on the [0, 1] scale: MSE 0.01, 20 dB
    assert psnr(shifted, reference) == pytest.approx(20.0)
    assert mean_absolute_error(shifted, reference) == pytest.approx(0.1)
    assert psnr(reference, reference) == 100.0
    with pytest.raises(ValueError, match="cannot be compared"):
        psnr(reference, reference[:1])


@pytest.fixture()
def edges_run(tiny_fashion, tmp_path):
    trainer = Trainer("cyclegan", str(tmp_path / "run"), **dict(TINY, data_path=tiny_fashion, steps=4))
    trainer.train()
    return trainer


def test_a_step_trains_all_four_networks_and_the_schedule_halves_then_falls(edges_run):
    assert set(edges_run.model.nets) == {"G_ab", "G_ba", "D_a", "D_b"}
    assert set(edges_run.model.optimizers) == {"G", "D"}
    assert {"loss_g", "loss_cycle", "loss_identity", "loss_d_a", "loss_d_b"} <= set(edges_run.history[-1])
    # constant for the first half (2 of 4 steps), then linearly to 0
    schedule = edges_run.model.schedules["G"]
    assert [schedule.factor(s) for s in range(5)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    assert edges_run.model.optimizers["G"].lr == 0.0
    assert len(edges_run.model.pools["a"].images) == 3  # full: 4 steps of 2 images, 3 kept


def test_the_preview_shows_input_translation_and_reconstruction(edges_run):
    pictures, columns = edges_run.preview()
    model = edges_run.model
    a = model.preview_batch["a"].numpy()
    assert columns == 6 and pictures.shape == (6 * len(a), 1, 28, 28)
    rows = pictures.reshape(len(a), 6, 1, 28, 28)
    np.testing.assert_array_equal(rows[:, 0], a)
    np.testing.assert_allclose(rows[:, 1], model.translate(a, "ab"), atol=1e-6)
    np.testing.assert_allclose(rows[:, 2], model.translate(model.translate(a, "ab"), "ba"), atol=1e-6)
    assert os.path.exists(os.path.join(edges_run.out_dir, "samples", "latest.png"))


def test_a_resumed_cyclegan_continues_exactly(tiny_fashion, tmp_path):
    options = dict(TINY, data_path=tiny_fashion, steps=6)
    straight = Trainer("cyclegan", str(tmp_path / "straight"), **options)
    straight.train()
    first = Trainer("cyclegan", str(tmp_path / "resumed"), **options)
    first.train(steps=3)
    first.save()
    del first
    resumed = resume_or_start("cyclegan", str(tmp_path / "resumed"), resume=True)
    assert resumed.step == 3 and len(resumed.model.pools["a"].images) == 3
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)
    for domain in "ab":
        for x, y in zip(straight.model.pools[domain].images, resumed.model.pools[domain].images):
            np.testing.assert_array_equal(x, y)
    assert straight.history == resumed.history
    assert [o.lr for o in straight.model.optimizers.values()] == [o.lr for o in resumed.model.optimizers.values()]


def test_translate_takes_any_size_and_refuses_the_wrong_channels(edges_run):
    model = load_model(edges_run.out_dir)
    odd = np.random.default_rng(0).uniform(-1, 1, (2, 1, 30, 33)).astype(np.float32)
    out = model.translate(odd, "ba")
    assert out.shape == odd.shape and np.isfinite(out).all()
    # padding by reflection reaches past the crop only through the receptive field: the
    # top-left corner matches a translation of the image padded by hand
    padded = np.pad(odd, ((0, 0), (0, 0), (0, 2), (0, 3)), mode="reflect")
    np.testing.assert_allclose(out, model.translate(padded, "ba")[:, :, :30, :33], atol=1e-6)
    with pytest.raises(ValueError, match=r"translate takes \(N, 1, H, W\) images"):
        model.translate(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="direction must be 'ab' or 'ba'"):
        model.translate(odd, "ac")


def test_the_translate_command_writes_one_image_per_input(edges_run, tmp_path, capsys):
    import_reference("PIL", "pip install pillow")
    inputs = tmp_path / "in"
    os.makedirs(inputs / "sub")
    io.save_image(inputs / "one.png", np.ones((1, 28, 28), np.float32))
    io.save_image(inputs / "sub" / "two.png", -np.ones((3, 20, 24), np.float32))  # RGB: converted to grey
    run = edges_run.out_dir
    assert cli.main(["translate", run, "--input", str(inputs), "--out", str(tmp_path / "out")]) == 0
    from PIL import Image
    assert Image.open(tmp_path / "out" / "sub" / "two.png").size == (24, 20)
    assert Image.open(tmp_path / "out" / "one.png").mode == "L"
    assert cli.main(["translate", run, "--input", str(inputs / "one.png"), "--out", str(tmp_path / "b.png"),
                     "--direction", "ba"]) == 0
    assert "translated 1 image B -> A" in capsys.readouterr().out


def test_translate_on_a_run_that_is_not_a_cyclegan_says_so(tiny_fashion, tmp_path, capsys):
    Trainer("dcgan", str(tmp_path / "dcgan"), **dict(QUICK, data_path=tiny_fashion)).train()
    io.save_image(tmp_path / "x.png", np.zeros((1, 28, 28), np.float32))
    assert cli.main(["translate", str(tmp_path / "dcgan"), "--input", str(tmp_path / "x.png"),
                     "--out", str(tmp_path / "y.png")]) == 1
    assert "holds a dcgan run, which does not translate images; train cyclegan" in capsys.readouterr().err


@pytest.fixture()
def folders(tmp_path):
    Image = import_reference("PIL.Image", "pip install pillow")
    rng = np.random.default_rng(0)

    def folder(name, count, mode, size=(40, 36)):
        os.makedirs(tmp_path / name)
        for i in range(count):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / name / f"{i}.png")
        return str(tmp_path / name)
    return folder


def test_two_folders_train_at_the_resolution_from_slightly_larger_images(folders, tmp_path):
    a, b = folders("a", 3, "RGB"), folders("b", 4, "RGB")
    trainer = Trainer("cyclegan", str(tmp_path / "run"), **dict(TINY, data=a, data_b=b, resolution=32))
    assert trainer.data.shape == (3, 32, 32)
    assert trainer.loaders["a"][1].arrays[0].shape == (3, 3, 36, 36)  # 32 * 286/256, to a multiple of 4
    trainer.train()
    assert trainer.model.pools["b"].images[0].shape == (3, 32, 32)


def test_a_grey_folder_against_an_rgb_one_is_converted_and_said_once(folders, tmp_path, capsys):
    a, b = folders("grey", 3, "L"), folders("rgb", 3, "RGB")
    trainer = Trainer("cyclegan", str(tmp_path / "run"), **dict(TINY, data=a, data_b=b, resolution=32))
    assert trainer.data.shape == (3, 32, 32) and trainer.loaders["a"][1].arrays[0].shape[1] == 3
    said = capsys.readouterr().out
    assert said.count("converted to RGB") == 1 and a in said


def test_bad_folders_get_one_line_errors(folders, tmp_path, capsys):
    empty = tmp_path / "empty"
    os.makedirs(empty)
    good = folders("good", 2, "RGB")
    assert cli.main(["train", "cyclegan", "--data", str(empty), "--data-b", good, "--out", str(tmp_path / "r")]) == 1
    assert f"no PNG or JPEG images found under {empty}" in capsys.readouterr().err
    broken = tmp_path / "broken"
    os.makedirs(broken)
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert cli.main(["train", "cyclegan", "--data", good, "--data-b", str(broken), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert f"{broken / 'bad.png'}: cannot be read as an image" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["train", "cyclegan", "--data", good, "--data-b", str(tmp_path / "nowhere"),
                     "--out", str(tmp_path / "r")]) == 1
    assert "image folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="whose sides are multiples of 4"):
        Trainer("cyclegan", str(tmp_path / "r"), **dict(TINY, data=good, data_b=good, resolution=30))


def test_a_translation_flag_on_another_model_is_one_line(capsys):
    assert cli.main(["train", "dcgan", "--width", "8", "--blocks", "2", "--out", "unused"]) == 1
    assert capsys.readouterr().err.strip() == ("ganforge: error: --blocks, --width do not apply to dcgan "
                                               "(`ganforge list` shows what each model is)")
    assert cli.main(["train", "cyclegan", "--n-critic", "2", "--out", "unused"]) == 1
    assert "--n-critic does not apply to cyclegan" in capsys.readouterr().err


def test_translation_scores_measure_each_direction_against_the_true_pairs(monkeypatch):
    from ganforge.metrics import translation
    rng = np.random.default_rng(0)
    garments = rng.uniform(-1, 1, (6, 1, 28, 28)).astype(np.float32)
    edges = edge_maps(garments)
    labels = np.arange(6) % 10
    monkeypatch.setattr(translation, "load_fashion_edges", lambda root, split: (edges, garments, labels))
    perfect = translation.translation_scores(lambda x, d: garments if d == "ab" else edges)
    assert perfect["edges -> garment"]["l1"] == 0 and perfect["garment -> edges"]["psnr"] == 100.0
    floor = translation.translation_scores(translation.identity_translation)
    assert floor["edges -> garment"]["l1"] == pytest.approx(mean_absolute_error(edges, garments))
    assert 0 <= floor["edges -> garment"]["class_accuracy"] <= 1


def test_evaluate_refuses_a_cyclegan_without_true_pairs(folders, tmp_path, capsys):
    a, b = folders("a", 2, "RGB"), folders("b", 2, "RGB")
    Trainer("cyclegan", str(tmp_path / "run"), **dict(TINY, data=a, data_b=b, resolution=16, steps=1)).train()
    assert cli.main(["evaluate", str(tmp_path / "run")]) == 1
    assert "has no true pairs" in capsys.readouterr().err


# --- the paper's settings, written out: what the mutation run found unpinned ---------------

def tiny_model(channels=1, size=8, **options):
    from ganforge.gan.model import DataInfo
    from ganforge.gan.models.cyclegan import CycleGAN
    from ganforge.gan.trainer import DEFAULTS
    config = {**DEFAULTS, **CycleGAN.defaults, **CycleGAN.options, "width": 4, "blocks": 1, "pool_size": 3,
              "steps": 10, **options}
    shape = (channels, size, size) if isinstance(size, int) else (channels,) + size
    model = CycleGAN(config, DataInfo("test", shape, shape))
    model.setup_optimizers()
    return model


def test_the_papers_settings():
    from ganforge.gan.models.cyclegan import CycleGAN
    assert CycleGAN.options == {"lr": 2e-4, "betas": (0.5, 0.999), "lr_decay": True, "cycle_weight": 10.0,
                                "identity_weight": 0.5, "pool_size": 50, "width": None, "blocks": None}
    assert CycleGAN.defaults == {"data": "fashion-edges", "steps": 20000, "batch_size": 1, "lr_decay": True}
    assert CycleGAN.lr_constant == 0.5 and CycleGAN.ema == () and ImagePool().size == 50


def layer_table(net):
    """(kind, out channels, kernel, stride, padding) of each layer with weights, and the rest by name."""
    rows = []
    for module in net.modules():
        if isinstance(module, (gf.nn.Conv2d, gf.nn.ConvTranspose2d)):
            out = module.out_channels
            rows.append((type(module).__name__, out, module.kernel_size[0], module.stride[0], module.padding[0]))
        elif isinstance(module, (gf.nn.ReflectionPad2d, gf.nn.InstanceNorm2d, gf.nn.LeakyReLU, gf.nn.Tanh)):
            rows.append((type(module).__name__, getattr(module, "num_features", None) or
                         getattr(module, "negative_slope", None) or getattr(module, "padding", (None,))[0]))
    return rows


def test_the_networks_are_the_papers_layer_by_layer():
    conv, convt, norm, pad = "Conv2d", "ConvTranspose2d", "InstanceNorm2d", "ReflectionPad2d"
    block = [(pad, 1), (conv, 32, 3, 1, 0), (norm, 32), (pad, 1), (conv, 32, 3, 1, 0), (norm, 32)]
    assert layer_table(resnet_generator(3, 8, 2)) == [  # c7s1-8, d16, d32, R32 x 2, u16, u8, c7s1-3
        (pad, 3), (conv, 8, 7, 1, 0), (norm, 8), (conv, 16, 3, 2, 1), (norm, 16), (conv, 32, 3, 2, 1), (norm, 32),
        *block, *block, (convt, 16, 3, 2, 1), (norm, 16), (convt, 8, 3, 2, 1), (norm, 8),
        (pad, 3), (conv, 3, 7, 1, 0), ("Tanh", None)]
    assert [m.output_padding for m in resnet_generator(3, 8, 1).modules() if isinstance(m, gf.nn.ConvTranspose2d)] \
        == [(1, 1), (1, 1)]
    assert layer_table(patch_discriminator(3, 8, 3)) == [  # C8 (no norm) - C16 - C32 - C64 (stride 1) - 1
        (conv, 8, 4, 2, 1), ("LeakyReLU", 0.2), (conv, 16, 4, 2, 1), (norm, 16), ("LeakyReLU", 0.2),
        (conv, 32, 4, 2, 1), (norm, 32), ("LeakyReLU", 0.2), (conv, 64, 4, 1, 1), (norm, 64), ("LeakyReLU", 0.2),
        (conv, 1, 4, 1, 1)]
    assert [row[1] for row in layer_table(patch_discriminator(1, 2, 5)) if row[0] == conv] == [2, 4, 8, 16, 16, 16, 1]
    gf.manual_seed(0)
    weight = resnet_generator(3, 64, 1)._modules["4"].weight.numpy()
    assert abs(weight.mean()) < 0.001 and weight.std() == pytest.approx(0.02, rel=0.02)


@pytest.mark.parametrize("size, width, blocks, strided", [(28, 32, 4, 2), (60, 32, 4, 2), (64, 64, 6, 3),
                                                          (96, 64, 6, 3), (124, 64, 6, 3), (128, 64, 9, 3),
                                                          (132, 64, 9, 3)])
def test_the_widths_and_depths_follow_the_resolution(size, width, blocks, strided):
    model = tiny_model(size=size, width=None, blocks=None)
    G, D = model.nets["G_ab"], model.nets["D_a"]
    assert G._modules["1"].out_channels == width
    assert sum(type(m).__name__ == "ResidualBlock" for m in G.modules()) == blocks
    assert sum(isinstance(m, gf.nn.Conv2d) and m.stride == (2, 2) for m in D.modules()) == strided
    assert tiny_model(size=size, width=6, blocks=2).nets["G_ba"]._modules["1"].out_channels == 6
    with pytest.raises(ValueError, match="whose sides are multiples of 4"):
        tiny_model(size=(size, size + 2))  # one side off is enough


def test_one_step_is_the_papers_objective_and_adams_first_update(monkeypatch):
    """The losses a step reports, and the parameters it moves, recomputed from the networks
    as they were: the least-squares GAN terms, cycle and identity L1 with weights 10 and 5,
    D's loss halved on the pooled fakes, and Adam's first step (lr * g / (|g| + eps))."""
    import copy

    from ganforge.gan.models import cyclegan
    gf.manual_seed(0)
    model = tiny_model(size=16)
    before = {name: copy.deepcopy(net) for name, net in model.nets.items()}
    crops = []
    monkeypatch.setattr(cyclegan, "random_crop_flip", lambda *args: crops.append(random_crop_flip(*args)) or crops[-1])
    rng = np.random.default_rng(0)
    batch = {k: gf.Tensor(rng.uniform(-1, 1, (2, 1, 16, 16)).astype(np.float32)) for k in "ab"}
    losses = model.train_step(iter([batch]))
    real_a, real_b = crops
    G_ab, G_ba, D_a, D_b = (before[k] for k in ("G_ab", "G_ba", "D_a", "D_b"))

    def l1(x, y):
        return (x - y).abs().mean()

    def lsq(scores, target):
        return ((scores - target) ** 2).mean()
    fake_b, fake_a = G_ab(real_a), G_ba(real_b)
    gan = lsq(D_b(fake_b), 1) + lsq(D_a(fake_a), 1)
    cycle = l1(G_ba(fake_b), real_a) + l1(G_ab(fake_a), real_b)
    identity = l1(G_ab(real_b), real_b) + l1(G_ba(real_a), real_a)
    # the pool is empty before the first step, so the discriminators see the fakes themselves
    d_a = 0.5 * (lsq(D_a(real_a), 1) + lsq(D_a(fake_a.detach()), 0))
    d_b = 0.5 * (lsq(D_b(real_b), 1) + lsq(D_b(fake_b.detach()), 0))
    expected = {"loss_g": gan, "loss_cycle": cycle, "loss_identity": identity, "loss_d_a": d_a, "loss_d_b": d_b}
    for name, value in expected.items():
        assert losses[name] == pytest.approx(value.item(), rel=1e-5), name
    for nets, loss in ((("G_ab", "G_ba"), gan + 10 * cycle + 5 * identity), (("D_a", "D_b"), d_a + d_b)):
        params = [p for name in nets for p in before[name].parameters()]
        grads = gf.grad(loss, params)
        moved = [p for name in nets for p in model.nets[name].parameters()]
        for old, new, g in zip(params, moved, grads):
            g = g.numpy()
            step = 2e-4 * g / (np.abs(g) + 1e-8)
            np.testing.assert_allclose(old.numpy() - new.numpy(), step, rtol=1e-3, atol=1e-7)


def test_the_pool_swaps_by_its_draws():
    """Replaying the generator's draws: after the pool is full, a draw u < 1/2 returns the
    stored image at int(u' * size) and keeps the new one in its place."""
    pool, noise = ImagePool(size=3), Generator(5)
    replay = np.random.default_rng(5)
    stored = []
    for step in range(40):
        images = np.full((2, 1, 1, 1), step, dtype=np.float32) + np.array([0.0, 0.5], np.float32)[:, None, None, None]
        out = pool.query(gf.Tensor(images), noise).numpy()
        draws = replay.random((2, 2))
        for image, got, (u_swap, u_index) in zip(images, out, draws):
            if len(stored) < 3:
                stored.append(image)
                expected = image
            elif u_swap < 0.5:
                i = int(u_index * 3)
                expected, stored[i] = stored[i], image
            else:
                expected = image
            np.testing.assert_array_equal(got, expected)


def test_translate_pads_only_the_sides_that_need_it_and_checks_its_input():
    gf.manual_seed(0)
    model = tiny_model(channels=3)
    rng = np.random.default_rng(1)
    for height, width in ((31, 20), (20, 29), (17, 18)):
        image = rng.uniform(-1, 1, (1, 3, height, width)).astype(np.float32)
        padded = np.pad(image, ((0, 0), (0, 0), (0, -height % 4), (0, -width % 4)), mode="reflect")
        np.testing.assert_allclose(model.translate(image, "ab"), model.translate(padded, "ab")[..., :height, :width],
                                   atol=1e-6)
    for shape in ((3, 8, 8), (1, 3, 8), (1, 3, 8, 8, 1), (1, 1, 8, 8), (1, 4, 8, 8)):
        with pytest.raises(ValueError, match=r"translate takes \(N, 3, H, W\) images"):
            model.translate(np.zeros(shape, np.float32))


def test_the_preview_crops_the_centre():
    model = tiny_model(size=32)
    images = np.arange(40 * 36, dtype=np.float32).reshape(1, 1, 40, 36)
    np.testing.assert_array_equal(model.center_crop(images), images[:, :, 4:36, 2:34])
    large = np.arange(80 * 72, dtype=np.float32).reshape(1, 1, 80, 72)  # more than twice the size
    np.testing.assert_array_equal(model.center_crop(large), large[:, :, 24:56, 20:52])

"""SRGAN: its networks, paired data from folders, the two phases, resume, upscaling in
tiles, the super-resolution measures and bad input. (PReLU's and bicubic_resize's
gradients are checked with the other ops' in test_ops.py; the PyTorch twin's parity is in
test_torch_parity.py.)"""
import os

import numpy as np
import pytest

import ganforge as gf
from ganforge import cli
from ganforge.data import load_image_crops, resize_bicubic
from ganforge.data.folder import crop_positions
from ganforge.gan import Trainer, resume_or_start
from ganforge.gan.models.srgan import SRResNet, srgan_discriminator
from ganforge.metrics import luma, ssim, super_resolution_scores, upscaling_report

from .conftest import import_reference
from .test_trainer import QUICK, state_of

pytestmark = pytest.mark.usefixtures("small_fashion_split")

TINY = dict(QUICK, batch_size=4, width=4, blocks=1)


@pytest.fixture()
def photos(tmp_path):
    """A folder of random RGB images of a few sizes, as PNGs."""
    Image = import_reference("PIL.Image", "pip install pillow")
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    os.makedirs(folder)
    for i, (width, height) in enumerate([(40, 32), (33, 47), (32, 32)]):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return str(folder)


def test_the_generator_upscales_any_size_and_the_discriminator_scores_its_crops():
    gf.manual_seed(0)
    for scale in (2, 4, 8):
        G = SRResNet(channels=3, scale=scale, width=4, blocks=2)
        y = G(gf.randn(2, 3, 5, 7))
        assert y.shape == (2, 3, 5 * scale, 7 * scale) and float(abs(y.numpy()).max()) <= 1.0  # tanh
    # four stride-2 convolutions: 96 -> 6 and 28 -> 2, then dense 1024 and one logit
    assert srgan_discriminator(3, 96, width=4)(gf.randn(2, 3, 96, 96)).shape == (2, 1)
    D = srgan_discriminator(1, 28, width=4)
    assert D(gf.randn(2, 1, 28, 28)).shape == (2, 1) and D._modules["24"].in_features == 32 * 2 * 2
    with pytest.raises(ValueError, match="x2 stages, so 2, 4 or 8"):
        SRResNet(scale=3)


def test_the_receptive_radius_bounds_what_an_output_pixel_sees():
    gf.manual_seed(0)
    G = SRResNet(channels=1, scale=2, width=4, blocks=2).eval()
    radius = G.receptive_radius()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 40, 40)).astype(np.float32)
    poked = x.copy()
    poked[0, 0, 20, 20] += 1.0
    with gf.no_grad():
        changed = np.abs(G(gf.tensor(poked)).numpy() - G(gf.tensor(x)).numpy())[0, 0] > 0
    rows, cols = np.nonzero(changed)  # high-resolution pixel j is low-resolution pixel j // 2's
    reach = max(np.abs(rows // 2 - 20).max(), np.abs(cols // 2 - 20).max())
    assert 0 < reach <= radius and reach > radius - 3  # the bound is a bound, and nearly tight


def test_upscaling_in_tiles_leaves_no_seams(tiny_fashion, tmp_path):
    trainer = Trainer("srgan", str(tmp_path), **dict(TINY, data_path=tiny_fashion, content_only=True))
    trainer.train()  # batch-norm statistics that are not the initial ones
    model = trainer.model
    model.nets["G"].eval()
    images = np.random.default_rng(1).uniform(-1, 1, (2, 1, 23, 30)).astype(np.float32)
    whole = model.upscale(images, tile=1000)
    assert whole.shape == (2, 1, 92, 120)
    for tile in (7, 10, 16):
        np.testing.assert_allclose(model.upscale(images, tile=tile), whole, atol=2e-6, err_msg=f"tile {tile}")
    with pytest.raises(ValueError, match=r"upscale takes \(N, 1, H, W\) images"):
        model.upscale(np.zeros((1, 3, 8, 8), np.float32))


def test_crops_cover_every_image_on_a_half_overlapping_grid(photos):
    assert crop_positions(40, 16, 8) == [0, 8, 16, 24] and crop_positions(33, 16, 8) == [0, 8, 16, 17]
    crops = load_image_crops(photos, 16)
    # 40x32: 4 x 3 crops; 33x47: 4 x 5; 32x32: 3 x 3
    assert crops.shape == (12 + 20 + 9, 3, 16, 16) and crops.dtype == np.float32
    assert crops.min() >= -1 and crops.max() <= 1
    with pytest.raises(ValueError, match=r"0\.png is 40x32 pixels, smaller than the 36x36 crops: choose a smaller "
                                         r"--resolution"):
        load_image_crops(photos, 36)


def test_a_folder_trains_on_crops_and_their_downscales(photos, tmp_path):
    trainer = Trainer("srgan", str(tmp_path), **dict(TINY, data=photos, resolution=16, scale=2))
    arrays = trainer.loaders["pairs"][1].arrays
    hr, lr = (arrays[list(trainer.loaders["pairs"][0]).index(k)] for k in ("hr", "lr"))
    assert hr.shape == (41, 3, 16, 16) and lr.shape == (41, 3, 8, 8)
    np.testing.assert_allclose(lr, resize_bicubic(hr, 8, 8), atol=1e-6)
    assert trainer.data.shape == (3, 16, 16) and set(trainer.model.nets) == {"G", "D"}
    trainer.train()
    assert os.path.exists(tmp_path / "samples" / "latest.png")


def test_srresnet_trains_g_alone_on_mse_and_srgan_starts_from_it(tiny_fashion, tmp_path, capsys):
    options = dict(TINY, data_path=tiny_fashion)
    srresnet = Trainer("srgan", str(tmp_path / "srresnet"), **dict(options, content_only=True))
    assert set(srresnet.model.nets) == {"G"} and set(srresnet.model.optimizers) == {"G"}
    history = srresnet.train()
    assert set(history[0]) - {"step"} == {"loss_mse"} and history[-1]["loss_mse"] < history[0]["loss_mse"] * 1.5
    srresnet.save()
    srgan = Trainer("srgan", str(tmp_path / "srgan"), **dict(options, init_from=str(tmp_path / "srresnet")))
    assert f"G starts from {tmp_path / 'srresnet'} (its step 3)" in capsys.readouterr().out
    for key, value in srresnet.model.nets["G"].state_dict().items():
        np.testing.assert_array_equal(value.numpy(), srgan.model.nets["G"].state_dict()[key].numpy(), err_msg=key)
    before = state_of(srgan)
    assert set(srgan.train()[0]) - {"step"} == {"loss_content", "loss_g", "loss_d"}
    after = state_of(srgan)
    for net in ("G", "D"):
        assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith(net + ".")), net
    with pytest.raises(ValueError, match=r"its srgan run has none of this model's networks|is not this run's G"):
        Trainer("srgan", str(tmp_path / "x"), **dict(options, width=8, init_from=str(tmp_path / "srresnet")))


def test_a_resumed_srgan_continues_exactly_without_the_run_it_started_from(tiny_fashion, tmp_path):
    import shutil
    base = Trainer("srgan", str(tmp_path / "base"), **dict(TINY, data_path=tiny_fashion, content_only=True))
    base.train()
    base.save()
    options = dict(TINY, data_path=tiny_fashion, steps=6, init_from=str(tmp_path / "base"))
    straight = Trainer("srgan", str(tmp_path / "straight"), **options)
    straight.train()
    first = Trainer("srgan", str(tmp_path / "resumed"), **options)
    first.train(steps=3)
    first.save()
    shutil.rmtree(tmp_path / "base")  # the checkpoint holds the weights now
    resumed = resume_or_start("srgan", str(tmp_path / "resumed"), resume=True)
    resumed.train()
    for key, value in state_of(straight).items():
        np.testing.assert_array_equal(value, state_of(resumed)[key], err_msg=key)
    assert straight.history == resumed.history


def test_the_feature_content_loss_is_the_classifiers_and_only_for_fashion(tiny_fashion, photos, tmp_path):
    trainer = Trainer("srgan", str(tmp_path / "f"), **dict(TINY, data_path=tiny_fashion, content="features"))
    model = trainer.model
    assert all(not p.requires_grad for p in model.feature_net.parameters())
    a, b = gf.randn(2, 1, 28, 28), gf.randn(2, 1, 28, 28)
    expected = ((model.feature_net(a).numpy() - model.feature_net(b).numpy()) ** 2).mean()
    assert float(model.content_loss(a, b).numpy()) == pytest.approx(expected, rel=1e-5)
    trainer.train()
    with pytest.raises(ValueError, match="takes 28x28 grey images; this run's are \\(3, 16, 16\\): use --content mse"):
        Trainer("srgan", str(tmp_path / "p"), **dict(TINY, data=photos, resolution=16, content="features"))


@pytest.fixture()
def fashion_run(tiny_fashion, tmp_path):
    trainer = Trainer("srgan", str(tmp_path / "run"), **dict(TINY, data_path=tiny_fashion, content_only=True))
    trainer.train()
    trainer.save()
    return str(tmp_path / "run")


def test_the_upscale_command_writes_images_scale_times_larger(fashion_run, photos, tmp_path, capsys):
    Image = import_reference("PIL.Image", "pip install pillow")
    assert cli.main(["upscale", fashion_run, "--input", photos, "--out", str(tmp_path / "up"), "--tile", "9"]) == 0
    assert "upscaled 3 images x4 with srgan (step 3)" in capsys.readouterr().out
    with Image.open(tmp_path / "up" / "1.png") as image:
        assert image.size == (33 * 4, 47 * 4) and image.mode == "L"  # the run's channels: grey
    assert cli.main(["upscale", fashion_run, "--input", os.path.join(photos, "0.png"),
                     "--out", str(tmp_path / "one.png"), "--scale", "4"]) == 0


def test_upscale_and_evaluate_refuse_bad_input_in_one_line(fashion_run, photos, tiny_fashion, tmp_path, capsys):
    def error(*argv):
        assert cli.main(list(argv)) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "upscales by 4, not by --scale 2: train a x2 run (ganforge train srgan --scale 2)" in \
        error("upscale", fashion_run, "--input", photos, "--out", str(tmp_path / "o"), "--scale", "2")
    broken = tmp_path / "broken"
    os.makedirs(broken)
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert f"{broken / 'bad.png'}: cannot be read as an image" in \
        error("upscale", fashion_run, "--input", str(broken), "--out", str(tmp_path / "o"))
    assert f"{broken / 'bad.png'}: cannot be read as an image" in \
        error("train", "srgan", "--data", str(broken), "--out", str(tmp_path / "r"))
    assert "smaller than the 96x96 crops" in error("train", "srgan", "--data", photos, "--out", str(tmp_path / "r"))
    assert "SRResNet upsamples in x2 stages, so 2, 4 or 8" in \
        error("train", "srgan", "--data", photos, "--resolution", "24", "--scale", "3", "--out", str(tmp_path / "r"))
    assert "Fashion-MNIST's 28x28 images do not divide by --scale 8: use --scale 2 or 4" in \
        error("train", "srgan", "--data-path", tiny_fashion, "--scale", "8", "--out", str(tmp_path / "r"))
    assert "32x32 images do not divide by --scale 3: choose a --resolution that is a multiple of 3" in \
        error("train", "srgan", "--data", photos, "--resolution", "32", "--scale", "3", "--out", str(tmp_path / "r"))
    Trainer("dcgan", str(tmp_path / "dcgan"), **dict(QUICK, data_path=tiny_fashion)).save()
    assert "holds a dcgan run, which does not upscale images; train srgan for that" in \
        error("upscale", str(tmp_path / "dcgan"), "--input", photos, "--out", str(tmp_path / "o"))
    assert "--tile 0: give a positive number" in \
        error("upscale", fashion_run, "--input", photos, "--out", str(tmp_path / "o"), "--tile", "0")
    assert "--content-only does not apply to dcgan" in error("train", "dcgan", "--content-only", "--out", "unused")


def test_evaluate_scores_the_model_against_bicubic_on_held_out_images(fashion_run, photos, capsys):
    assert cli.main(["evaluate", fashion_run, "--data", photos]) == 0
    out = capsys.readouterr().out
    assert "srgan x4 at step 3, 3 images of" in out and "PSNR (dB) and SSIM on the luma" in out
    assert out.splitlines()[2].split()[0] == "bicubic" and out.splitlines()[3].split()[0] == "srresnet"


# --- the measures ---------------------------------------------------------------------------

def test_luma_ssim_and_psnr_match_scikit_image():
    metrics = import_reference("skimage.metrics", "pip install scikit-image")
    color = import_reference("skimage.color", "pip install scikit-image")
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 3, 30, 26))
    noisy = np.clip(images + rng.normal(0, 0.2, images.shape), -1, 1)
    y, y_noisy = luma(images), luma(noisy)
    for i in range(2):
        expected = color.rgb2ycbcr(((images[i] + 1) / 2).transpose(1, 2, 0))[..., 0] / 255
        np.testing.assert_allclose(y[i], expected, atol=1e-12)
    theirs = [metrics.structural_similarity(a, b, data_range=1, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False) for a, b in zip(y_noisy, y)]
    assert ssim(y_noisy, y) == pytest.approx(np.mean(theirs), abs=1e-12)
    scores = super_resolution_scores(noisy, images, scale=2)
    crop = (slice(None), slice(2, -2), slice(2, -2))
    assert scores["psnr"] == pytest.approx(np.mean([metrics.peak_signal_noise_ratio(a, b, data_range=1)
                                                    for a, b in zip(y[crop], y_noisy[crop])]), abs=1e-10)
    assert scores["ssim"] == pytest.approx(ssim(y_noisy[crop], y[crop]), abs=1e-12)
    grey = images[:, :1]
    np.testing.assert_allclose(luma(grey), (grey[:, 0] + 1) / 2)
    with pytest.raises(ValueError, match="ssim needs images of at least 11x11"):
        ssim(y[:, :10], y[:, :10])


def test_the_report_puts_bicubic_beside_the_model_on_images_of_any_size():
    rng = np.random.default_rng(0)
    originals = [rng.uniform(-1, 1, (3, 30, 27)), rng.uniform(-1, 1, (3, 24, 24))]
    bicubic_again = lambda lr: np.clip(resize_bicubic(lr, lr.shape[2] * 2, lr.shape[3] * 2), -1, 1)
    report = upscaling_report(bicubic_again, originals, 2)
    assert report["model"] == pytest.approx(report["bicubic"])
    perfect = upscaling_report(lambda lr: originals[0][None, :, :30, :26] if lr.shape[2] == 15 else originals[1][None],
                               originals, 2)
    assert perfect["model"]["psnr"] == 100.0 and perfect["model"]["ssim"] == pytest.approx(1.0)
    assert perfect["bicubic"]["psnr"] < 20


def test_the_photographs_come_from_scikit_images_package(tmp_path):
    import_reference("skimage", "pip install scikit-image")
    from ganforge.data.photos import TEST, TRAIN, install_photos
    train, test = install_photos(str(tmp_path / "photos"))
    assert sorted(os.listdir(train)) == sorted(TRAIN) and sorted(os.listdir(test)) == sorted(TEST)
    assert not set(TRAIN) & set(TEST)
    crops = load_image_crops(train, 96)
    assert crops.shape[1:] == (3, 96, 96) and len(crops) > 500

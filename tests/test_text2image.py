"""Text-to-image: captions from measured attributes, the text encoder against PyTorch's
EmbeddingBag, the matching-aware discriminator's loss, training and exact resume, and
the sample and evaluate commands with their errors."""
import json

import numpy as np
import pytest

import ganforge as gf
from ganforge import cli, nn
from ganforge.data import captions
from ganforge.gan import Trainer
from ganforge.gan.models.text2image import BagOfWords
from ganforge.gan.trainer import load_data

from .conftest import import_reference, needs_fashion_mnist
from .test_trainer import QUICK, resumed_beside_straight

pytestmark = pytest.mark.usefixtures("small_fashion_split")


def test_captions_read_as_english_and_parse_back():
    assert captions.caption(9) == "an ankle boot"
    assert captions.caption(9, -1, 1) == "a dark, wide ankle boot"
    assert captions.caption(2, 1) == "a bright pullover"
    assert captions.caption(0, 0, -1) == "a narrow t-shirt"
    for k in range(10):
        for b in (-1, 0, 1):
            for w in (-1, 0, 1):
                text = captions.caption(k, b, w)
                assert captions.parse(text) == (k, b, w), text
                tokens = captions.tokenize(text)
                assert " ".join(captions.VOCABULARY[t] for t in tokens if t) == text.replace(",", "")
    assert captions.parse("Shirt, WIDE") == (6, 0, 1)  # a user's spelling: case and commas do not matter


@pytest.mark.parametrize("text, message", [
    ("a shiny pullover", "unknown word 'shiny' in 'a shiny pullover': the vocabulary is a an dark bright narrow wide"),
    ("a dark bright coat", "asks for both dark and bright: choose one"),
    ("a bright", "must name one garment of: t-shirt, trousers"),
    ("a dress, a coat", "must name one garment"),
    ("", "the text is empty"),
])
def test_bad_captions_are_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message):
        captions.parse(text)


def test_attributes_are_measured_on_the_garment():
    images = np.full((2, 1, 28, 28), -1.0, dtype=np.float32)
    images[0, 0, 4:24, 4:24] = 0.9    # bright and wide
    images[1, 0, 4:24, 11:17] = -0.2  # dark and narrow
    measured = captions.measure(images)
    np.testing.assert_allclose(measured["brightness"], [0.9, -0.2], rtol=1e-6)
    np.testing.assert_allclose(measured["width"], [20 / 28, 6 / 28])
    cuts = {"brightness": np.tile([0.0, 0.5], (10, 1)), "width": np.tile([0.3, 0.6], (10, 1))}
    assert captions.captions_of(images, np.array([3, 3]), cuts) == ["a bright, wide dress", "a dark, narrow dress"]


def test_the_text_encoder_matches_pytorch_embedding_bag():
    torch = import_reference("torch", "pip install torch==2.13.0")
    gf.manual_seed(0)
    ours = BagOfWords(len(captions.VOCABULARY), 8).double()
    bag = torch.nn.EmbeddingBag(len(captions.VOCABULARY), 8, mode="mean", padding_idx=0).double()
    mix = torch.nn.Linear(8, 8).double()
    with torch.no_grad():
        bag.weight.copy_(torch.from_numpy(ours.embed.weight.numpy()))
        mix.weight.copy_(torch.from_numpy(ours.mix.weight.numpy()))
        mix.bias.copy_(torch.from_numpy(ours.mix.bias.numpy()))
    tokens = np.stack([captions.tokenize(t) for t in ("a dark, wide ankle boot", "a bag", "an ankle boot")])
    theirs = torch.nn.functional.leaky_relu(mix(bag(torch.from_numpy(tokens))), 0.2)
    out = ours(gf.tensor(tokens))
    np.testing.assert_allclose(out.numpy(), theirs.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    theirs.sum().backward()
    np.testing.assert_allclose(ours.embed.weight.grad.numpy()[1:], bag.weight.grad.numpy()[1:], rtol=1e-10, atol=1e-14)


def test_the_held_out_combinations_are_not_trained_on(tiny_fashion):
    config = {"data": "fashion-mnist", "data_path": tiny_fashion, "held_out_combinations": True}
    sources, info = load_data(config, "captioned")
    texts = {" ".join(captions.VOCABULARY[t] for t in row if t) for row in sources["x"]["tokens"]}
    assert texts and not texts & {captions.caption(*c).replace(",", "") for c in captions.HELD_OUT}
    everything, _ = load_data({**config, "held_out_combinations": False}, "captioned")
    assert len(everything["x"]["x"]) == 64 > len(sources["x"]["x"])
    with pytest.raises(ValueError, match="text2image writes its captions from Fashion-MNIST's classes"):
        load_data({**config, "data": "ring8"}, "captioned")


def test_the_discriminator_calls_a_real_image_with_a_wrong_caption_fake(tiny_fashion, tmp_path):
    """GAN-INT-CLS: loss_d = hinge(real, right) + (hinge(fake, right) + hinge(real, wrong)) / 2."""
    trainer = Trainer("text2image", str(tmp_path), **dict(QUICK, data_path=tiny_fashion))
    model = trainer.model
    D = model.nets["D"]
    batch = next(trainer._batches())
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    # spectral norm advances its power iteration at every forward: replay the step's three
    # forwards in its order, from the same state and the same noise
    d_state = {k: v.numpy().copy() for k, v in D.state_dict().items()}
    noise_state = model.noise.get_state()
    fake = model.nets["G"](model.z(len(batch["x"])), batch["tokens"])
    real_right = D(batch["x"], batch["tokens"]).numpy()
    fake_right = D(fake, batch["tokens"]).numpy()
    real_wrong = D(batch["x"], gf.tensor(np.roll(batch["tokens"].numpy(), 1, axis=0))).numpy()
    D.load_state_dict(d_state)
    model.noise.set_state(noise_state)
    loss_d = model.discriminator_step(batch)[0].item()
    expected = relu(1 - real_right).mean() + 0.5 * (relu(1 + fake_right).mean() + relu(1 + real_wrong).mean())
    assert loss_d == pytest.approx(expected, rel=1e-5)


def test_text2image_trains_resumes_and_draws_from_text(tiny_fashion, tmp_path, capsys):
    resumed_beside_straight("text2image", tmp_path, 2, **dict(QUICK, steps=4, data_path=tiny_fashion))
    run = str(tmp_path / "straight")
    assert cli.main(["sample", run, "--text", "a dark, wide ankle boot", "--n", "4", "--out",
                     str(tmp_path / "boots.npy")]) == 0
    boots = np.load(tmp_path / "boots.npy")
    assert boots.shape == (4, 1, 28, 28)
    assert cli.main(["sample", run, "--text", "a bright bag", "--n", "4", "--out", str(tmp_path / "bags.npy")]) == 0
    assert not np.allclose(np.load(tmp_path / "bags.npy"), boots)  # the same z, another text
    capsys.readouterr()
    gan_run = str(tmp_path / "gan")
    Trainer("gan", gan_run, **QUICK).train()
    for argv, message in [([run, "--text", "a shiny coat"], "unknown word 'shiny'"),
                          ([run, "--label", "3"], "text2image draws from text: use --text"),
                          ([gan_run, "--text", "a coat"], "which does not draw from text; train text2image")]:
        assert cli.main(["sample", *argv, "--out", str(tmp_path / "x.png")]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@needs_fashion_mnist
def test_evaluate_reports_how_well_the_text_is_followed(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer("text2image", str(run), **dict(QUICK, steps=2)).train()
    assert cli.main(["evaluate", str(run), "--n", "180", "--json", str(tmp_path / "e.json")]) == 0
    assert "2 samples per caption" in capsys.readouterr().out
    report = json.load(open(tmp_path / "e.json"))
    assert report["seen"]["captions"] == 80 and report["unseen"]["captions"] == 10
    for row in report.values() if isinstance(report, dict) else ():
        if isinstance(row, dict):
            assert 0 <= row["class_accuracy"] <= 1 and -1 <= row["brightness_corr"] <= 1


def test_the_text_encoder_differentiates_to_second_order():
    """BagOfWords is built of ops gradchecked one by one; this checks them composed, padding
    mask and mean included, in its embedding and its linear weights, to second order."""
    from ganforge.testing import gradcheck, gradgradcheck
    gf.manual_seed(1)
    encoder = BagOfWords(len(captions.VOCABULARY), 4).double()
    tokens = gf.tensor(np.stack([captions.tokenize(t) for t in ("a dark, wide ankle boot", "a bag")]))
    embed = encoder.embed.weight.detach().requires_grad_()
    mix = encoder.mix.weight.detach().requires_grad_()

    def encode(e, m):
        return nn.utils.functional_call(encoder, {"embed.weight": e, "mix.weight": m}, (tokens,))
    assert gradcheck(encode, (embed, mix))
    assert gradgradcheck(encode, (embed, mix))

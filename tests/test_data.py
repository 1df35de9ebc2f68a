"""Data: the 2-D mixtures, IDX files (and what is wrong with bad ones), Fashion-MNIST,
image folders, the seeded loader, and mode coverage."""
import gzip
import os

import numpy as np
import pytest

import ganforge as gf
from ganforge.data import DataFormatError, DataLoader, load_fashion_mnist, read_idx, sample_mixture, write_idx
from ganforge.metrics import mode_coverage

from .conftest import import_reference, needs_fashion_mnist


def test_ring8_has_eight_distinct_modes_on_the_unit_circle():
    means = gf.data.RING8_MEANS
    assert len(np.unique(np.round(means, 6), axis=0)) == 8  # not linspace(0, 2 pi, 8)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 1.0)
    x = sample_mixture("ring8", 20000, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.shape == (20000, 2)
    nearest = np.linalg.norm(x[:, None] - means[None], axis=2).argmin(axis=1)
    assert np.abs(np.bincount(nearest, minlength=8) / 20000 - 1 / 8).max() < 0.01
    np.testing.assert_allclose((x - means[nearest]).std(), 0.01, rtol=0.03)


def test_grid25_means_and_spread():
    means = gf.data.GRID25_MEANS
    assert sorted(set(means[:, 0])) == [-4, -2, 0, 2, 4] and len(means) == 25
    x = sample_mixture("grid25", 20000, np.random.default_rng(1))
    nearest = np.linalg.norm(x[:, None] - means[None], axis=2).argmin(axis=1)
    np.testing.assert_allclose((x - means[nearest]).std(), 0.05, rtol=0.03)
    with pytest.raises(ValueError, match="unknown mixture 'ring9'"):
        sample_mixture("ring9", 1, np.random.default_rng(0))


def test_mode_coverage_of_perfect_and_collapsed_samplers():
    perfect = mode_coverage(sample_mixture("ring8", 2500, np.random.default_rng(2)), "ring8")
    assert perfect["modes"] == 8 and perfect["high_quality_percent"] == pytest.approx(98.9, abs=0.6)
    assert perfect["kl"] < 0.01
    collapsed = np.tile(gf.data.RING8_MEANS[3], (2500, 1))
    assert mode_coverage(collapsed, "ring8") == {"modes": 1, "high_quality_percent": 100.0, "kl": pytest.approx(np.log(8))}
    far = mode_coverage(np.zeros((100, 2)), "grid25")
    assert far["modes"] == 1  # (0, 0) is a grid25 mean
    assert mode_coverage(np.full((100, 2), 1.0), "grid25")["modes"] == 0
    with pytest.raises(ValueError, match="expects samples of shape \\(N, 2\\)"):
        mode_coverage(np.zeros((4, 3)), "ring8")


@pytest.mark.parametrize("name", ["data.idx", "data.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, array)


def test_bad_idx_files_say_what_is_wrong(tmp_path):
    good = tmp_path / "good.idx"
    write_idx(good, np.zeros((3, 4, 4), dtype=np.uint8))
    raw = good.read_bytes()
    (tmp_path / "truncated.idx").write_bytes(raw[:-5])
    with pytest.raises(DataFormatError, match="promises shape \\(3, 4, 4\\).*it is truncated or corrupt"):
        read_idx(tmp_path / "truncated.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x1f\x8b" + raw[2:])
    with pytest.raises(DataFormatError, match="not an IDX file \\(magic bytes 1f8b"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "broken.idx.gz").write_bytes(gzip.compress(raw)[:20])
    with pytest.raises(DataFormatError, match="corrupt or truncated"):
        read_idx(tmp_path / "broken.idx.gz")


def write_fake_fashion_mnist(folder, n=6, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    write_idx(os.path.join(folder, "train-images-idx3-ubyte" + suffix), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte" + suffix), rng.integers(0, 10, n, dtype=np.uint8))


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_loads_from_a_folder_or_the_environment(tmp_path, monkeypatch, gz):
    write_fake_fashion_mnist(tmp_path, gz=gz)
    images, labels = load_fashion_mnist(str(tmp_path), expected_count=0)
    assert images.shape == (6, 1, 28, 28) and images.dtype == np.float32 and labels.dtype == np.int64
    assert -1.0 <= images.min() and images.max() <= 1.0
    monkeypatch.setenv("GANFORGE_DATA", str(tmp_path))
    assert load_fashion_mnist(expected_count=6)[0].shape[0] == 6
    with pytest.raises(DataFormatError, match="expected 60000 images in the train split, found 6"):
        load_fashion_mnist()


def test_a_missing_data_set_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.delenv("GANFORGE_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte\\[.gz\\] not found.*apt-get install"):
        load_fashion_mnist(str(tmp_path))


def test_wrong_image_shapes_are_refused(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 32, 32), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, dtype=np.uint8))
    with pytest.raises(DataFormatError, match="expected uint8 images of shape \\(N, 28, 28\\).*\\(2, 32, 32\\)"):
        load_fashion_mnist(str(tmp_path), expected_count=0)


@needs_fashion_mnist
def test_the_real_fashion_mnist_test_split():
    images, labels = load_fashion_mnist(split="test")
    assert images.shape == (10000, 1, 28, 28)
    assert np.bincount(labels).tolist() == [1000] * 10


def test_image_folders_of_any_size_and_mode(tmp_path):
    Image = import_reference("PIL.Image", "pip install pillow")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 256, (50, 30), dtype=np.uint8)).save(tmp_path / "tall_grey.jpg")
    os.makedirs(tmp_path / "sub")
    Image.fromarray(np.full((16, 16, 3), 255, dtype=np.uint8)).save(tmp_path / "sub" / "white.jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    rgb = gf.data.load_image_folder(str(tmp_path), 32, channels=3)
    assert rgb.shape == (3, 3, 32, 32) and rgb.dtype == np.float32
    assert -1 <= rgb.min() and rgb.max() <= 1
    assert gf.data.load_image_folder(str(tmp_path), 28, channels=1).shape == (3, 1, 28, 28)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png: cannot be read as an image"):
        gf.data.load_image_folder(str(tmp_path), 32)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no PNG or JPEG images"):
        gf.data.load_image_folder(str(tmp_path / "empty"), 32)


def test_loader_is_seeded_covers_each_epoch_and_resumes_exactly():
    x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10)
    loader = DataLoader(x, y, batch_size=3, seed=7)
    assert len(loader) == 3
    first_epoch = [loader.next_batch() for _ in range(3)]
    seen = np.concatenate([b[1].numpy() for b in first_epoch])
    assert len(set(seen.tolist())) == 9  # drop_last: 9 of the 10, no repeats
    np.testing.assert_array_equal(first_epoch[0][0].numpy()[:, 0], first_epoch[0][1].numpy())
    state = loader.state_dict()
    straight = [loader.next_batch()[1].numpy() for _ in range(5)]
    resumed = DataLoader(x, y, batch_size=3, seed=123)
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(np.concatenate(straight), np.concatenate([resumed.next_batch()[1].numpy()
                                                                            for _ in range(5)]))
    again = DataLoader(x, y, batch_size=3, seed=7)
    np.testing.assert_array_equal(again.next_batch()[1].numpy(), first_epoch[0][1].numpy())
    with pytest.raises(ValueError, match="array 1 has 4 items, array 0 has 10"):
        DataLoader(x, y[:4], batch_size=2)
    with pytest.raises(ValueError, match="batch size 20 does not fit a data set of 10"):
        DataLoader(x, batch_size=20)


def test_bicubic_resize_matches_pillow_away_from_the_borders():
    """Pillow's bicubic (a = -0.5, widened when shrinking) is the same filter; only its
    border rule differs (it clamps where ganforge mirrors, as MATLAB's imresize does)."""
    from ganforge.data import resize_bicubic
    Image = import_reference("PIL.Image", "pip install pillow")
    image = np.random.default_rng(0).uniform(0, 255, (40, 48)).astype(np.float32)
    for height, width, margin in ((10, 12, 3), (13, 17, 3), (80, 96, 6)):
        ours = resize_bicubic(image, height, width)
        theirs = np.asarray(Image.fromarray(image, mode="F").resize((width, height), Image.BICUBIC))
        inner = (slice(margin, height - margin), slice(margin, width - margin))
        np.testing.assert_allclose(ours[inner], theirs[inner], atol=1e-3)
    np.testing.assert_allclose(resize_bicubic(np.full((2, 1, 28, 28), 0.25), 7, 7), 0.25, rtol=1e-12)
    with pytest.raises(ValueError, match="positive size"):
        resize_bicubic(image, 0, 4)

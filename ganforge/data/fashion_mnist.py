"""Fashion-MNIST (Xiao et al. 2017) from its IDX files.

Where the files are looked for, in order: the `root` argument (the CLI's --data), the
GANFORGE_DATA environment variable, and the Debian package's folder
/usr/share/datasets/fashion-mnist (`apt-get install dataset-fashion-mnist`). Each file
may be raw or gzipped.
"""
import os

import numpy as np

from .idx import DataFormatError, read_idx

DEBIAN_PATH = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = ("install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point --data or "
                "GANFORGE_DATA at a folder holding the four IDX files")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000)}


def data_root(root=None):
    return root or os.environ.get("GANFORGE_DATA") or DEBIAN_PATH


def _find(root, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(root, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"Fashion-MNIST file {name}[.gz] not found in {root}: {INSTALL_HINT}")


def load_fashion_mnist(root=None, split="train", expected_count=None):
    """(images, labels): images float32 (N, 1, 28, 28) scaled to [-1, 1], labels int64 (N,).

    `expected_count` defaults to the official split size (60000 or 10000); pass 0 to
    accept any count (a subset)."""
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    root = data_root(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist: {INSTALL_HINT}")
    image_name, label_name, official = _FILES[split]
    images, labels = read_idx(_find(root, image_name)), read_idx(_find(root, label_name))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataFormatError(f"{image_name}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
                              f"{images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8 or labels.shape[0] != images.shape[0]:
        raise DataFormatError(f"{label_name}: expected {images.shape[0]} uint8 labels, got {labels.dtype} "
                              f"{labels.shape}")
    count = official if expected_count is None else expected_count
    if count and images.shape[0] != count:
        raise DataFormatError(f"{image_name}: expected {count} images in the {split} split, found "
                              f"{images.shape[0]}")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataFormatError(f"{label_name}: labels must lie in [0, 10), found {int(labels.max())}")
    scaled = images.astype(np.float32)[:, None] / 127.5 - 1.0
    return scaled, labels.astype(np.int64)

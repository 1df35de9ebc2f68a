"""The frozen Fashion-MNIST classifier whose features the image-quality measures use.

No Inception weights can be fetched here, so ganforge trains a small CNN itself and ships
its weights beside this file, pinned by SHA-256 so that every number computed with it
refers to the same network. Retrain it (a few minutes on 2 cores) with

    python -m ganforge.metrics.fashion_classifier --out ganforge/metrics/fashion_classifier.safetensors

and update WEIGHTS_SHA256 with the hash it prints.
"""
import argparse
import hashlib
import os
import time

import numpy as np

from .. import functional as F
from .. import io, nn, optim
from ..autograd import no_grad
from ..data import DataLoader, load_fashion_mnist
from ..tensor import Tensor, manual_seed
from .image_quality import quality_report

WEIGHTS = os.path.join(os.path.dirname(__file__), "fashion_classifier.safetensors")
WEIGHTS_SHA256 = "d252aa4644ca9b228157fde813b630af4afa7bce388ba40e9a318047d5257491"  # test accuracy 88.20%
FEATURES = 128


class FashionClassifier(nn.Module):
    """28x28 grey images in [-1, 1] -> 128 pooled features -> 10 class logits."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 32, 3, 2, 1), nn.LeakyReLU(0.2),           # 14x14
            nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),          # 7x7
            nn.Conv2d(64, FEATURES, 3, 2, 1), nn.LeakyReLU(0.2))    # 4x4
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x):
        return F.mean(self.trunk(x), axis=(2, 3))

    def forward(self, x):
        return self.head(self.features(x))


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_classifier(path=WEIGHTS, check_hash=True):
    """The frozen classifier, in eval mode. Refuses weights whose hash is not the pinned one."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: retrain it with `python -m ganforge.metrics.fashion_classifier "
                                f"--out {path}`")
    if check_hash and _sha256(path) != WEIGHTS_SHA256:
        raise io.CheckpointError(f"{path} is not the pinned classifier (SHA-256 {_sha256(path)[:16]}..., expected "
                                 f"{WEIGHTS_SHA256[:16]}...): measures computed with it would not be comparable")
    model = FashionClassifier()
    model.load_state_dict(io.load_tensors(path))
    return model.eval()


def _batched(fn, images, batch_size=500):
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"the Fashion-MNIST classifier takes images of shape (N, 1, 28, 28), got {images.shape}")
    with no_grad():
        return np.concatenate([fn(Tensor(images[i:i + batch_size])).numpy()
                               for i in range(0, len(images), batch_size)])


def classifier_features(model, images):
    """(N, 128) features of images in [-1, 1] (28x28, or 32x32 padded as --resolution 32 pads them)."""
    return _batched(model.features, unpadded(images))


def unpadded(images):
    """Fashion-MNIST images at 32x32 (padded by 2 pixels for networks that halve down to 4)
    cut back to their 28x28 centre; others as they are."""
    images = np.asarray(images, dtype=np.float32)
    return images[..., 2:30, 2:30] if images.shape[-2:] == (32, 32) else images


def classify_features(model, features):
    """Predicted class for each row of features."""
    with no_grad():
        return model.head(Tensor(features)).numpy().argmax(1)


def classify(model, images):
    """Predicted class of each image."""
    return classify_features(model, classifier_features(model, images))


def fashion_mnist_report(images, requested_labels=None, n=10000, data_path=None, seed=0):
    """The image-quality measures of `images` against n Fashion-MNIST test images, beside the
    floor: n real training images against the same test images. With `requested_labels`
    (a conditional generator's), also the share the classifier assigns to the asked class.
    Returns {"real (train)": report, "generated": report}."""
    train, train_labels = load_fashion_mnist(data_path, "train")
    pick = np.random.default_rng(seed).choice(len(train), min(n, len(train)), replace=False)
    return {"real (train)": generated_report(train[pick], train_labels[pick] if requested_labels is not None else None,
                                             n, data_path, seed),
            "generated": generated_report(images, requested_labels, n, data_path, seed)}


def generated_report(images, requested_labels=None, n=10000, data_path=None, seed=0):
    """The measures of one set of images against n Fashion-MNIST test images (FD, KID,
    precision, recall; class_accuracy with `requested_labels`)."""
    model = load_classifier()
    test, _ = load_fashion_mnist(data_path, "test")
    features = classifier_features(model, images)
    report = quality_report(classifier_features(model, test[:n]), features, seed)
    if requested_labels is not None:
        report["class_accuracy"] = float((classify_features(model, features) == np.asarray(requested_labels)).mean())
    return report


def fit_classifier(images, labels, epochs=8, batch_size=128, seed=0, log=True, steps=None):
    """A FashionClassifier trained on (images, labels) with the shipped one's recipe (Adam
    2e-3, decayed linearly to 0), in eval mode: the real one's, or one trained on generated
    images for the classification accuracy score (bench/augmentation_cas.py). `steps`
    replaces `epochs` where the set is too small for epochs to mean much (a few labels)."""
    manual_seed(seed)
    model = FashionClassifier()
    opt = optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(images, labels, batch_size=batch_size, seed=seed)
    steps = steps or epochs * (len(images) // batch_size)
    schedule = optim.LinearDecayLR(opt, steps)
    start = time.time()
    for step in range(1, steps + 1):
        x, y = loader.next_batch()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if log and step % 200 == 0:
            print(f"step {step}/{steps}  loss {loss.item():.4f}  ({time.time() - start:.0f}s)", flush=True)
    return model.eval()


def train_classifier(out, epochs=8, batch_size=128, seed=0, data_path=None):
    images, labels = load_fashion_mnist(data_path, "train")
    test_images, test_labels = load_fashion_mnist(data_path, "test")
    model = fit_classifier(images, labels, epochs, batch_size, seed)
    accuracy = float((classify(model, test_images) == test_labels).mean())
    io.save_tensors(out, {name: t.numpy() for name, t in model.state_dict().items()})
    return accuracy, _sha256(out)


def main():
    parser = argparse.ArgumentParser(description="retrain the frozen Fashion-MNIST feature classifier")
    parser.add_argument("--out", default=WEIGHTS)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder (default: the Debian package's)")
    args = parser.parse_args()
    accuracy, digest = train_classifier(args.out, args.epochs, seed=args.seed, data_path=args.data)
    print(f"test accuracy {100 * accuracy:.2f}%; wrote {args.out}; SHA-256 {digest}")


if __name__ == "__main__":
    main()

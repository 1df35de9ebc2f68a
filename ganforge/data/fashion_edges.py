"""fashion-edges: Fashion-MNIST garments and their edge maps, a built-in pair of domains
for unpaired translation (CycleGAN) that needs no download beyond Fashion-MNIST.

An edge map is drawn the way edges2shoes draws sketches: dark lines on a white page,
where the Sobel gradient of the garment is steep. Domain A is the edge maps of the first
half of the training set, domain B the garments of the second half, so that training never
sees an edge map beside its own garment; the test set keeps the true pairs, which is what
a translation is measured against.
"""
import numpy as np

from .fashion_mnist import load_fashion_mnist

EDGE_THRESHOLD = 1.0  # Sobel magnitude, on images scaled to [0, 1], above which a pixel is an edge


def sobel_magnitude(images):
    """|grad| of (N, 1, H, W) images by the 3x3 Sobel filters, edges replicated at the border."""
    padded = np.pad(images[:, 0], ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = images.shape[2:]

    def window(dy, dx):
        return padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    gx = (window(-1, 1) + 2 * window(0, 1) + window(1, 1)) - (window(-1, -1) + 2 * window(0, -1) + window(1, -1))
    gy = (window(1, -1) + 2 * window(1, 0) + window(1, 1)) - (window(-1, -1) + 2 * window(-1, 0) + window(-1, 1))
    return np.sqrt(gx ** 2 + gy ** 2)[:, None]


def edge_maps(images):
    """Edge maps of (N, 1, H, W) images in [-1, 1]: -1 (dark) on edges, +1 elsewhere."""
    magnitude = sobel_magnitude((images + 1) / 2)
    return np.where(magnitude > EDGE_THRESHOLD, -1.0, 1.0).astype(np.float32)


def load_fashion_edges(root=None, split="train"):
    """train: (edge maps of images[:30000], garments images[30000:]), unpaired;
    test: (edge maps, garments, labels) of the 10000 test images, paired."""
    images, labels = load_fashion_mnist(root, split)
    if split == "test":
        return edge_maps(images), images, labels
    half = len(images) // 2
    return edge_maps(images[:half]), images[half:]

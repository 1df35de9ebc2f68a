"""How well an image is restored, as the super-resolution literature measures it (Ledig
et al. 2017 and most papers since): PSNR and SSIM on the luma (Y of YCbCr, ITU-R BT.601,
as MATLAB's rgb2ycbcr computes it) with a border of `scale` pixels cropped, because a
network upscaling from few pixels cannot know what lies beyond the image's edge.

Images come in [-1, 1] (ganforge's pixel range) and are measured on [0, 1]. SSIM is Wang
et al.'s (2004): 11x11 Gaussian windows of sigma 1.5, K1 = 0.01, K2 = 0.03, the mean over
the windows that lie inside the image (scikit-image's structural_similarity with
gaussian_weights=True and use_sample_covariance=False gives the same numbers).
"""
import numpy as np

from ..data import resize_bicubic
from .similarity import psnr_of_unit_images

BT601 = np.array([65.481, 128.553, 24.966]) / 255  # Y from R, G, B in [0, 1]: Y in [16, 235] / 255


def luma(images):
    """(N, H, W) in [0, 1]: the Y channel of (N, 3, H, W) RGB images in [-1, 1], or grey
    (N, 1, H, W) images as they are; values outside [-1, 1] are clipped first."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"luma takes (N, 1, H, W) grey or (N, 3, H, W) RGB images, got shape {images.shape}")
    unit = (np.clip(images, -1, 1) + 1) / 2
    if images.shape[1] == 1:
        return unit[:, 0]
    return 16 / 255 + np.einsum("c,nchw->nhw", BT601, unit)


def gaussian_window(size=11, sigma=1.5):
    taps = np.arange(size) - (size - 1) / 2
    window = np.exp(-taps**2 / (2 * sigma**2))
    return window / window.sum()


def _local_mean(images, window):
    """Mean under the window at every position where it fits inside (N, H, W) images:
    the separable filter as two products with banded matrices."""
    def band(n):
        rows = np.zeros((n - len(window) + 1, n))
        for i in range(len(rows)):
            rows[i, i:i + len(window)] = window
        return rows
    return band(images.shape[1]) @ images @ band(images.shape[2]).T


def ssim(images, reference, data_range=1.0, window_size=11, sigma=1.5):
    """Mean structural similarity of (N, H, W) images against their references, averaged
    over windows and then over images."""
    x, y = np.asarray(images, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"ssim compares (N, H, W) images of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[1:]) < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size} pixels, got {x.shape[1:]}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    window = gaussian_window(window_size, sigma)
    mx, my = _local_mean(x, window), _local_mean(y, window)
    vx = _local_mean(x * x, window) - mx * mx
    vy = _local_mean(y * y, window) - my * my
    cxy = _local_mean(x * y, window) - mx * my
    ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim_map.mean(axis=(1, 2)).mean())


def detail(images):
    """How much fine structure (N, H, W) images hold: the mean absolute difference of
    horizontally and vertically neighbouring pixels."""
    return float(np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean())


def super_resolution_scores(upscaled, reference, scale):
    """{"psnr": dB, "ssim": ..., "detail": ...} of upscaled (N, C, H, W) images against the
    originals, both in [-1, 1], on the luma with `scale` pixels cropped at every border.
    "detail" is the upscalings' detail() over the originals' (1.0: as much fine structure
    as the originals; a blurred upscaling has less, a GAN's texture brings more back)."""
    upscaled, reference = np.asarray(upscaled), np.asarray(reference)
    if upscaled.shape != reference.shape:
        raise ValueError(f"upscaled images of shape {upscaled.shape} cannot be compared with originals of shape "
                         f"{reference.shape}")
    crop = (slice(None), slice(scale, -scale or None), slice(scale, -scale or None))
    x, y = luma(upscaled)[crop], luma(reference)[crop]
    return {"psnr": psnr_of_unit_images(x, y), "ssim": ssim(x, y), "detail": detail(x) / detail(y)}



def bicubic_downscale(images, scale):
    """The low-resolution inputs of (N, C, H, W) originals whose sides divide by `scale`:
    bicubic, as MATLAB's imresize (data/resize.py)."""
    height, width = images.shape[2:]
    return resize_bicubic(images, height // scale, width // scale)


def upscaling_report(upscale, originals, scale, labels=None):
    """{"bicubic": scores, "model": scores} for `originals`, an (N, C, H, W) array or a list
    of (C, H, W) images of any sizes (cropped to multiples of `scale`): each is downscaled,
    upscaled back by bicubic interpolation and by `upscale`, and compared with itself;
    the scores average over the images, as papers report them. With the `labels` of
    Fashion-MNIST originals, also the classifier's accuracy on the upscaled images (and
    on the originals, the ceiling)."""
    groups = [originals] if isinstance(originals, np.ndarray) else [image[None] for image in originals]
    if labels is not None:
        from .fashion_classifier import classify, load_classifier
        classifier = load_classifier()
    rows = {"bicubic": [], "model": []}
    for hr in groups:
        hr = hr[:, :, :hr.shape[2] - hr.shape[2] % scale, :hr.shape[3] - hr.shape[3] % scale]
        lr = bicubic_downscale(hr, scale)
        upscaled = {"bicubic": np.clip(resize_bicubic(lr, *hr.shape[2:]), -1, 1), "model": upscale(lr)}
        for name, images in upscaled.items():
            scores = super_resolution_scores(images, hr, scale)
            if labels is not None:  # Fashion-MNIST's test set: one group
                scores["class_accuracy"] = float((classify(classifier, images) == labels).mean())
            rows[name].append((len(hr), scores))
    report = {name: {key: sum(n * s[key] for n, s in scores) / sum(n for n, _ in scores) for key in scores[0][1]}
              for name, scores in rows.items()}
    if labels is not None:
        report["original"] = {"class_accuracy": float((classify(classifier, originals) == labels).mean())}
    return report

"""How close an image is to its reference: mean absolute error and PSNR, on images in
[-1, 1] measured as pixel values in [0, 1] (the scale papers report them on)."""
import numpy as np


def _unit_scale(images, reference):
    images, reference = np.asarray(images, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if images.shape != reference.shape:
        raise ValueError(f"images of shape {images.shape} cannot be compared with references of shape "
                         f"{reference.shape}")
    return (images + 1) / 2, (reference + 1) / 2


def mean_absolute_error(images, reference):
    """Mean |x - y| over all pixels, on the [0, 1] scale."""
    x, y = _unit_scale(images, reference)
    return float(np.abs(x - y).mean())


def psnr(images, reference, max_db=100.0):
    """Peak signal-to-noise ratio 10 log10(1 / MSE) in dB, per image (peak 1 on the [0, 1]
    scale), averaged over the batch; an exact copy counts as `max_db`."""
    return psnr_of_unit_images(*_unit_scale(images, reference), max_db)


def psnr_of_unit_images(x, y, max_db=100.0):
    """psnr() of images already on the [0, 1] scale (a luma channel, say), per image."""
    mse = ((np.asarray(x, np.float64) - y) ** 2).reshape(len(x), -1).mean(axis=1)
    return float(np.mean(np.minimum(max_db, 10 * np.log10(1 / np.maximum(mse, 1e-300)))))

"""Bicubic resizing in NumPy, as MATLAB's imresize does it (the low-resolution inputs of
the super-resolution literature are made with it): Keys' cubic kernel (a = -0.5),
stretched by the scale when shrinking so that it also filters out what the smaller image
cannot hold (antialiasing), mirrored at the borders. Separable: one weight matrix per
axis, so a resize is two matrix products.
"""
import numpy as np


def cubic(x):
    """Keys' cubic convolution kernel with a = -0.5."""
    x = np.abs(x)
    return np.where(x <= 1, 1.5 * x**3 - 2.5 * x**2 + 1,
                    np.where(x < 2, -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2, 0.0))


def resize_weights(in_size, out_size):
    """(out_size, in_size) matrix: output pixel i as a weighted sum of input pixels."""
    scale = out_size / in_size
    stretch = min(scale, 1.0)                       # shrinking widens the kernel by 1/scale
    centers = (np.arange(out_size) + 0.5) / scale - 0.5
    reach = int(np.ceil(2 / stretch)) + 1
    taps = np.floor(centers)[:, None].astype(int) + np.arange(-reach, reach + 1)[None, :]
    weights = stretch * cubic(stretch * (centers[:, None] - taps))
    weights /= weights.sum(axis=1, keepdims=True)
    period = 2 * in_size                             # mirror the taps that fall outside
    taps = np.mod(taps, period)
    taps = np.where(taps >= in_size, period - 1 - taps, taps)
    matrix = np.zeros((out_size, in_size))
    np.add.at(matrix, (np.repeat(np.arange(out_size), taps.shape[1]), taps.ravel()), weights.ravel())
    return matrix


def resize_bicubic(images, height, width):
    """images (..., H, W) resized to (..., height, width), in their own float dtype."""
    images = np.asarray(images)
    if images.ndim < 2 or min(height, width) < 1:
        raise ValueError(f"resize_bicubic needs (..., H, W) images and a positive size, got {images.shape} "
                         f"to {height}x{width}")
    rows = resize_weights(images.shape[-2], height)
    cols = resize_weights(images.shape[-1], width)
    return (rows @ images.astype(np.float64) @ cols.T).astype(images.dtype if images.dtype.kind == "f" else np.float32)

"""A folder of images (PNG or JPEG, grey or RGB, any size) as a training set.

Each image is converted to the requested channel count, resized so that its shorter side
is the target resolution, and center-cropped to a square, then scaled to [-1, 1].
Decoding uses Pillow (`pip install ganforge[viz]`): image codecs are not something to
write again.
"""
import os

import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg")


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading image folders needs Pillow: pip install pillow (or ganforge[viz])") from None
    return Image


def list_images(root):
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                   if f.lower().endswith(EXTENSIONS))
    if not paths:
        raise FileNotFoundError(f"no PNG or JPEG images found under {root}")
    return paths


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def folder_channels(root):
    """1 when every image under `root` is grey, else 3 (read from the headers only)."""
    Image = _pillow()
    for path in list_images(root):
        try:
            with Image.open(path) as image:
                if image.mode not in GREY_MODES:
                    return 3
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read as an image ({exc})") from None
    return 1


def read_image(path, channels, resolution=None):
    """One image as float32 (channels, H, W) in [-1, 1]: at its own size, or with
    `resolution` resized so that its shorter side is that and center-cropped to a square."""
    Image = _pillow()
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if resolution:
                width, height = image.size
                scale = resolution / min(width, height)
                size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
                image = image.resize(size, Image.BICUBIC)
                left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
                image = image.crop((left, top, left + resolution, top + resolution))
            array = np.asarray(image, dtype=np.float32)
    except OSError as exc:  # Pillow's error for unreadable or truncated files
        raise ValueError(f"{path}: cannot be read as an image ({exc})") from None
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return array / 127.5 - 1.0


def load_image_folder(root, resolution, channels=3):
    """All images under `root` as float32 (N, channels, resolution, resolution) in [-1, 1]."""
    return np.stack([read_image(p, channels, resolution) for p in list_images(root)])


def crop_positions(length, size, stride):
    """Starts of the crops of `size` every `stride` pixels along a side of `length`, the
    last one flush with the end so that every pixel is in some crop."""
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def load_image_crops(root, size, channels=3, stride=None):
    """Square crops of `size` from every image under `root` at its own size, on a grid
    every `stride` pixels (size // 2: neighbours overlap by half), as float32 (N, channels,
    size, size) in [-1, 1]: the high-resolution halves of super-resolution pairs."""
    stride = stride or max(1, size // 2)
    crops = []
    for path in list_images(root):
        image = read_image(path, channels)
        height, width = image.shape[1:]
        if height < size or width < size:
            raise ValueError(f"{path} is {width}x{height} pixels, smaller than the {size}x{size} crops: choose a "
                             f"smaller --resolution or leave the image out")
        crops += [image[:, top:top + size, left:left + size] for top in crop_positions(height, size, stride)
                  for left in crop_positions(width, size, stride)]
    return np.stack(crops)

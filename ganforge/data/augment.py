"""Random crops and horizontal flips of image batches: the jitter CycleGAN trains with
(Zhu et al. 2017 load images at 286 pixels and crop 256)."""
from ..backend import xp_of
from ..tensor import Tensor


def load_size(resolution):
    """The size images are loaded at before a random crop to `resolution`: 286/256 of it
    as in the paper, rounded to a multiple of 4 so that the generators take it whole."""
    return 4 * round(resolution * 286 / 256 / 4)


def random_crop_flip(images, size, noise):
    """Each image of the (N, C, H, W) Tensor cropped to size x size at a random place and
    mirrored left-right with probability 1/2; `noise` is the run's seeded Generator."""
    x = images.data
    xp = xp_of(x)
    n, _, height, width = x.shape
    if height < size or width < size:
        raise ValueError(f"images of {height}x{width} cannot be cropped to {size}x{size}")
    draws = noise.uniform((n, 3), "float64").tolist()  # top, left, flip; on the host
    crops = []
    for image, (u_top, u_left, u_flip) in zip(x, draws):
        top, left = int(u_top * (height - size + 1)), int(u_left * (width - size + 1))
        crop = image[:, top:top + size, left:left + size]
        crops.append(crop[:, :, ::-1] if u_flip < 0.5 else crop)
    return Tensor(xp.stack(crops))

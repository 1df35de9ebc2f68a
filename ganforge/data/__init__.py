"""Data sets: the 2-D mixtures, Fashion-MNIST and its edge maps, image folders, a seeded
loader, random crops and flips, and bicubic resizing (the low-resolution halves of
super-resolution pairs)."""
from .fashion_mnist import CLASSES, load_fashion_mnist  # noqa: F401
from .augment import load_size, random_crop_flip  # noqa: F401
from .fashion_edges import edge_maps, load_fashion_edges  # noqa: F401
from .folder import folder_channels, load_image_crops, load_image_folder  # noqa: F401
from .idx import DataFormatError, read_idx, write_idx  # noqa: F401
from .loader import DataLoader  # noqa: F401
from .mixtures import GRID25_MEANS, GRID25_STD, RING8_MEANS, RING8_STD, mixture, sample_mixture  # noqa: F401
from .resize import resize_bicubic  # noqa: F401

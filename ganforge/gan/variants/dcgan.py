"""DCGAN (Radford et al. 2016): transposed convolutions with batch norm in G, strided
convolutions with leaky ReLU in D, non-saturating loss. 28, 32 or 64 pixels."""
from ..nets import networks_for
from .base import Variant


def build(data_shape, z_dim, num_classes=None):
    if len(data_shape) != 3:
        raise ValueError("dcgan needs image data (fashion-mnist or an image folder); for 2-D data use gan")
    return networks_for(data_shape, z_dim)


VARIANT = Variant(
    name="dcgan", summary="DCGAN: conv nets with batch norm, non-saturating loss (28, 32 or 64 pixels)",
    build=build, loss="non_saturating", lr=2e-4, betas=(0.5, 0.999),
    defaults={"data": "fashion-mnist", "steps": 3000, "batch_size": 64, "z_dim": 100})

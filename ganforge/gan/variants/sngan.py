"""SNGAN (Miyato et al. 2018): spectral normalization on every discriminator layer and the
hinge loss."""
from ..nets import networks_for
from .base import Variant


def build(data_shape, z_dim, num_classes=None):
    return networks_for(data_shape, z_dim, batchnorm=False, spectral=True)


VARIANT = Variant(
    name="sngan", summary="SNGAN: spectral norm in the discriminator, hinge loss",
    build=build, loss="hinge", lr=2e-4, betas=(0.5, 0.999),
    defaults={"data": "ring8", "steps": 5000, "batch_size": 256, "z_dim": 2})

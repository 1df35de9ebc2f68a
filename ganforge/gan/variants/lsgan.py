"""LSGAN (Mao et al. 2017): least-squares losses instead of log-likelihood ones."""
from ..nets import networks_for
from .base import Variant


def build(data_shape, z_dim, num_classes=None):
    return networks_for(data_shape, z_dim)


VARIANT = Variant(
    name="lsgan", summary="LSGAN: least-squares loss, DCGAN nets for images, MLPs for 2-D data",
    build=build, loss="least_squares", lr=2e-4, betas=(0.5, 0.999),
    defaults={"data": "fashion-mnist", "steps": 3000, "batch_size": 64, "z_dim": 100})

"""WGAN-GP (Gulrajani et al. 2017): the critic is kept Lipschitz by penalizing its input
gradient's norm away from 1 on interpolates (a second-order gradient), 5 critic steps."""
from ..nets import networks_for
from .base import Variant


def build(data_shape, z_dim, num_classes=None):
    return networks_for(data_shape, z_dim, batchnorm=False)


VARIANT = Variant(
    name="wgan-gp", summary="WGAN-GP: Wasserstein loss with gradient penalty, 5 critic steps",
    build=build, loss="wasserstein", penalty="gp", penalty_weight=10.0, lr=1e-4, betas=(0.5, 0.9), n_critic=5,
    defaults={"data": "ring8", "steps": 3000, "batch_size": 256, "z_dim": 2})

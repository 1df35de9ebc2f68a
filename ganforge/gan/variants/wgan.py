"""WGAN (Arjovsky et al. 2017): a critic kept Lipschitz by clipping its weights to
[-0.01, 0.01], trained 5 times per generator step with RMSprop."""
from ..nets import networks_for
from .base import Variant


def build(data_shape, z_dim, num_classes=None):
    return networks_for(data_shape, z_dim, batchnorm=False)


VARIANT = Variant(
    name="wgan", summary="WGAN: Wasserstein loss, weight clipping, RMSprop, 5 critic steps",
    build=build, loss="wasserstein", weight_clip=0.01, optimizer="rmsprop", lr=5e-5, n_critic=5,
    defaults={"data": "fashion-mnist", "steps": 3000, "batch_size": 64, "z_dim": 100})

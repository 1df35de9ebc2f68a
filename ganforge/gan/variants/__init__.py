"""The GAN variants, each a small file: `VARIANTS[name]` is its Variant."""
from . import cgan, dcgan, gan, lsgan, sngan, wgan, wgan_gp
from .base import Variant  # noqa: F401

VARIANTS = {module.VARIANT.name: module.VARIANT for module in (gan, cgan, dcgan, wgan, wgan_gp, sngan, lsgan)}


def get_variant(name):
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; `ganforge list` shows them: {', '.join(VARIANTS)}")
    return VARIANTS[name]

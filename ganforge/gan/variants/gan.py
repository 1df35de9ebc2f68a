"""The original GAN (Goodfellow et al. 2014) with MLPs and the non-saturating loss.
For 2-D mixtures (the default) and flattened images."""
from ..nets import mlp_discriminator, mlp_generator
from .base import Variant


def build(data_shape, z_dim, num_classes=None):
    size = 1
    for n in data_shape:
        size *= n
    return mlp_generator(z_dim, size, output_tanh=len(data_shape) > 1), mlp_discriminator(size)


VARIANT = Variant(
    name="gan", summary="vanilla GAN: MLPs, non-saturating loss (2-D mixtures or flattened images)",
    build=build, loss="non_saturating", lr=1e-3, betas=(0.5, 0.999),
    defaults={"data": "ring8", "steps": 5000, "batch_size": 256, "z_dim": 2, "flatten": True})

"""Class-conditional GAN: the label's embedding joins z in the generator, and a projection
discriminator (Miyato & Koyama 2018) scores image and label together. Hinge loss."""
from ..nets import networks_for
from .base import Variant


def build(data_shape, z_dim, num_classes):
    if not num_classes:
        raise ValueError("cgan needs a labelled data set (fashion-mnist)")
    return networks_for(data_shape, z_dim, spectral=True, num_classes=num_classes)


VARIANT = Variant(
    name="cgan", summary="class-conditional DCGAN with a projection discriminator (sample with --label)",
    build=build, loss="hinge", conditional=True, lr=2e-4, betas=(0.5, 0.999),
    defaults={"data": "fashion-mnist", "steps": 3000, "batch_size": 64, "z_dim": 100})

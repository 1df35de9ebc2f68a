"""SNGAN (Miyato et al. 2018): spectral normalization on every discriminator layer and the
hinge loss. The training step is GAN's (models/gan.py)."""
from ..nets import networks_for
from .gan import GAN


class SNGAN(GAN):
    name = "sngan"
    summary = "SNGAN: spectral norm in the discriminator, hinge loss"
    defaults = {"data": "ring8", "steps": 5000, "batch_size": 256}
    options = {**GAN.options, "z_dim": 2, "lr": 2e-4}
    loss = "hinge"

    def generator_and_discriminator(self):
        return networks_for(self.data.shape, self.config["z_dim"], batchnorm=False, spectral=True)

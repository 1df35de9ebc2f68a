"""LSGAN (Mao et al. 2017): least-squares losses instead of log-likelihood ones; DCGAN
networks for images, MLPs for 2-D data. The training step is GAN's (models/gan.py)."""
from ..nets import networks_for
from .gan import GAN


class LSGAN(GAN):
    name = "lsgan"
    summary = "LSGAN: least-squares loss, DCGAN nets for images, MLPs for 2-D data"
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 64}
    options = {**GAN.options, "z_dim": 100, "lr": 2e-4}
    loss = "least_squares"

    def generator_and_discriminator(self):
        return networks_for(self.data.shape, self.config["z_dim"])

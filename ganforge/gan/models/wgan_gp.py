"""WGAN-GP (Gulrajani et al. 2017): the critic is kept Lipschitz by penalizing its input
gradient's norm away from 1 on interpolates (a second-order gradient), 5 critic steps
per generator step. The training step is GAN's (models/gan.py) with `penalty="gp"`."""
from ..nets import networks_for
from .gan import GAN


class WGANGP(GAN):
    name = "wgan-gp"
    summary = "WGAN-GP: Wasserstein loss with gradient penalty, 5 critic steps"
    defaults = {"data": "ring8", "steps": 3000, "batch_size": 256}
    options = {**GAN.options, "z_dim": 2, "lr": 1e-4, "betas": (0.5, 0.9), "n_critic": 5,
               "penalty": "gp", "penalty_weight": 10.0}
    loss = "wasserstein"

    def generator_and_discriminator(self):
        return networks_for(self.data.shape, self.config["z_dim"], batchnorm=False)

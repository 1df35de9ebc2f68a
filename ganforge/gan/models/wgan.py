"""WGAN (Arjovsky et al. 2017): a critic kept Lipschitz by clipping its weights to
[-0.01, 0.01] after every update, trained 5 times per generator step with RMSprop."""
from ... import optim
from ..nets import networks_for
from ..penalties import clip_weights_
from .gan import GAN


class WGAN(GAN):
    name = "wgan"
    summary = "WGAN: Wasserstein loss, weight clipping, RMSprop, 5 critic steps"
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 64}
    options = {**GAN.options, "z_dim": 100, "lr": 5e-5, "n_critic": 5}
    loss = "wasserstein"
    weight_clip = 0.01

    def generator_and_discriminator(self):
        return networks_for(self.data.shape, self.config["z_dim"], batchnorm=False)

    def build_optimizers(self):  # the paper's RMSprop: momentum-free, as Adam destabilized its critic
        return {name: optim.RMSprop(net.parameters(), lr=self.config["lr"]) for name, net in self.nets.items()}

    def discriminator_step(self, batch):
        step = super().discriminator_step(batch)
        clip_weights_(self.nets["D"], self.weight_clip)
        return step

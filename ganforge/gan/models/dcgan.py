"""DCGAN (Radford et al. 2016): transposed convolutions with batch norm in G, strided
convolutions with leaky ReLU in D, non-saturating loss. 28, 32 or 64 pixels.
The training step is GAN's (models/gan.py); only the networks differ."""
from ..nets import networks_for
from .gan import GAN


class DCGAN(GAN):
    name = "dcgan"
    summary = "DCGAN: conv nets with batch norm, non-saturating loss (28, 32 or 64 pixels)"
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 64}
    # the layers' own initialization (PyTorch's): at 3000 steps it scores FD 9.4 against the
    # paper's N(0, 0.02) at 11.7, as PyTorch's twin does (9.3); docs/quality.md measures it
    options = {**GAN.options, "z_dim": 100, "lr": 2e-4, "init": "default"}

    def generator_and_discriminator(self):
        if len(self.data.shape) != 3:
            raise ValueError("dcgan needs image data (fashion-mnist or an image folder); for 2-D data use gan")
        # runs saved before --init existed were initialized the dcgan way
        return networks_for(self.data.shape, self.config["z_dim"], init=self.config.get("init", "dcgan"))

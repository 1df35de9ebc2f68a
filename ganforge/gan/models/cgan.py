"""Class-conditional GAN: the label's embedding joins z in the generator, and a projection
discriminator (Miyato & Koyama 2018) scores image and label together. Hinge loss.
The training step is GAN's (models/gan.py): G and D get the batch's labels as `cond`."""
import numpy as np

from ...tensor import Generator, Tensor
from ..nets import networks_for
from .gan import GAN

ROW = 8  # a preview has one row per class, the same z along each column


class CGAN(GAN):
    name = "cgan"
    summary = "class-conditional DCGAN with a projection discriminator (sample with --label)"
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 64}
    # the DCGAN paper's N(0, 0.02): at 1200 steps its EMA samples score FD 21.7 against 55.0
    # with the layers' own initialization (PyTorch's twin: 60.2); docs/quality.md
    options = {**GAN.options, "z_dim": 100, "lr": 2e-4, "init": "dcgan"}
    loss = "hinge"
    conditional = True

    def generator_and_discriminator(self):
        if not self.data.num_classes:
            raise ValueError("cgan is class-conditional and needs a labelled data set (fashion-mnist)")
        # runs saved before --init existed were initialized the dcgan way
        return networks_for(self.data.shape, self.config["z_dim"], spectral=True, num_classes=self.data.num_classes,
                            init=self.config.get("init", "dcgan"))

    def condition(self, batch):
        return (batch["label"],)

    def preview_size(self):
        return ROW

    def preview(self):
        classes = self.data.num_classes
        z = Tensor(np.tile(self.fixed_z.numpy(), (classes, 1, 1, 1)), device=self.device)
        labels = Tensor(np.repeat(np.arange(classes), ROW), device=self.device)
        return self.generate(z, labels), ROW

    def walk_condition(self, n):
        return (Tensor(np.arange(n) % self.data.num_classes, device=self.device),)

    def sample(self, n, labels=None, seed=0, batch_size=500):
        """n samples of class `labels` (an int or n ints; default: the classes in turn)."""
        classes = self.data.num_classes
        labels = np.arange(n) % classes if labels is None else np.broadcast_to(labels, (n,))
        if np.max(labels) >= classes or np.min(labels) < 0:
            raise ValueError(f"--label must be in [0, {classes})")
        z = self.z(n, Generator(seed, self.device))
        return self.generate(z, Tensor(np.asarray(labels, dtype=np.int64), device=self.device), batch_size=batch_size)

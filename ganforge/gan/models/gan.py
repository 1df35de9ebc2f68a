"""The original GAN (Goodfellow et al. 2014) with MLPs and the non-saturating loss, for
2-D mixtures (the default) and flattened images.

Its train_step is the one every noise-to-image model here shares (dcgan, wgan, wgan-gp,
sngan, lsgan and cgan change networks, loss, optimizer or conditioning, not the step):
n_critic discriminator updates, each on a fresh real batch and a detached fake one, then
one generator update through a fresh discriminator pass over the last fake batch.
"""
import numpy as np

from ... import optim
from ...autograd import no_grad
from ...tensor import Generator, Tensor, randn
from ...nn.utils import functional_call
from ..losses import discriminator_loss, generator_loss
from ..model import Model
from ..nets import mlp_discriminator, mlp_generator, with_minibatch_discrimination
from ..steps import PENALTIES, discriminator_penalty, frozen, in_eval_mode, unrolled, unrolled_parameters, update

UNROLLED_FORMS = ("first-order", "true")


class GAN(Model):
    name = "gan"
    summary = "vanilla GAN: MLPs, non-saturating loss (2-D mixtures or flattened images)"
    defaults = {"data": "ring8", "steps": 5000, "batch_size": 256, "flatten": True}
    options = {"z_dim": 2, "lr": 1e-3, "betas": (0.5, 0.999), "n_critic": 1,
               "penalty": "none", "penalty_weight": 10.0, "lr_decay": False,
               # mode-collapse remedies: a look-ahead discriminator for the generator's loss
               # (unrolled GAN, first-order or differentiated through D's updates: "true"),
               # minibatch-discrimination features in D, a bound on gradient norms
               "unrolled_steps": 0, "unrolled_form": "first-order", "minibatch_discrimination": False,
               "clip_grad_norm": None}
    loss = "non_saturating"  # a key of ganforge.gan.LOSSES

    def __init__(self, config, data, noise=None):
        if config["penalty"] not in PENALTIES:
            raise ValueError(f"unknown penalty {config['penalty']!r}: use one of {', '.join(PENALTIES)}")
        if config["unrolled_form"] not in UNROLLED_FORMS:
            raise ValueError(f"unknown unrolled form {config['unrolled_form']!r}: use one of {', '.join(UNROLLED_FORMS)}")
        super().__init__(config, data, noise)
        self.fixed_z = self.z(self.preview_size(), Generator(config["seed"] + 2, self.device))

    # --- networks and optimizers ----------------------------------------------------------

    def build_networks(self):
        G, D = self.generator_and_discriminator()
        if self.config["minibatch_discrimination"]:
            D = with_minibatch_discrimination(D)
        return {"G": G, "D": D}

    def generator_and_discriminator(self):
        size = int(np.prod(self.data.shape))
        return (mlp_generator(self.config["z_dim"], size, output_tanh=self.data.image_shape is not None),
                mlp_discriminator(size))

    def build_optimizers(self):
        lr, betas = self.config["lr"], tuple(self.config["betas"])
        return {name: optim.Adam(net.parameters(), lr=lr, betas=betas) for name, net in self.nets.items()}

    def setup_optimizers(self):
        super().setup_optimizers()
        opt_d = self.optimizers["D"]
        if self.config["unrolled_form"] == "true" and (type(opt_d).differentiable_step
                                                        is optim.Optimizer.differentiable_step):
            raise ValueError(f"--unrolled-form true differentiates through Adam or SGD updates; {self.name}'s D uses "
                             f"{type(opt_d).__name__}: use --unrolled-form first-order")

    # --- training ---------------------------------------------------------------------------

    def z(self, n, generator=None):
        """n noise vectors, shaped (n, z_dim, 1, 1) for convolutional generators."""
        shape = (n, self.config["z_dim"]) + ((1, 1) if len(self.data.shape) == 3 else ())
        return randn(*shape, device=self.device, generator=generator or self.noise)

    def condition(self, batch):
        """What G and D see besides z and images: nothing here, (labels,) in cgan."""
        return ()

    def discriminator_losses(self, batch, detach_fake=True):
        """D's loss on a real batch and a fake one, and the penalty (or None), with the fake
        batch and the condition that the generator's update reuses. The fake batch is
        detached for D's own update; the true unrolled GAN keeps it attached."""
        G, D = self.nets["G"], self.nets["D"]
        real, cond = batch["x"], self.condition(batch)
        fake = G(self.z(len(real)), *cond)
        loss_d = discriminator_loss(self.loss, D(real, *cond), D(fake.detach() if detach_fake else fake, *cond))
        penalty = discriminator_penalty(self.config["penalty"], lambda x: D(x, *cond), real, fake,
                                        self.config["penalty_weight"], self.noise)
        return loss_d, penalty, fake, cond

    def discriminator_step(self, batch):
        """One discriminator update on a real batch and a detached fake one (and the penalty,
        if any); returns what the generator's update reuses."""
        loss_d, penalty, fake, cond = self.discriminator_losses(batch)
        update(self.optimizers["D"], loss_d if penalty is None else loss_d + penalty, self.config["clip_grad_norm"])
        return loss_d, penalty, fake, cond

    def train_step(self, batches):
        """n_critic discriminator updates, then one generator update through D (through D as
        it will be K updates later, with unrolled_steps=K)."""
        D = self.nets["D"]
        for _ in range(self.config["n_critic"]):
            loss_d, penalty, fake, cond = self.discriminator_step(next(batches))
        if self.config["unrolled_form"] == "true" and self.config["unrolled_steps"]:
            loss_g = self.generator_loss_through_unrolling(batches, fake, cond)
            update(self.optimizers["G"], loss_g, self.config["clip_grad_norm"])
        else:
            look_ahead = lambda: self.discriminator_step(next(batches))  # noqa: E731
            with unrolled(D, self.optimizers["D"], self.config["unrolled_steps"], look_ahead), frozen(D):
                loss_g = generator_loss(self.loss, D(fake, *cond))
                update(self.optimizers["G"], loss_g, self.config["clip_grad_norm"])
        self.step_schedules()
        losses = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
        if penalty is not None:
            losses["penalty"] = penalty.item()
        return losses

    def generator_loss_through_unrolling(self, batches, fake, cond):
        """The generator's loss against D after K differentiable updates (Metz et al. 2017):
        in each, D's loss sees fakes that are not detached, so the loss's gradient reaches
        G along two paths, through D_K's score of `fake` and through how D_K came to be."""
        def unrolled_discriminator_loss():
            loss_d, penalty, _, _ = self.discriminator_losses(next(batches), detach_fake=False)
            return loss_d if penalty is None else loss_d + penalty

        D = self.nets["D"]
        D_ahead = unrolled_parameters(D, self.optimizers["D"], self.config["unrolled_steps"],
                                      unrolled_discriminator_loss)
        return generator_loss(self.loss, functional_call(D, D_ahead, (fake, *cond)))

    # --- pictures and inference ---------------------------------------------------------------

    def preview_size(self):
        return 64 if self.data.image_shape is not None else 2500  # 2500: the mode-coverage protocol

    def preview(self):
        return self.as_pictures(self.generate(self.fixed_z)), None

    def generate(self, z, *cond, batch_size=500):
        """G(z, *cond) as a NumPy array, in eval mode, in batches (10k images need not hold
        10k images' activations at once)."""
        G = self.nets["G"]
        with in_eval_mode(G), no_grad():
            chunks = [G(z[i:i + batch_size], *(c[i:i + batch_size] for c in cond)).numpy()
                      for i in range(0, len(z), batch_size)]
        return np.concatenate(chunks)

    def latent_walk(self, n, frames, seed=0, keyframes=3):
        """n walks through z along great circles (z is Gaussian, so its mass lies near a
        sphere), from keyframe to keyframe and back to the first; a conditional model keeps
        each walk's class."""
        if self.data.image_shape is None:
            raise ValueError(f"{self.name} on {self.data.name} makes points, not images: there is nothing to animate")
        generator = Generator(seed, self.device)
        keys = [self.z(n, generator).numpy() for _ in range(keyframes)]
        keys.append(keys[0])
        path = [slerp(keys[int(t)], keys[int(t) + 1], t - int(t)) for t in np.linspace(0, keyframes, frames,
                                                                                        endpoint=False)]
        cond = self.walk_condition(n)
        return np.stack([self.as_pictures(self.generate(Tensor(z.astype(np.float32)).to(self.device), *cond))
                         for z in path])

    def walk_condition(self, n):
        """What G takes besides z during a latent walk (labels, for cgan)."""
        return ()

    def sample(self, n, labels=None, seed=0, batch_size=500):
        """n samples (NumPy), images in (C, H, W); `labels` only for class-conditional models."""
        if labels is not None:
            raise ValueError(f"{self.name} is not class-conditional: --label does not apply")
        return self.as_pictures(self.generate(self.z(n, Generator(seed, self.device)), batch_size=batch_size))


def slerp(a, b, t):
    """Spherical interpolation between rows of a and b (each row a latent vector)."""
    a_flat, b_flat = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cos = np.sum(a_flat * b_flat, axis=1) / (np.linalg.norm(a_flat, axis=1) * np.linalg.norm(b_flat, axis=1))
    angle = np.arccos(np.clip(cos, -1, 1))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mixed = np.where(angle > 1e-6, (np.sin((1 - t) * angle) * a_flat + np.sin(t * angle) * b_flat)
                         / np.sin(angle), (1 - t) * a_flat + t * b_flat)
    return mixed.reshape(a.shape)

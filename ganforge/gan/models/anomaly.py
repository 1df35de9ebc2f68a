"""Anomaly detection with a GAN trained on normal images only, f-AnoGAN's way (Schlegl et
al. 2019, "izi_f" encoder training):

1. A DCGAN learns the normal images: the first `steps - encoder_steps` steps are GAN's
   step (models/gan.py), so G can draw what is normal and nothing else.
2. An encoder E learns to invert G: an image, through E and then G, should come back as
   itself, in pixels and in the discriminator's features, with G and D frozen.
3. The residual: how badly an image comes back, the mean squared pixel residual of
   G(E(x)) plus `kappa` times the mean squared residual of D's features (the last map of
   D's trunk). A normal image lies near what G draws and comes back; an anomaly is
   reproduced as the nearest normal thing G can draw, and differs from it.

Beside the GAN's loss, D has a second task during the first phase (the self-supervised
discriminator of SS-GAN, Chen et al. 2019, with the 72 transformations of GEOM, Golan &
El-Yaniv 2018): a small head C on D's trunk tells which of `transformations` (72: mirrored
or not, 4 quarter turns, 9 shifts) was applied to a real image. To tell a shirt turned
upside down from one the right way up, D must learn what the normal images look like;
shown an anomaly, it cannot say which way it was turned. That is the second part of the
score: the mean, over all transformations, of minus the log-probability C gives the right
one. (`--transformations 0` leaves it out: f-AnoGAN alone.)

The third part remembers the normal images themselves: the mean squared difference between
D's features of an image and those of its `nearest` closest normal training images (1 by
default; `--nearest 0` leaves it out). The residual compares an image with the nearest thing
G can draw, and a GAN of a few thousand steps loses detail the training images still hold;
this part compares it with those images, as D sees them.

The parts are put on one scale by normal images the run never trained on (`held_out`, 10%
by default): each part minus their mean, over their standard deviation, and the score is
the sum. The threshold that turns scores into flags is set on the same
images: at a false-positive rate of 5%, 5% of them score above it.
"""
import numpy as np

from ... import functional as F
from ... import nn, optim
from ...autograd import no_grad
from ...backend import xp_of
from ...tensor import Tensor
from ..nets import dcgan_features, initialized, per_network_init
from ..steps import frozen, in_eval_mode, update
from .dcgan import DCGAN


class Encoder(nn.Module):
    """images -> z, shaped (N, z_dim, 1, 1) as G takes it: the DCGAN trunk (without batch
    norm, so that scores do not depend on which images share a batch) and a last
    convolution over the whole final map."""

    def __init__(self, channels, resolution, z_dim, init="default"):
        super().__init__()
        self.trunk, width, final = dcgan_features(channels, resolution, batchnorm=False, init=init)
        self.head = initialized(nn.Conv2d(width, z_dim, final), init)

    def forward(self, x):
        return self.head(self.trunk(x))


def geometric_transformations(count, size):
    """GEOM's transformations of a size x size image, as (mirrored, quarter turns, shift
    down, shift right): 8 (mirrored or not, 4 turns) or 72 (each also shifted by a fifth
    of the image, or not, along each axis)."""
    step = size // 5
    shifts = [(0, 0)] if count == 8 else [(dy, dx) for dy in (0, -step, step) for dx in (0, -step, step)]
    return [(mirrored, turns, dy, dx) for mirrored in (False, True) for turns in range(4) for dy, dx in shifts]


def transform(images, mirrored, turns, dy, dx, fill=-1.0):
    """Images (N, C, H, W) mirrored left-right, turned `turns` quarter turns counterclockwise,
    and shifted by (dy, dx) pixels, with `fill` (black) where nothing shifts in."""
    xp = xp_of(images)
    x = xp.rot90(images[..., ::-1] if mirrored else images, turns, axes=(2, 3))
    out = xp.full_like(x, fill)
    h, w = x.shape[2:]
    out[:, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[:, :, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


class AnomalyGAN(DCGAN):
    name = "anomaly"
    summary = ("anomaly detection: a DCGAN of the normal images whose D also names their turns and shifts, and an "
               "encoder that inverts G (f-AnoGAN plus SS-GAN's task)")
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 64}
    options = {**DCGAN.options, "normal_class": None, "encoder_steps": 1000, "kappa": 1.0, "held_out": 0.1,
               "transformations": 72, "transformation_weight": 1.0, "nearest": 1}
    # the encoder is fitted to G as it is at the end of the GAN's steps, so scores use those
    # weights, not an average that would keep moving while E trains
    ema = ()

    def __init__(self, config, data, noise=None):
        if not 0 < config["encoder_steps"] < config["steps"]:
            raise ValueError(f"--encoder-steps must be between 1 and --steps - 1 (the GAN trains first), got "
                             f"{config['encoder_steps']} of {config['steps']}")
        if config.get("transformations", 0) not in (0, 8, 72):
            raise ValueError(f"--transformations is 72 (mirror, turns and shifts), 8 (mirror and turns) or 0 (none), "
                             f"got {config['transformations']}")
        if config.get("nearest", 0) < 0:
            raise ValueError(f"--nearest is how many nearest normal training images the score compares an image "
                             f"with, 0 or more (0 leaves that part out), got {config['nearest']}")
        super().__init__(config, data, noise)
        # runs saved before the transformation task have no C and score by the residual
        count = config.get("transformations", 0)
        self.transformations = geometric_transformations(count, data.shape[-1]) if count else []
        self.calibration = None  # the held-out normal images' (mean, std) of each part: see calibrate()
        # D's features of the normal training images (and their squared norms), for the nearest part: see remember()
        self.memory = self.memory_norms = None

    def build_networks(self):
        nets = super().build_networks()
        channels, resolution = self.data.shape[0], self.data.shape[1]
        nets["E"] = Encoder(channels, resolution, self.config["z_dim"], per_network_init(self.config["init"])[1])
        if self.config.get("transformations", 0):
            _, width, *final = nets["D"][1].weight.shape  # D's head reads its trunk's whole last map, as C does
            head = nn.Conv2d(width, self.config["transformations"], tuple(final))
            nets["C"] = nn.Sequential(initialized(head, per_network_init(self.config["init"])[1]), nn.Flatten())
        return nets

    def build_optimizers(self):
        """GAN's, with C's parameters in D's Adam: D and its head learn from one loss."""
        optimizers = super().build_optimizers()
        if "C" in self.nets:
            lr, betas = self.config["lr"], tuple(self.config["betas"])
            optimizers["D"] = optim.Adam(list(self.nets["D"].parameters()) + list(self.nets["C"].parameters()),
                                         lr=lr, betas=betas)
            del optimizers["C"]
        return optimizers

    @property
    def gan_steps(self):
        return self.config["steps"] - self.config["encoder_steps"]

    @property
    def encoder_trains(self):
        """Whether training is in its second phase (G has had its updates; its optimizer's
        count is the phase's record, so a resumed run needs no state of its own)."""
        return bool(self.optimizers) and self.optimizers["G"].step_count >= self.gan_steps

    def train_step(self, batches):
        """The GAN's step (D's update with the transformation task) until G has had its
        updates, then the encoder's (E has an Adam of its own beside G's and D's)."""
        if not self.encoder_trains:
            losses = super().train_step(batches)
            if self.transformations:
                losses["loss_transformations"] = self.loss_transformations
            return losses
        return self.encoder_step(next(batches)["x"])

    def discriminator_step(self, batch):
        """GAN's D update, with the transformation task's loss added to D's."""
        if not self.transformations:
            return super().discriminator_step(batch)
        loss_d, penalty, fake, cond = self.discriminator_losses(batch)
        loss_transformations = self.transformation_loss(batch["x"])
        loss = loss_d + self.config["transformation_weight"] * loss_transformations
        update(self.optimizers["D"], loss if penalty is None else loss + penalty, self.config["clip_grad_norm"])
        self.loss_transformations = loss_transformations.item()
        return loss_d, penalty, fake, cond

    def transformation_logits(self, x):
        """C's logits over the transformations, from D's trunk's features of images x."""
        return self.nets["C"](self.nets["D"][0](x))

    def transformation_loss(self, real):
        """Each real image under a random transformation; cross-entropy of C's guess."""
        picks = (self.noise.uniform((len(real),), np.float64) * len(self.transformations)).astype(np.int64)
        transformed = real.xp.concatenate([transform(real._data[i:i + 1], *self.transformations[t])
                                           for i, t in enumerate(picks.tolist())])
        return F.cross_entropy(self.transformation_logits(Tensor(transformed)), Tensor(picks))

    def features(self, x):
        """D's trunk's last feature map, flattened: what 'looks the same to D' compares."""
        return F.flatten(self.nets["D"][0](x), 1)

    def reconstruction_residuals(self, x):
        """(pixel residual, feature residual) of x through E and G, one value per image."""
        x_back = self.nets["G"](self.nets["E"](x))
        pixels = ((x_back - x) ** 2).mean(axis=(1, 2, 3))
        features = ((self.features(x_back) - self.features(x)) ** 2).mean(axis=1)
        return pixels, features

    def encoder_step(self, x):
        """izi_f: x -> E -> G should give x back, in pixels and in D's features."""
        G, D = self.nets["G"], self.nets["D"]
        with in_eval_mode(G, D), frozen(G, D):
            pixels, features = self.reconstruction_residuals(x)
            loss_pixels, loss_features = pixels.mean(), features.mean()
            update(self.optimizers["E"], loss_pixels + self.config["kappa"] * loss_features)
        return {"loss_pixels": loss_pixels.item(), "loss_features": loss_features.item()}

    # --- scores and pictures --------------------------------------------------------------------

    @property
    def neighbours(self):
        """How many nearest normal training images the score's third part compares with
        (0 for runs saved before that part: they score without it)."""
        return self.config.get("nearest", 0)

    @property
    def score_names(self):
        """The parts the score adds up."""
        return ["residual"] + ["transformations"] * bool(self.transformations) + ["nearest"] * bool(self.neighbours)

    def score_parts(self, images, batch_size=500):
        """{"residual", "pixels", "features"} and, with the transformation task,
        "transformations", and with --nearest, "nearest": NumPy arrays, one value per
        image (N, C, H, W) in [-1, 1]; higher is more anomalous.
        residual = pixels + kappa * features."""
        images = self._checked(images)
        if self.neighbours and self.memory is None:
            raise ValueError("this run's score compares each image with its nearest normal training images: call "
                             "model.calibrate(held_out_normal_images(model.config), "
                             "training_normal_images(model.config)) first (ganforge score does)")
        parts = {"pixels": [], "features": [], "transformations": [], "nearest": []}
        with in_eval_mode(*self.nets.values()), no_grad():
            for i in range(0, len(images), batch_size):
                x = Tensor(images[i:i + batch_size]).to(self.device)
                for name, value in zip(("pixels", "features"), self.reconstruction_residuals(x)):
                    parts[name].append(value.numpy())
                if self.transformations:
                    parts["transformations"].append(self.transformation_surprise(x).numpy())
                if self.neighbours:
                    parts["nearest"].append(self.nearest_distance(x).numpy())
        parts = {name: np.concatenate(values).astype(np.float64) for name, values in parts.items() if values}
        return {"residual": parts["pixels"] + self.config["kappa"] * parts["features"], **parts}

    def transformation_surprise(self, x):
        """Minus the log-probability C gives each transformation of x that was applied,
        averaged over all of them: low for a normal image, whose turns and shifts D knows."""
        surprise = 0
        for t, transformation in enumerate(self.transformations):
            log_p = F.log_softmax(self.transformation_logits(Tensor(transform(x._data, *transformation))), 1)
            surprise = surprise - log_p[:, t]
        return surprise / len(self.transformations)

    def nearest_distance(self, x):
        """The mean squared difference between D's features of each image of x and those of
        its `nearest` closest normal training images (the memory), averaged over them."""
        features = self.features(x)._data
        xp = xp_of(features)
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: every pair in one matrix product; rounding can
        # leave a pair that is nearly equal a little below 0, hence the clip
        squared = (features ** 2).sum(1)[:, None] + self.memory_norms[None] - 2 * features @ self.memory.T
        closest = xp.partition(squared, self.neighbours - 1, axis=1)[:, :self.neighbours]
        return Tensor(xp.maximum(closest, 0).mean(1) / features.shape[1])

    def remember(self, training_images, batch_size=500):
        """Keep D's features of the normal training images, which the nearest part compares with."""
        training_images = self._checked(training_images)
        if len(training_images) < self.neighbours:
            raise ValueError(f"--nearest {self.neighbours} needs at least as many normal training images, got "
                             f"{len(training_images)}")
        with in_eval_mode(*self.nets.values()), no_grad():
            batches = [self.features(Tensor(training_images[i:i + batch_size]).to(self.device))._data
                       for i in range(0, len(training_images), batch_size)]
        self.memory = xp_of(batches[0]).concatenate(batches)
        self.memory_norms = (self.memory ** 2).sum(1)

    def calibrate(self, held_out_images, training_images=None):
        """Put the score's parts on one scale by their mean and standard deviation on normal
        images the run did not train on; returns those images' parts. With --nearest, the
        normal training images are remembered first (their D features)."""
        if self.neighbours:
            if training_images is None:
                raise ValueError("this run's score compares each image with its nearest normal training images: "
                                 "pass them, model.calibrate(held_out, training_normal_images(model.config))")
            self.remember(training_images)
        parts = self.score_parts(held_out_images)
        self.calibration = {name: (parts[name].mean(), parts[name].std() or 1.0) for name in self.score_names}
        return parts

    def combined(self, parts):
        """The anomaly score: the residual alone, or the sum of the score's parts (the
        residual, the transformation task's, the nearest images'), each standardized by the
        held-out normal images (calibrate)."""
        if self.score_names == ["residual"]:
            return parts["residual"]
        if self.calibration is None:
            raise ValueError("this run's score adds parts put on one scale by held-out normal images: call "
                             "model.calibrate(held_out_normal_images(model.config), "
                             "training_normal_images(model.config)) first (ganforge score does)")
        return sum((parts[name] - mean) / std for name, (mean, std) in self.calibration.items())

    def anomaly_scores(self, images, batch_size=500):
        """{"score", and each part of score_parts}: NumPy arrays, one value per image."""
        parts = self.score_parts(images, batch_size)
        return {"score": self.combined(parts), **parts}

    def reconstruct(self, images, batch_size=500):
        """G(E(x)): the normal image the model sees in each of `images`."""
        images = self._checked(images)
        with in_eval_mode(*self.nets.values()), no_grad():
            return np.concatenate([self.nets["G"](self.nets["E"](Tensor(images[i:i + batch_size]).to(self.device)))
                                   .numpy() for i in range(0, len(images), batch_size)])

    def _checked(self, images):
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != tuple(self.data.shape):
            raise ValueError(f"{self.name} scores images of shape {tuple(self.data.shape)} (N, C, H, W), got "
                             f"{images.shape[1:] if images.ndim == 4 else images.shape}")
        return images

    def threshold(self, held_out_images, false_positive_rate=0.05, training_images=None):
        """The score above which an image is flagged: the (1 - rate) quantile of held-out
        normal images' scores (which also calibrate the score's parts; training_images as
        calibrate takes them)."""
        if not 0 < false_positive_rate < 1:
            raise ValueError(f"the false-positive rate must be between 0 and 1, got {false_positive_rate}")
        parts = self.calibrate(held_out_images, training_images)
        return float(np.quantile(self.combined(parts), 1 - false_positive_rate))

    def preview(self):
        """Before the encoder trains: G's samples. Then, row by row: normal images of the
        data, their reconstructions G(E(x)), and G's samples."""
        samples = self.as_pictures(self.generate(self.fixed_z))
        if not self.encoder_trains or self.preview_batch is None:
            return samples, None
        real = self.preview_batch["x"].numpy()
        return np.concatenate([real, self.reconstruct(real), samples[:6 * len(real)]]), len(real)

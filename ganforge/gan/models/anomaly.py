"""Anomaly detection with a GAN trained on normal images only, f-AnoGAN's way (Schlegl et
al. 2019, "izi_f" encoder training):

1. A DCGAN learns the normal images: the first `steps - encoder_steps` steps are GAN's
   step (models/gan.py), so G can draw what is normal and nothing else.
2. An encoder E learns to invert G: an image, through E and then G, should come back as
   itself, in pixels and in the discriminator's features, with G and D frozen.
3. An image's anomaly score is how badly it comes back: the mean squared pixel residual
   of G(E(x)) plus `kappa` times the mean squared residual of D's features (the last map
   of D's trunk). A normal image lies near what G draws and comes back; an anomaly is
   reproduced as the nearest normal thing G can draw, and differs from it.

The threshold that turns scores into flags is set on normal training images the run
never trained on (`held_out`, 10% by default): at a false-positive rate of 5%, 5% of
them score above it.
"""
import numpy as np

from ... import functional as F
from ... import nn
from ...autograd import no_grad
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


class AnomalyGAN(DCGAN):
    name = "anomaly"
    summary = "anomaly detection: a DCGAN of the normal images and an encoder that inverts it (f-AnoGAN)"
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 64}
    options = {**DCGAN.options, "normal_class": None, "encoder_steps": 1000, "kappa": 1.0, "held_out": 0.1}
    # the encoder is fitted to G as it is at the end of the GAN's steps, so scores use those
    # weights, not an average that would keep moving while E trains
    ema = ()

    def __init__(self, config, data, noise=None):
        if not 0 < config["encoder_steps"] < config["steps"]:
            raise ValueError(f"--encoder-steps must be between 1 and --steps - 1 (the GAN trains first), got "
                             f"{config['encoder_steps']} of {config['steps']}")
        super().__init__(config, data, noise)

    def build_networks(self):
        nets = super().build_networks()
        channels, resolution = self.data.shape[0], self.data.shape[1]
        nets["E"] = Encoder(channels, resolution, self.config["z_dim"], per_network_init(self.config["init"])[1])
        return nets

    @property
    def gan_steps(self):
        return self.config["steps"] - self.config["encoder_steps"]

    @property
    def encoder_trains(self):
        """Whether training is in its second phase (G has had its updates; its optimizer's
        count is the phase's record, so a resumed run needs no state of its own)."""
        return bool(self.optimizers) and self.optimizers["G"].step_count >= self.gan_steps

    def train_step(self, batches):
        """The GAN's step until G has had its updates, then the encoder's (GAN's
        build_optimizers gives E an Adam of its own beside G's and D's)."""
        if not self.encoder_trains:
            return super().train_step(batches)
        return self.encoder_step(next(batches)["x"])

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

    def anomaly_scores(self, images, batch_size=500):
        """{"score", "pixels", "features"}: NumPy arrays, one value per image (N, C, H, W) in
        [-1, 1]; higher is more anomalous. score = pixels + kappa * features."""
        images = self._checked(images)
        parts = {"pixels": [], "features": []}
        with in_eval_mode(*self.nets.values()), no_grad():
            for i in range(0, len(images), batch_size):
                x = Tensor(images[i:i + batch_size]).to(self.device)
                for name, value in zip(parts, self.reconstruction_residuals(x)):
                    parts[name].append(value.numpy())
        scores = {name: np.concatenate(values).astype(np.float64) for name, values in parts.items()}
        return {"score": scores["pixels"] + self.config["kappa"] * scores["features"], **scores}

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

    def threshold(self, held_out_images, false_positive_rate=0.05):
        """The score above which an image is flagged: the (1 - rate) quantile of held-out
        normal images' scores."""
        if not 0 < false_positive_rate < 1:
            raise ValueError(f"the false-positive rate must be between 0 and 1, got {false_positive_rate}")
        return float(np.quantile(self.anomaly_scores(held_out_images)["score"], 1 - false_positive_rate))

    def preview(self):
        """Before the encoder trains: G's samples. Then, row by row: normal images of the
        data, their reconstructions G(E(x)), and G's samples."""
        samples = self.as_pictures(self.generate(self.fixed_z))
        if not self.encoder_trains or self.preview_batch is None:
            return samples, None
        real = self.preview_batch["x"].numpy()
        return np.concatenate([real, self.reconstruct(real), samples[:6 * len(real)]]), len(real)

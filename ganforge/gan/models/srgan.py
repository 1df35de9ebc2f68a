"""SRGAN (Ledig et al. 2017): super-resolution. A generator learns to upscale a
low-resolution image by `scale`, first alone on the pixels' mean squared error (the
paper's SRResNet), then against a discriminator that tells its upscalings from real
high-resolution images (SRGAN): content loss + 1e-3 x adversarial loss. The adversarial
term trades some PSNR for texture the MSE alone averages away.

Networks as in the paper's figure 4:
  generator      conv 9x9 + PReLU; B residual blocks (conv 3x3, batch norm, PReLU, conv
                 3x3, batch norm, + input); conv 3x3 + batch norm + the head's output
                 (the global skip); per x2: conv 3x3 to 4x the channels, pixel shuffle,
                 PReLU; conv 9x9 to the image, tanh. Fully convolutional: any input size.
  discriminator  conv 3x3 64 + leaky ReLU, seven conv 3x3 + batch norm + leaky ReLU
                 (64 s2, 128, 128 s2, 256, 256 s2, 512, 512 s2), dense 1024, leaky ReLU,
                 dense 1 (a logit), for crops of the size it trains on.
Training: Adam(1e-4, 0.9, 0.999), as the paper, for both networks.

The content loss: the paper's best is on VGG features, whose weights cannot be fetched
here. For Fashion-MNIST, `--content features` uses the feature maps of the classifier
ganforge ships (metrics/fashion_classifier.py, pinned by hash); for photographs the
content loss is the pixels' MSE (the paper's SRGAN-MSE). docs/srgan.md measures both.
"""
import math

import numpy as np

from ... import functional as F
from ... import nn, optim
from ...autograd import no_grad
from ...data import resize_bicubic
from ...tensor import Tensor
from ..losses import discriminator_loss, generator_loss
from ..model import Model
from ..steps import frozen, update

SCALES = (2, 4, 8)


class ResidualBlock(nn.Module):
    """x + (conv 3x3, batch norm, PReLU, conv 3x3, batch norm)(x)."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


class SRResNet(nn.Module):
    """(N, C, h, w) images in [-1, 1] -> (N, C, h scale, w scale)."""

    def __init__(self, channels=3, scale=4, width=64, blocks=16):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale {scale}: SRResNet upsamples in x2 stages, so 2, 4 or 8")
        self.scale, self.blocks = scale, blocks
        self.head = nn.Sequential(nn.Conv2d(channels, width, 9, padding=4), nn.PReLU(width))
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)],
                                  nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        upsample = []
        for _ in range(int(math.log2(scale))):
            upsample += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(width)]
        self.tail = nn.Sequential(*upsample, nn.Conv2d(width, channels, 9, padding=4), nn.Tanh())

    def forward(self, x):
        features = self.head(x)
        return self.tail(features + self.body(features))

    def receptive_radius(self):
        """How many low-resolution pixels away an output pixel still looks: the 9x9 head,
        two 3x3 convolutions per block, one after them, one per x2 stage (each at twice
        the resolution of the last) and the 9x9 tail at the output's resolution."""
        stages = int(math.log2(self.scale))
        return math.ceil(4 + 2 * self.blocks + 1 + sum(0.5**k for k in range(stages)) + 4 / self.scale)


def srgan_discriminator(channels, size, width=64):
    """Real or upscaled, for (N, channels, size, size) images: one logit each."""
    layers = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
    c = width
    for i in range(7):
        out, stride = width * 2 ** ((i + 1) // 2), 2 if i % 2 == 0 else 1
        layers += [nn.Conv2d(c, out, 3, stride=stride, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
        c = out
    for _ in range(4):
        size = (size + 1) // 2  # each stride-2 convolution with padding 1
    layers += [nn.Flatten(), nn.Linear(c * size * size, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1)]
    return nn.Sequential(*layers)


class SRGAN(Model):
    name = "srgan"
    summary = ("SRGAN: super-resolution x2/x4 (Fashion-MNIST or a folder of photos); --content-only trains "
               "SRResNet on MSE alone")
    defaults = {"data": "fashion-mnist", "steps": 3000, "batch_size": 16}
    options = {"lr": 1e-4, "betas": (0.9, 0.999), "width": None, "blocks": None, "content_only": False,
               "content": None, "adversarial_weight": 1e-3}
    ema = ()  # the paper upscales with the trained generator itself
    data_kind = "paired"

    def __init__(self, config, data, noise=None):
        self.channels, self.size = data.shape[0], data.shape[-1]
        self.scale = config["scale"]
        content = config["content"] or "mse"
        if content not in ("mse", "features"):
            raise ValueError(f"--content {content}: 'mse' (the pixels) or 'features' (the Fashion-MNIST classifier's)")
        if content == "features" and data.shape != (1, 28, 28):
            raise ValueError(f"--content features uses the Fashion-MNIST classifier, which takes 28x28 grey images; "
                             f"this run's are {data.shape}: use --content mse")
        self.content = content
        super().__init__(config, data, noise)
        self.feature_net = None
        if content == "features":
            from ...metrics.fashion_classifier import load_classifier
            self.feature_net = load_classifier().trunk.to(self.device).requires_grad_(False)

    def build_networks(self):
        width, blocks = self.config["width"] or 64, self.config["blocks"] or 16
        nets = {"G": SRResNet(self.channels, self.scale, width, blocks)}
        if not self.config["content_only"]:
            nets["D"] = srgan_discriminator(self.channels, self.size)
        return nets

    def build_optimizers(self):
        lr, betas = self.config["lr"], tuple(self.config["betas"])
        return {name: optim.Adam(net.parameters(), lr=lr, betas=betas) for name, net in self.nets.items()}

    def content_loss(self, upscaled, hr):
        if self.content == "mse":
            return F.mse_loss(upscaled, hr)
        return F.mse_loss(self.feature_net(upscaled), self.feature_net(hr))

    def train_step(self, batches):
        G = self.nets["G"]
        batch = next(batches)
        lr, hr = batch["lr"], batch["hr"]
        if self.config["content_only"]:  # SRResNet: the pixels' MSE alone
            loss = F.mse_loss(G(lr), hr)
            update(self.optimizers["G"], loss)
            return {"loss_mse": loss.item()}

        D = self.nets["D"]
        upscaled = G(lr)
        loss_d = discriminator_loss("non_saturating", D(hr), D(upscaled.detach()))
        update(self.optimizers["D"], loss_d)

        with frozen(D):
            loss_content = self.content_loss(upscaled, hr)
            loss_adversarial = generator_loss("non_saturating", D(upscaled))
            update(self.optimizers["G"], loss_content + self.config["adversarial_weight"] * loss_adversarial)
        return {"loss_content": loss_content.item(), "loss_g": loss_adversarial.item(), "loss_d": loss_d.item()}

    # --- inference -------------------------------------------------------------------------

    def upscale(self, images, tile=128, batch_size=16):
        """(N, C, h, w) images in [-1, 1], any h and w, upscaled by the trained scale, as
        a NumPy array. Images larger than `tile` low-resolution pixels go through in tiles,
        each with a margin as wide as the generator's receptive field, so that every
        output pixel sees what it would in one pass: no seams."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(f"upscale takes (N, {self.channels}, H, W) images, got shape {images.shape}")
        G, s = self.nets["G"], self.scale
        height, width = images.shape[2:]
        margin = G.receptive_radius()
        out = np.empty(images.shape[:2] + (height * s, width * s), dtype=np.float32)
        with no_grad():
            for top in range(0, height, tile):
                for left in range(0, width, tile):
                    t, l = max(0, top - margin), max(0, left - margin)
                    b, r = min(height, top + tile + margin), min(width, left + tile + margin)
                    for start in range(0, len(images), batch_size):
                        piece = Tensor(images[start:start + batch_size, :, t:b, l:r]).to(self.device)
                        up = G(piece).numpy()
                        out[start:start + batch_size, :, top * s:(top + tile) * s, left * s:(left + tile) * s] = \
                            up[:, :, (top - t) * s:(top - t + tile) * s, (left - l) * s:(left - l + tile) * s]
        return out

    def preview(self):
        """Each row: bicubic, the generator's upscaling, the original, for the first
        pairs of the data."""
        lr, hr = self.preview_batch["lr"].numpy(), self.preview_batch["hr"].numpy()
        bicubic = np.clip(resize_bicubic(lr, *hr.shape[2:]), -1, 1)
        rows = np.stack([bicubic, self.upscale(lr), hr], axis=1)
        return rows.reshape((-1,) + rows.shape[2:]), 3

"""CycleGAN (Zhu et al. 2017): translation between two image domains A and B learned from
unpaired examples. Two generators, G_ab: A -> B and G_ba: B -> A, each fooling a
discriminator of its target domain (least-squares loss), tied together by cycle
consistency: G_ba(G_ab(a)) should give a back, G_ab(G_ba(b)) b. An identity term keeps a
generator from changing an image that is already in its target domain (which keeps
colours), and each discriminator sees fakes drawn from a pool of the last 50 generated
images, so that it does not only chase the generators' latest move.

Networks as in the paper's appendix (and its reference code):
  generator      c7s1-w, d2w, d4w, R4w x blocks, u2w, uw, c7s1-C: reflection padding,
                 instance norm, residual blocks (9 at 128 px and up, 6 at 64 px, 4 below:
                 small images reach the bottleneck at 7 or 8 pixels, where 4 blocks
                 already see the whole image), width 64 (32 below 64 px)
  discriminator  70x70 PatchGAN: C64-C128-C256-C512, 4x4 convolutions, instance norm,
                 leaky ReLU 0.2, one output per patch; below 64 px one stride-2 layer fewer
                 (34x34 patches), and the same width rule as the generator
Training: Adam(2e-4, 0.5, 0.999) for both pairs, the learning rate constant for the
first half of the steps and then linearly to 0; batch 1; random crops (from images loaded
at 286/256 of the resolution) and horizontal flips.
"""
import numpy as np

from ... import functional as F
from ... import nn, optim
from ...autograd import no_grad
from ...backend import xp_of
from ...data import random_crop_flip
from ...tensor import Tensor
from ..model import Model
from ..steps import frozen, update

DIRECTIONS = ("ab", "ba")


def squared_error(scores, target):
    """The least-squares GAN loss of a discriminator's patch scores against 0 or 1."""
    return ((scores - target) ** 2).mean()


class ResidualBlock(nn.Module):
    """x + (pad, conv 3x3, norm, ReLU, pad, conv 3x3, norm)(x)."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


def resnet_generator(channels, width, blocks):
    """The CycleGAN generator: image (N, channels, H, W) -> image of the same shape, H and W
    multiples of 4 (two stride-2 convolutions down, two transposed ones up)."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), nn.InstanceNorm2d(width), nn.ReLU()]
    for c in (width, 2 * width):
        layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * c), nn.ReLU()]
    layers += [ResidualBlock(4 * width) for _ in range(blocks)]
    for c in (4 * width, 2 * width):
        layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                   nn.InstanceNorm2d(c // 2), nn.ReLU()]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
    return _initialized(nn.Sequential(*layers))


def patch_discriminator(channels, width, strided_layers):
    """PatchGAN: one real/fake score per overlapping patch (70x70 with 3 strided layers)."""
    layers = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    c = width
    for i in range(1, strided_layers + 1):
        stride = 2 if i < strided_layers else 1
        out = width * min(2 ** i, 8)
        layers += [nn.Conv2d(c, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out), nn.LeakyReLU(0.2)]
        c = out
    layers += [nn.Conv2d(c, 1, 4, stride=1, padding=1)]
    return _initialized(nn.Sequential(*layers))


def _initialized(net):
    """Weights from N(0, 0.02), biases 0: the paper's initialization."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
    return net


class ImagePool:
    """The last `size` generated images (Shrivastava et al. 2017). Until it is full, each
    image goes in and back out; then with probability 1/2 an image is swapped for a random
    stored one, which the discriminator sees instead."""

    def __init__(self, size=50):
        self.size, self.images = size, []

    def query(self, images, noise):
        """A batch the shape of `images` (a Tensor, detached), drawn as above."""
        draws = noise.uniform((len(images), 2), "float64").tolist()
        out = []
        for image, (u_swap, u_index) in zip(images.data, draws):
            if len(self.images) < self.size:
                self.images.append(image.copy())
                out.append(image)
            elif u_swap < 0.5:
                i = int(u_index * self.size)
                out.append(self.images[i])
                self.images[i] = image.copy()
            else:
                out.append(image)
        return Tensor(xp_of(images.data).stack(out))

    def state_dict(self):
        return {"size": self.size, "images": list(self.images)}

    def load_state_dict(self, state):
        self.size, self.images = state["size"], list(state["images"])


class CycleGAN(Model):
    name = "cyclegan"
    summary = "CycleGAN: unpaired image-to-image translation (two folders, or fashion-edges)"
    defaults = {"data": "fashion-edges", "steps": 20000, "batch_size": 1, "lr_decay": True}
    options = {"lr": 2e-4, "betas": (0.5, 0.999), "lr_decay": True, "cycle_weight": 10.0, "identity_weight": 0.5,
               "pool_size": 50, "width": None, "blocks": None}
    ema = ()  # the paper samples from the trained generators themselves
    data_kind = "unpaired"
    lr_constant = 0.5  # the learning rates stay put for the first half of the steps

    def __init__(self, config, data, noise=None):
        super().__init__(config, data, noise)
        self.pools = {"a": ImagePool(config["pool_size"]), "b": ImagePool(config["pool_size"])}

    def build_networks(self):
        channels, height, width = self.data.shape
        if height % 4 or width % 4:
            raise ValueError(f"cyclegan needs images whose sides are multiples of 4 (its generators downsample "
                             f"twice), got {height}x{width}: choose another --resolution")
        size = min(height, width)
        net_width = self.config["width"] or (64 if size >= 64 else 32)
        blocks = self.config["blocks"] or (9 if size >= 128 else 6 if size >= 64 else 4)
        strided = 3 if size >= 64 else 2
        return {"G_ab": resnet_generator(channels, net_width, blocks),
                "G_ba": resnet_generator(channels, net_width, blocks),
                "D_a": patch_discriminator(channels, net_width, strided),
                "D_b": patch_discriminator(channels, net_width, strided)}

    def build_optimizers(self):
        lr, betas = self.config["lr"], tuple(self.config["betas"])
        nets = self.nets
        return {"G": optim.Adam([*nets["G_ab"].parameters(), *nets["G_ba"].parameters()], lr=lr, betas=betas),
                "D": optim.Adam([*nets["D_a"].parameters(), *nets["D_b"].parameters()], lr=lr, betas=betas)}

    def train_step(self, batches):
        G_ab, G_ba, D_a, D_b = (self.nets[name] for name in ("G_ab", "G_ba", "D_a", "D_b"))
        batch = next(batches)
        size = self.data.shape[-1]
        real_a, real_b = (random_crop_flip(batch[k], size, self.noise) for k in ("a", "b"))
        cycle_weight = self.config["cycle_weight"]
        identity_weight = cycle_weight * self.config["identity_weight"]

        # generators: fool both discriminators, translate back to where they started, and
        # leave an image that is already in their target domain as it is
        with frozen(D_a, D_b):
            fake_b, fake_a = G_ab(real_a), G_ba(real_b)
            loss_gan = squared_error(D_b(fake_b), 1) + squared_error(D_a(fake_a), 1)
            loss_cycle = F.l1_loss(G_ba(fake_b), real_a) + F.l1_loss(G_ab(fake_a), real_b)
            loss_identity = F.l1_loss(G_ab(real_b), real_b) + F.l1_loss(G_ba(real_a), real_a)
            loss_g = loss_gan + cycle_weight * loss_cycle + identity_weight * loss_identity
            update(self.optimizers["G"], loss_g)

        # discriminators: real images against generated ones from the pools, halved
        # (the paper slows D down relative to G)
        pooled_a = self.pools["a"].query(fake_a.detach(), self.noise)
        pooled_b = self.pools["b"].query(fake_b.detach(), self.noise)
        loss_d_a = 0.5 * (squared_error(D_a(real_a), 1) + squared_error(D_a(pooled_a), 0))
        loss_d_b = 0.5 * (squared_error(D_b(real_b), 1) + squared_error(D_b(pooled_b), 0))
        update(self.optimizers["D"], loss_d_a + loss_d_b)

        self.step_schedules()
        return {"loss_g": loss_gan.item(), "loss_cycle": loss_cycle.item(), "loss_identity": loss_identity.item(),
                "loss_d_a": loss_d_a.item(), "loss_d_b": loss_d_b.item()}

    def state_dict(self):
        return {**super().state_dict(), "pools": {k: pool.state_dict() for k, pool in self.pools.items()}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for k, pool in self.pools.items():
            pool.load_state_dict(state["pools"][k])

    # --- inference -------------------------------------------------------------------------

    def translate(self, images, direction="ab", batch_size=16):
        """(N, C, H, W) images in [-1, 1] translated A -> B ("ab") or B -> A ("ba"), as a
        NumPy array. Any H and W: sides that are not multiples of 4 are padded by reflection
        to the next one and cropped back after."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'ab' or 'ba', got {direction!r}")
        images = np.asarray(images, dtype=np.float32)
        channels = self.data.shape[0]
        if images.ndim != 4 or images.shape[1] != channels:
            raise ValueError(f"translate takes (N, {channels}, H, W) images, got shape {images.shape}")
        height, width = images.shape[2:]
        pad_h, pad_w = -height % 4, -width % 4
        if pad_h or pad_w:
            images = np.pad(images, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
        G = self.nets["G_" + direction]
        out = []
        with no_grad():
            for start in range(0, len(images), batch_size):
                x = Tensor(images[start:start + batch_size]).to(self.device)
                out.append(G(x).numpy())
        return np.concatenate(out)[:, :, :height, :width]

    def preview(self):
        """Each row: a, G_ab(a), G_ba(G_ab(a)) | b, G_ba(b), G_ab(G_ba(b)), for the first
        images of each domain, center-cropped to the size the networks train at."""
        n = min(len(self.preview_batch["a"]), len(self.preview_batch["b"]))
        columns = []
        for domain, there, back in (("a", "ab", "ba"), ("b", "ba", "ab")):
            real = self.center_crop(self.preview_batch[domain].numpy()[:n])
            translated = self.translate(real, there)
            columns += [real, translated, self.translate(translated, back)]
        rows = np.stack(columns, axis=1)  # (items, 6, C, H, W)
        return rows.reshape((-1,) + rows.shape[2:]), 6

    def center_crop(self, images):
        _, height, width = self.data.shape
        top, left = (images.shape[2] - height) // 2, (images.shape[3] - width) // 2
        return images[:, :, top:top + height, left:left + width]

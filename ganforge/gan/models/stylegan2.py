"""StyleGAN2 (Karras et al. 2020), trained as stylegan2-ada-pytorch trains it.

The generator maps a normalized z through an MLP (the mapping network, at a learning rate
a hundredth of the rest) to w, which styles every layer of the synthesis network: from a
learned 4x4 constant, each block upsamples, runs two modulated and demodulated 3x3
convolutions (one grouped convolution per layer, a group per sample), adds per-pixel noise
of learned strength, and adds its toRGB output to the upsampled image of the blocks before
(the skip architecture). The discriminator is residual, with a minibatch standard
deviation channel before its head; every layer has an equalized learning rate.

Training: the non-saturating logistic loss; R1 on real images every 16 steps and the
path-length penalty every 4 (lazy regularization, with Adam's lr and betas corrected for
the extra steps); style mixing with probability 0.9; the EMA of G ramped up as ADA's.

Where this differs from the paper's code, to stay short on a CPU: the [1, 3, 3, 1]
resampling filter is bilinear upsampling and 2x2 average pooling (the same filter up
and a box down, with the borders replicated rather than zero-padded), and the mapping
network has 2 layers, as ADA's configurations for small data sets (cifar, auto) have.
"""
import math

import numpy as np

from ... import functional as F
from ... import nn, optim
from ...autograd import grad, no_grad
from ...nn import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, ModulatedConv2d
from ...tensor import Generator, Tensor, randn, zeros
from ..model import Model
from ..steps import frozen, in_eval_mode, update

SQRT2 = math.sqrt(2)
RESOLUTIONS = (8, 16, 32, 64, 128)


def lrelu(x):
    """Leaky ReLU times sqrt(2), the gain that keeps the activations' scale (as StyleGAN's)."""
    return F.leaky_relu(x, 0.2, gain=SQRT2)


def channels_at(resolution, width, max_channels):
    """Channels of the layers at a resolution: `width` at 32 px, doubling as the resolution
    halves, up to `max_channels`."""
    return min(max_channels, width * 32 // resolution)


# --- generator -------------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """z -> w: z normalized to unit second moment, then `layers` equalized linear layers at
    lr multiplier 0.01. Keeps w_avg, the running mean of w (for truncation), as a buffer."""

    def __init__(self, z_dim, w_dim, layers=2, w_avg_beta=0.995):
        super().__init__()
        self.w_avg_beta = w_avg_beta
        self.layers = nn.ModuleList([EqualizedLinear(z_dim if i == 0 else w_dim, w_dim, lr_multiplier=0.01)
                                     for i in range(layers)])
        self.register_buffer("w_avg", zeros(w_dim))

    def forward(self, z, truncation=1.0, track_w_avg=False):
        x = z / F.sqrt(F.mean(z * z, axis=1, keepdims=True) + 1e-8)
        for layer in self.layers:
            x = lrelu(layer(x))
        if track_w_avg:
            with no_grad():
                self.w_avg.copy_(self.w_avg_beta * self.w_avg._data + (1 - self.w_avg_beta) * x._data.mean(axis=0))
        if truncation != 1.0:  # pull w toward the mean: less variety, fewer odd samples
            x = self.w_avg.detach() + truncation * (x - self.w_avg.detach())
        return x


class SynthesisLayer(nn.Module):
    """Upsample (optionally), modulated 3x3 conv, per-pixel noise of learned strength, bias, lrelu."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, up=False):
        super().__init__()
        self.up, self.resolution = up, resolution
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim)
        self.noise_strength = nn.Parameter(np.zeros((), dtype=np.float32))
        self.bias = nn.Parameter(np.zeros(out_channels, dtype=np.float32))
        self.register_buffer("noise_const", randn(1, 1, resolution, resolution, generator=Generator(resolution)))

    def forward(self, x, w, noise):
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear")
        x = self.conv(x, w)
        if noise is None:  # "const" noise: the same for every sample and call (pictures, inference)
            noise = self.noise_const
        else:               # noise drawn per sample from the given generator (training)
            noise = randn(x.shape[0], 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device, generator=noise)
        return lrelu(x + noise * self.noise_strength + F.reshape(self.bias, (1, -1, 1, 1)))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation, plus a bias."""

    def __init__(self, in_channels, image_channels, w_dim):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(np.zeros(image_channels, dtype=np.float32))

    def forward(self, x, w):
        return self.conv(x, w) + F.reshape(self.bias, (1, -1, 1, 1))


class SynthesisBlock(nn.Module):
    """One resolution: (upsample and) two styled convolutions, and its toRGB image added to
    the upsampled image of the blocks before. At 4x4 it starts from a learned constant."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, image_channels):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(np.random.default_rng(0).standard_normal((out_channels, 4, 4))
                                      .astype(np.float32))
            self.convs = nn.ModuleList([SynthesisLayer(out_channels, out_channels, w_dim, 4)])
        else:
            self.convs = nn.ModuleList([SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True),
                                        SynthesisLayer(out_channels, out_channels, w_dim, resolution)])
        self.torgb = ToRGB(out_channels, image_channels, w_dim)

    @property
    def num_ws(self):
        return len(self.convs)

    def forward(self, x, image, ws, noise):
        """ws: (N, num_ws + 1, w_dim), the last one for toRGB (shared with the next block's first conv)."""
        if self.resolution == 4:
            x = F.broadcast_to(F.unsqueeze(self.const, 0), (ws.shape[0],) + self.const.shape)
        for i, conv in enumerate(self.convs):
            x = conv(x, ws[:, i], noise)
        rgb = self.torgb(x, ws[:, len(self.convs)])
        image = rgb if image is None else F.interpolate(image, scale_factor=2, mode="bilinear") + rgb
        return x, image


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim, resolution, image_channels, width, max_channels):
        super().__init__()
        resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        self.blocks = nn.ModuleList([
            SynthesisBlock(channels_at(max(r // 2, 4), width, max_channels), channels_at(r, width, max_channels),
                           w_dim, r, image_channels) for r in resolutions])
        self.num_ws = sum(block.num_ws for block in self.blocks) + 1  # + the last toRGB's

    def forward(self, ws, noise=None):
        x = image = None
        start = 0
        for block in self.blocks:
            x, image = block(x, image, ws[:, start:start + block.num_ws + 1], noise)
            start += block.num_ws
        return image


class StyleGenerator(nn.Module):
    """z (N, z_dim) -> images (N, C, R, R). `noise`: a Generator to draw per-pixel noise
    from, or None for each layer's fixed noise."""

    def __init__(self, z_dim, w_dim, resolution, image_channels, mapping_layers, width, max_channels):
        super().__init__()
        self.z_dim = z_dim
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        self.synthesis = SynthesisNetwork(w_dim, resolution, image_channels, width, max_channels)

    @property
    def num_ws(self):
        return self.synthesis.num_ws

    def ws(self, z, truncation=1.0, track_w_avg=False):
        """z -> (N, num_ws, w_dim): the same w for every layer."""
        w = self.mapping(z, truncation, track_w_avg)
        return F.broadcast_to(F.unsqueeze(w, 1), (w.shape[0], self.num_ws, w.shape[1]))

    def forward(self, z, truncation=1.0, noise=None):
        return self.synthesis(self.ws(z, truncation), noise)


# --- discriminator ---------------------------------------------------------------------------

class DiscriminatorBlock(nn.Module):
    """Two 3x3 convolutions, the second followed by 2x downsampling, beside a 1x1 skip of the
    downsampled input; their sum scaled by sqrt(1/2) keeps the variance (residual)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, padding=1)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, padding=1)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        skip = self.skip(F.avg_pool2d(x, 2))
        x = lrelu(self.conv0(x))
        x = lrelu(F.avg_pool2d(self.conv1(x), 2))
        return (x + skip) * math.sqrt(0.5)


class ResidualDiscriminator(nn.Module):
    def __init__(self, resolution, image_channels, width, max_channels, mbstd_group=4):
        super().__init__()
        top = channels_at(resolution, width, max_channels)
        self.fromrgb = EqualizedConv2d(image_channels, top, 1)
        resolutions = [2 ** i for i in range(int(math.log2(resolution)), 2, -1)]  # R, R/2, ..., 8
        self.blocks = nn.Sequential(*[DiscriminatorBlock(channels_at(r, width, max_channels),
                                                         channels_at(r // 2, width, max_channels))
                                      for r in resolutions])
        last = channels_at(4, width, max_channels)
        self.mbstd = MinibatchStdDev(group_size=mbstd_group)
        self.conv = EqualizedConv2d(last + 1, last, 3, padding=1)
        self.fc = EqualizedLinear(last * 16, last)
        self.out = EqualizedLinear(last, 1)

    def forward(self, x):
        x = self.blocks(lrelu(self.fromrgb(x)))
        x = lrelu(self.conv(self.mbstd(x)))
        return self.out(lrelu(self.fc(F.flatten(x, 1))))


# --- the model ---------------------------------------------------------------------------------

class StyleGAN2(Model):
    name = "stylegan2"
    summary = "StyleGAN2: style-based G, residual D, lazy R1 and path-length penalties (32 or 64 px)"
    defaults = {"data": "fashion-mnist", "resolution": 32, "steps": 6000, "batch_size": 32}
    w_space = True
    # ADA's cifar configuration, sized for a CPU: lr 0.0025, betas (0, 0.99), R1 gamma 0.01
    options = {"z_dim": 128, "w_dim": 128, "mapping_layers": 2, "width": 32, "max_channels": 128,
               "lr": 0.0025, "betas": (0.0, 0.99), "r1_gamma": 0.01, "r1_every": 16,
               "pl_weight": 2.0, "pl_every": 4, "pl_batch_shrink": 2, "pl_decay": 0.01,
               "style_mixing": 0.9, "ema_kimg": 10.0, "ema_rampup": 0.05}

    def __init__(self, config, data, noise=None):
        shape = tuple(data.shape)
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in RESOLUTIONS:
            raise ValueError(f"stylegan2 trains on square images of 8 to 128 pixels, a power of two, got samples of "
                             f"shape {shape}: pass --resolution 32 (Fashion-MNIST is padded to 32) "
                             f"or 64")
        super().__init__(config, data, noise)
        self.steps_done, self.pl_mean, self.penalties = 0, 0.0, {}
        self.fixed_z = randn(64, config["z_dim"], device=self.device,
                             generator=Generator(config["seed"] + 2, self.device))

    # --- networks and optimizers ----------------------------------------------------------

    def build_networks(self):
        cfg = self.config
        channels, resolution = self.data.shape[0], self.data.shape[1]
        G = StyleGenerator(cfg["z_dim"], cfg["w_dim"], resolution, channels, cfg["mapping_layers"], cfg["width"],
                           cfg["max_channels"])
        D = ResidualDiscriminator(resolution, channels, cfg["width"], cfg["max_channels"])
        return {"G": G, "D": D}

    def build_optimizers(self):
        """Adam with lazy regularization's correction: a network updated by its loss every
        step and by its regularizer every k steps takes k/(k+1) of the rate and betas^(k/(k+1))."""
        optimizers = {}
        for name, every in (("G", self.config["pl_every"]), ("D", self.config["r1_every"])):
            ratio = every / (every + 1)
            betas = tuple(b ** ratio for b in self.config["betas"])
            optimizers[name] = optim.Adam(self.nets[name].parameters(), lr=self.config["lr"] * ratio, betas=betas,
                                          eps=1e-8)
        return optimizers

    def ema_decay(self, updates):
        """ADA's G EMA: a half-life of ema_kimg thousand images, ramped up over the first
        images (at most ema_rampup of those seen so far)."""
        batch = self.config["batch_size"]
        half_life = min(self.config["ema_kimg"] * 1000, updates * batch * self.config["ema_rampup"])
        return 0.5 ** (batch / max(half_life, 1e-8))

    # --- training -------------------------------------------------------------------------------

    def z(self, n):
        return randn(n, self.config["z_dim"], device=self.device, generator=self.noise)

    def mixed_ws(self, n, track_w_avg=False):
        """ws for n samples with style mixing: with probability style_mixing, the layers from
        a random cutoff on take the w of a second z (so that no layer relies on its neighbours
        sharing its style)."""
        G = self.nets["G"]
        ws = G.ws(self.z(n), track_w_avg=track_w_avg)
        u, cutoff = self.noise.uniform((2,), np.float64)
        if u < self.config["style_mixing"]:
            cutoff = 1 + int(cutoff * (G.num_ws - 1))
            other = G.ws(self.z(n))
            ws = F.concat([ws[:, :cutoff], other[:, cutoff:]], axis=1)
        return ws

    def path_length_penalty(self, n):
        """(|J_w^T y| - a)^2 for random image-space directions y: the generator's Jacobian
        with respect to w should scale every direction alike. `a` tracks the lengths' mean."""
        G = self.nets["G"]
        ws = self.mixed_ws(n)
        images = G.synthesis(ws, self.noise)
        directions = randn(*images.shape, device=self.device, generator=self.noise) / math.sqrt(
            images.shape[2] * images.shape[3])
        (g,) = grad(F.sum(images * directions), ws, create_graph=True)
        lengths = F.sqrt(F.mean(F.sum(g * g, axis=2), axis=1))
        self.pl_mean += self.config["pl_decay"] * (float(F.mean(lengths).item()) - self.pl_mean)
        return F.mean((lengths - self.pl_mean) ** 2)

    def r1_penalty(self, real):
        """gamma/2 E||grad D(x)||^2 on real images."""
        real = real.detach().requires_grad_()
        (g,) = grad(F.sum(self.nets["D"](real)), real, create_graph=True)
        return (self.config["r1_gamma"] / 2) * F.mean(F.sum(g * g, axis=(1, 2, 3)))

    def train_step(self, batches):
        G, D = self.nets["G"], self.nets["D"]
        cfg = self.config
        real = next(batches)["x"]
        n = len(real)
        losses = {}
        # G: fool D with mixed styles; every pl_every steps, the path-length penalty
        with frozen(D):
            loss_g = F.mean(F.softplus(-D(G.synthesis(self.mixed_ws(n), self.noise))))
            update(self.optimizers["G"], loss_g)
        losses["loss_g"] = loss_g.item()
        if self.steps_done % cfg["pl_every"] == 0 and cfg["pl_weight"]:
            penalty = self.path_length_penalty(max(n // cfg["pl_batch_shrink"], 1))
            update(self.optimizers["G"], penalty * (cfg["pl_weight"] * cfg["pl_every"]))
            self.penalties["path_length"] = penalty.item()
        # D: real against fake; every r1_every steps, R1 on the real images
        with no_grad():
            fake = G.synthesis(self.mixed_ws(n, track_w_avg=True), self.noise)
        loss_d = F.mean(F.softplus(D(fake))) + F.mean(F.softplus(-D(real)))
        update(self.optimizers["D"], loss_d)
        losses["loss_d"] = loss_d.item()
        if self.steps_done % cfg["r1_every"] == 0 and cfg["r1_gamma"]:
            penalty = self.r1_penalty(real)
            update(self.optimizers["D"], penalty * cfg["r1_every"])
            self.penalties["r1"] = penalty.item()
        self.steps_done += 1
        return {**losses, **self.penalties}  # each penalty as last computed, so that every step logs the same names

    def state_dict(self):
        return {**super().state_dict(), "steps_done": self.steps_done, "pl_mean": self.pl_mean,
                "penalties": dict(self.penalties)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.steps_done, self.pl_mean, self.penalties = state["steps_done"], state["pl_mean"], dict(state["penalties"])

    # --- pictures, inference and editing ---------------------------------------------------------

    def preview(self):
        return self.generate_from_ws(self.nets["G"].ws(self.fixed_z)), None

    def generate_from_ws(self, ws, batch_size=250):
        """Images (NumPy) from ws (N, num_ws, w_dim), with each layer's fixed noise, in eval mode."""
        G = self.nets["G"]
        with in_eval_mode(G), no_grad():
            chunks = [G.synthesis(Tensor(ws[i:i + batch_size]).to(self.device)).numpy()
                      for i in range(0, len(ws), batch_size)]
        return np.concatenate(chunks)

    def ws_of(self, n, seed=0, truncation=1.0):
        """(n, num_ws, w_dim) styles of n seeded z (NumPy), truncated toward the mean w."""
        G = self.nets["G"]
        with no_grad():
            z = randn(n, self.config["z_dim"], device=self.device, generator=Generator(seed, self.device))
            return G.ws(z, truncation).numpy()

    def sample(self, n, labels=None, seed=0, batch_size=250, truncation=1.0):
        if labels is not None:
            raise ValueError("stylegan2 is not class-conditional: --label does not apply")
        if not 0 <= truncation <= 1:
            raise ValueError(f"--truncation must be in [0, 1] (1: none), got {truncation}")
        return self.generate_from_ws(self.ws_of(n, seed, truncation), batch_size)

    def latent_walk(self, n, frames, seed=0, keyframes=3, truncation=1.0):
        """n walks through W, linearly from keyframe to keyframe and back to the first (W is
        where StyleGAN's paths are short and its images change smoothly)."""
        keys = [self.ws_of(n, seed + i, truncation) for i in range(keyframes)]
        keys.append(keys[0])
        return np.stack([self.generate_from_ws(keys[int(t)] + (t - int(t)) * (keys[int(t) + 1] - keys[int(t)]))
                         for t in np.linspace(0, keyframes, frames, endpoint=False)])

    def project(self, target, steps=300, seed=0, lr=0.1):
        """The w whose image is closest to `target` (C, H, W) in [-1, 1]: Adam on one w for
        every layer, from the mean w, with noise on w that fades over the first three
        quarters of the steps (so that it explores before it settles), as ADA's projector.
        Closeness is the pixels' mean squared error: ADA's LPIPS needs VGG weights that
        ganforge cannot ship. Returns (ws (num_ws, w_dim), image, the loss at each step)."""
        G = self.nets["G"]
        target = np.asarray(target, dtype=np.float32)
        if target.shape != tuple(self.data.shape):
            raise ValueError(f"project: the image has shape {target.shape}; this model makes {tuple(self.data.shape)}")
        generator = Generator(seed, self.device)
        with no_grad():
            samples = G.mapping(randn(2000, self.config["z_dim"], device=self.device, generator=generator)).numpy()
        w_mean, w_std = samples.mean(axis=0), float(np.sqrt(((samples - samples.mean(axis=0)) ** 2).sum(1).mean()))
        w = Tensor(w_mean[None].copy(), requires_grad=True).to(self.device)
        opt = optim.Adam([w], lr=lr, betas=(0.9, 0.999))
        goal, losses = Tensor(target[None]).to(self.device), []
        with in_eval_mode(G):
            for step in range(steps):
                fade = max(0.0, 1 - step / (0.75 * steps)) ** 2
                noise = randn(*w.shape, device=self.device, generator=generator) * (0.05 * w_std * fade)
                ws = F.broadcast_to(F.unsqueeze(w + noise, 1), (1, G.num_ws, w.shape[1]))
                loss = F.mean((G.synthesis(ws) - goal) ** 2)
                update(opt, loss)
                losses.append(loss.item())
        ws = np.repeat(w.numpy(), G.num_ws, axis=0)
        return ws, self.generate_from_ws(ws[None])[0], losses

    def style_mixing_grid(self, rows=4, columns=4, seed=0, truncation=1.0):
        """The paper's figure: row sources (left column) take the coarse (4-8 px), middle
        (16-32 px) or fine (the rest) styles of column sources (top row). Returns (images,
        grid columns): the first row the column sources, then per row source its own image
        and the mixes with each column source, for each of the three ranges."""
        row_ws, column_ws = self.ws_of(rows, seed, truncation), self.ws_of(columns, seed + 1, truncation)
        ranges = self.style_ranges()
        blank = np.full((1,) + tuple(self.data.shape), -1.0, dtype=np.float32)
        images = [blank, self.generate_from_ws(column_ws)]
        for name, layers in ranges.items():
            for r in range(rows):
                mixed = np.repeat(row_ws[r:r + 1], columns, axis=0)
                mixed[:, layers] = column_ws[:, layers]
                images += [self.generate_from_ws(row_ws[r:r + 1]), self.generate_from_ws(mixed)]
        return np.concatenate(images), columns + 1

    def style_ranges(self):
        """{coarse, middle, fine}: the w indices of the layers at 4-8 px, up to half the
        resolution, and at the full resolution (4-8, 16-32 and 64-1024 px at 1024 px in the paper)."""
        ranges, start = {"coarse": [], "middle": [], "fine": []}, 0
        top = self.data.shape[1]
        for block in self.nets["G"].synthesis.blocks:
            name = "coarse" if block.resolution <= 8 else "middle" if block.resolution < top else "fine"
            ranges[name] += list(range(start, start + block.num_ws))
            start += block.num_ws
        ranges["fine"] += [start]  # the last toRGB
        return {name: layers for name, layers in ranges.items() if layers}


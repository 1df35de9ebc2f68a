"""StyleGAN2 in PyTorch: the twin of ganforge/gan/models/stylegan2.py, layer for layer (so
that the state dicts share their keys), for the step benchmark (bench/in_turns.py
stylegan2) and the parity tests (tests/test_torch_parity.py). Its step is ganforge's: G's
logistic loss with style mixing, the path-length penalty every 4 steps, D's logistic loss,
R1 every 16, each an Adam step with the lazy-regularization correction."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SQRT2 = math.sqrt(2)


def lrelu(x):
    return F.leaky_relu(x, 0.2) * SQRT2


def channels_at(resolution, width, max_channels):
    return min(max_channels, width * 32 // resolution)


class EqualizedLinear(nn.Module):
    def __init__(self, in_features, out_features, bias=True, lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_multiplier)) if bias else None
        self.weight_gain, self.lr_multiplier = lr_multiplier / math.sqrt(in_features), lr_multiplier

    def forward(self, x):
        return F.linear(x, self.weight * self.weight_gain, None if self.bias is None else self.bias * self.lr_multiplier)


class EqualizedConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain, self.padding = 1 / math.sqrt(in_channels * kernel_size ** 2), padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """Fused (a grouped convolution over per-sample weights) or unfused (styles on the input,
    the shared weight, demodulation on the output); None: unfused in training, fused in
    eval, as ganforge's and stylegan2-ada-pytorch's."""

    def __init__(self, in_channels, out_channels, kernel_size, style_dim, demodulate=True, eps=1e-8, fused=None):
        super().__init__()
        self.affine = EqualizedLinear(style_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.demodulate, self.eps, self.fused = demodulate, eps, fused

    def forward(self, x, w):
        n, c, h, wd = x.shape
        o, _, k, _ = self.weight.shape
        styles, weight = self.affine(w), self.weight * self.weight_gain
        demod = None
        if self.demodulate:
            demod = torch.rsqrt((styles * styles) @ (weight * weight).sum(dim=(2, 3)).T + self.eps)
        if self.fused if self.fused is not None else not self.training:
            scale = styles.reshape(n, 1, c, 1, 1)
            if demod is not None:
                scale = scale * demod.reshape(n, o, 1, 1, 1)
            y = F.conv2d(x.reshape(1, n * c, h, wd), (weight[None] * scale).reshape(n * o, c, k, k), padding=k // 2,
                         groups=n)
            return y.reshape(n, o, *y.shape[2:])
        y = F.conv2d(x * styles.reshape(n, c, 1, 1), weight, padding=k // 2)
        return y if demod is None else y * demod.reshape(n, o, 1, 1)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim, w_dim, layers=2, w_avg_beta=0.995):
        super().__init__()
        self.w_avg_beta = w_avg_beta
        self.layers = nn.ModuleList([EqualizedLinear(z_dim if i == 0 else w_dim, w_dim, lr_multiplier=0.01)
                                     for i in range(layers)])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, truncation=1.0, track_w_avg=False):
        x = z / torch.sqrt((z * z).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = lrelu(layer(x))
        if track_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(self.w_avg_beta * self.w_avg + (1 - self.w_avg_beta) * x.mean(dim=0))
        if truncation != 1.0:
            x = self.w_avg + truncation * (x - self.w_avg)
        return x


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, up=False):
        super().__init__()
        self.up = up
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x, w, noise):
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)
        noise = self.noise_const if noise is None else torch.randn(x.shape[0], 1, *x.shape[2:])
        return lrelu(x + noise * self.noise_strength + self.bias.reshape(1, -1, 1, 1))


class ToRGB(nn.Module):
    def __init__(self, in_channels, image_channels, w_dim):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x, w):
        return self.conv(x, w) + self.bias.reshape(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, image_channels):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.convs = nn.ModuleList([SynthesisLayer(out_channels, out_channels, w_dim, 4)])
        else:
            self.convs = nn.ModuleList([SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True),
                                        SynthesisLayer(out_channels, out_channels, w_dim, resolution)])
        self.torgb = ToRGB(out_channels, image_channels, w_dim)

    def forward(self, x, image, ws, noise):
        if self.resolution == 4:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
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
        self.num_ws = sum(len(b.convs) for b in self.blocks) + 1

    def forward(self, ws, noise=None):
        x = image = None
        start = 0
        for block in self.blocks:
            x, image = block(x, image, ws[:, start:start + len(block.convs) + 1], noise)
            start += len(block.convs)
        return image


class StyleGenerator(nn.Module):
    def __init__(self, z_dim=128, w_dim=128, resolution=32, image_channels=1, mapping_layers=2, width=32,
                 max_channels=128):
        super().__init__()
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        self.synthesis = SynthesisNetwork(w_dim, resolution, image_channels, width, max_channels)

    def ws(self, z, truncation=1.0, track_w_avg=False):
        w = self.mapping(z, truncation, track_w_avg)
        return w[:, None].expand(-1, self.synthesis.num_ws, -1)


class DiscriminatorBlock(nn.Module):
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


class MinibatchStdDev(nn.Module):
    def __init__(self, group_size=4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        y = x.reshape(g, n // g, 1, c, h, w)
        y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8).mean(dim=(2, 3, 4))
        y = y.reshape(1, n // g, 1, 1, 1).expand(g, -1, -1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y], dim=1)


class ResidualDiscriminator(nn.Module):
    def __init__(self, resolution=32, image_channels=1, width=32, max_channels=128):
        super().__init__()
        self.fromrgb = EqualizedConv2d(image_channels, channels_at(resolution, width, max_channels), 1)
        resolutions = [2 ** i for i in range(int(math.log2(resolution)), 2, -1)]
        self.blocks = nn.Sequential(*[DiscriminatorBlock(channels_at(r, width, max_channels),
                                                         channels_at(r // 2, width, max_channels))
                                      for r in resolutions])
        last = channels_at(4, width, max_channels)
        self.mbstd = MinibatchStdDev()
        self.conv = EqualizedConv2d(last + 1, last, 3, padding=1)
        self.fc = EqualizedLinear(last * 16, last)
        self.out = EqualizedLinear(last, 1)

    def forward(self, x):
        x = self.blocks(lrelu(self.fromrgb(x)))
        x = lrelu(self.conv(self.mbstd(x)))
        return self.out(lrelu(self.fc(x.flatten(1))))


def step_fn(batch=32, resolution=32, channels=1, z_dim=128, lr=0.0025, r1_gamma=0.01, pl_weight=2.0,
            mixing=0.9):
    """One training step of ganforge's StyleGAN2 recipe, as a function of nothing: it cycles
    through the 16-step period of the lazy regularizers, so a median over 16k calls is the
    step with the regularizers amortized."""
    G, D = StyleGenerator(z_dim, resolution=resolution, image_channels=channels), \
        ResidualDiscriminator(resolution, channels)

    def adam(net, every):
        ratio = every / (every + 1)
        return torch.optim.Adam(net.parameters(), lr=lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
    opt_g, opt_d = adam(G, 4), adam(D, 16)
    real = torch.rand(batch, channels, resolution, resolution) * 2 - 1
    state = {"step": 0, "pl_mean": 0.0}

    def mixed_ws(n, track=False):
        ws = G.ws(torch.randn(n, z_dim), track_w_avg=track)
        if torch.rand(()) < mixing:
            cutoff = int(torch.randint(1, ws.shape[1], ()))
            ws = torch.cat([ws[:, :cutoff], G.ws(torch.randn(n, z_dim))[:, cutoff:]], dim=1)
        return ws

    def update(opt, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step():
        D.requires_grad_(False)
        update(opt_g, F.softplus(-D(G.synthesis(mixed_ws(batch), noise=True))).mean())
        if state["step"] % 4 == 0:
            ws = mixed_ws(batch // 2)
            images = G.synthesis(ws, noise=True)
            directions = torch.randn_like(images) / math.sqrt(resolution * resolution)
            (g,) = torch.autograd.grad((images * directions).sum(), ws, create_graph=True)
            lengths = g.square().sum(2).mean(1).sqrt()
            state["pl_mean"] += 0.01 * (lengths.mean().item() - state["pl_mean"])
            update(opt_g, ((lengths - state["pl_mean"]) ** 2).mean() * (pl_weight * 4))
        D.requires_grad_(True)
        with torch.no_grad():
            fake = G.synthesis(mixed_ws(batch, track=True), noise=True)
        update(opt_d, F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean())
        if state["step"] % 16 == 0:
            x = real.detach().requires_grad_()
            (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            update(opt_d, (r1_gamma / 2) * g.square().sum((1, 2, 3)).mean() * 16)
        state["step"] += 1
    return step

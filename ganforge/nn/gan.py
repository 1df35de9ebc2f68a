"""Layers from the GAN literature: minibatch discrimination and minibatch standard
deviation (against mode collapse), and StyleGAN's equalized learning rate, modulated
convolution, noise injection and AdaIN."""
import math

import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..ops.norm import per_channel
from ..tensor import get_default_dtype, randn
from . import init
from .module import Module, Parameter


class MinibatchDiscrimination(Module):
    """Salimans et al. 2016: features that tell the discriminator how close each sample is
    to the others in its batch, so a collapsed generator is easy to spot.

    x (N, in_features) -> (N, in_features + out_features)."""

    def __init__(self, in_features, out_features, kernel_dims=5):
        super().__init__()
        self.in_features, self.out_features, self.kernel_dims = in_features, out_features, kernel_dims
        self.T = Parameter(np.zeros((in_features, out_features * kernel_dims), dtype=get_default_dtype()))
        init.normal_(self.T, 0.0, 0.1)

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self!r}: expected an (N, {self.in_features}) input, got shape {x.shape}")
        m = F.reshape(x @ self.T, (x.shape[0], self.out_features, self.kernel_dims))
        l1 = F.sum(F.abs(F.unsqueeze(m, 1) - F.unsqueeze(m, 0)), axis=3)  # (N, N, out): L1 between samples
        closeness = F.sum(F.exp(-l1), axis=1) - 1                         # minus each sample's own exp(0)
        return F.concat([x, closeness], axis=1)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, kernel_dims={self.kernel_dims}"


class MinibatchStdDev(Module):
    """Karras et al. (ProGAN/StyleGAN): append the standard deviation of features across
    groups of samples as extra channels. x (N, C, H, W) -> (N, C + num_channels, H, W)."""

    def __init__(self, group_size=4, num_channels=1, eps=1e-8):
        super().__init__()
        self.group_size, self.num_channels, self.eps = group_size, num_channels, eps

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        f = self.num_channels
        if n % g or c % f:
            raise ValueError(f"{self!r}: the batch {n} must be divisible by the group size {g} and the "
                             f"channels {c} by num_channels {f}")
        y = F.reshape(x, (g, n // g, f, c // f, h, w))
        y = F.sqrt(F.var(y, axis=0, ddof=0) + self.eps)                  # (n/g, f, c/f, h, w): std over each group
        y = F.mean(y, axis=(2, 3, 4))                             # (n/g, f)
        y = F.broadcast_to(F.reshape(y, (1, n // g, f, 1, 1)), (g, n // g, f, h, w))
        return F.concat([x, F.reshape(y, (n, f, h, w))], axis=1)

    def extra_repr(self):
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class EqualizedLinear(Module):
    """A linear layer whose weights are N(0, 1) and scaled by 1/sqrt(fan_in) at run time, so
    that Adam's per-parameter step sizes treat every layer alike (Karras et al.)."""

    def __init__(self, in_features, out_features, bias=True, lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.in_features, self.out_features, self.lr_multiplier = in_features, out_features, lr_multiplier
        self.weight = Parameter(np.zeros((out_features, in_features), dtype=get_default_dtype()))
        init.normal_(self.weight, 0.0, 1.0 / lr_multiplier)
        self.bias = Parameter(np.full(out_features, bias_init / lr_multiplier, dtype=get_default_dtype())) \
            if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)

    def forward(self, x):
        bias = None if self.bias is None else self.bias * self.lr_multiplier
        return F.linear(x, self.weight * self.weight_gain, bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, lr_multiplier={self.lr_multiplier}"


class EqualizedConv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = Parameter(np.zeros((out_channels, in_channels, kernel_size, kernel_size),
                                         dtype=get_default_dtype()))
        init.normal_(self.weight)
        self.bias = Parameter(np.zeros(out_channels, dtype=get_default_dtype())) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"


class ModulatedConv2d(Module):
    """StyleGAN2's convolution: a style vector scales the weight's input channels per
    sample (modulation), and each output channel is renormalized to unit norm
    (demodulation), instead of normalizing activations. forward(x (N, C, H, W), w (N, style_dim)).

    Two forms of the same function, as stylegan2-ada-pytorch has: `fused` builds each
    sample's weight and runs one grouped convolution with a group per sample (the paper's
    appendix); unfused scales the input channels by the styles, runs one ordinary
    convolution with the shared weight, and scales the output channels by the
    demodulation factors. None picks unfused in training and fused in eval, as ADA does
    (the unfused form's elementwise work is on activations, not on N copies of the weight).
    Either way the demodulation factors come from a matrix product, sum_c s_c^2 sum_k W_ock^2,
    without forming the per-sample weights for it."""

    def __init__(self, in_channels, out_channels, kernel_size, style_dim, demodulate=True, eps=1e-8, fused=None):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.eps, self.fused = demodulate, eps, fused
        self.affine = EqualizedLinear(style_dim, in_channels, bias_init=1.0)
        self.weight = Parameter(np.zeros((out_channels, in_channels, kernel_size, kernel_size),
                                         dtype=get_default_dtype()))
        init.normal_(self.weight)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x, w):
        n, c, h, wd = x.shape
        if c != self.in_channels or w.shape[0] != n:
            raise ValueError(f"{self!r}: got input {x.shape} and styles {w.shape}; expected (N, "
                             f"{self.in_channels}, H, W) and (N, style_dim)")
        styles = self.affine(w)                                                       # (N, C)
        weight = self.weight * self.weight_gain                                      # (O, C, k, k)
        demod = None
        if self.demodulate:  # 1 / |W s| per sample and output channel: (N, C) @ (C, O)
            energy = F.matmul(styles * styles, F.transpose(F.sum(weight * weight, axis=(2, 3))))
            demod = 1 / F.sqrt(energy + self.eps)                                     # (N, O)
        k, o = self.kernel_size, self.out_channels
        if self.fused if self.fused is not None else not self.training:
            scale = F.reshape(styles, (n, 1, c, 1, 1))
            if demod is not None:
                scale = scale * F.reshape(demod, (n, o, 1, 1, 1))
            y = F.conv2d(F.reshape(x, (1, n * c, h, wd)), F.reshape(F.unsqueeze(weight, 0) * scale, (n * o, c, k, k)),
                         padding=k // 2, groups=n)
            return F.reshape(y, (n, o) + y.shape[2:])
        y = F.conv2d(x * F.reshape(styles, (n, c, 1, 1)), weight, padding=k // 2)
        return y if demod is None else y * F.reshape(demod, (n, o, 1, 1))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"demodulate={self.demodulate}")


class NoiseInjection(Module):
    """Adds per-pixel Gaussian noise, scaled by a learned per-channel strength (zero at first)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = Parameter(np.zeros(channels, dtype=get_default_dtype()))

    def forward(self, x, noise=None):
        if noise is None:
            noise = randn(x.shape[0], 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
        return x + per_channel(self.weight, x.ndim) * noise


class AdaIN(Module):
    """Adaptive instance normalization (Huang & Belongie; StyleGAN): normalize each channel
    of each sample, then scale and shift it by values predicted from a style vector."""

    def __init__(self, channels, style_dim, eps=1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.affine = EqualizedLinear(style_dim, 2 * channels)
        with no_grad():  # the scale starts at 1 and the shift at 0: AdaIN begins as plain normalization
            self.affine.bias.copy_(np.concatenate([np.ones(channels), np.zeros(channels)]))

    def forward(self, x, w):
        style = F.reshape(self.affine(w), (x.shape[0], 2, self.channels, 1, 1))
        scale, shift = style[:, 0], style[:, 1]
        return F.instance_norm(x, eps=self.eps) * scale + shift

    def extra_repr(self):
        return f"{self.channels}"

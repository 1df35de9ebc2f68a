"""Layers: each a Module holding its parameters and calling one functional op.

The activations and Dropout accept PyTorch's `inplace=` flag and ignore it: ganforge
never overwrites a layer's input, which the graph may still need for the gradient, so
`inplace=True` costs the memory it would have saved in PyTorch and changes nothing else.

Initialization follows PyTorch's defaults, so that a ganforge network and a PyTorch one
start from the same distribution. Input checks name the layer and the shapes.
"""
import math

import numpy as np

from .. import distributed
from .. import functional as F
from ..autograd import no_grad
from ..ops.conv import pair
from ..tensor import get_default_dtype, zeros
from . import init
from .module import Module, Parameter


def _empty(*shape):
    return Parameter(np.zeros(shape, dtype=get_default_dtype()))


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty(out_features, in_features)
        self.bias = _empty(out_features) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        self._check_input(x)
        return F.linear(x, self.weight, self.bias)

    def _check_input(self, x):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: input shape {x.shape} should end in {self.in_features} features")

    def fused_with(self, following):
        """This layer and a LeakyReLU (slope in [0, 1]) or ReLU after it as one op, when
        neither is a subclass or has hooks that would see the skipped call."""
        if type(self) is not Linear or self._forward_pre_hooks or following._forward_pre_hooks:
            return None
        if type(following) is ReLU:
            slope = 0.0
        elif type(following) is LeakyReLU and 0 <= following.negative_slope <= 1:
            slope = following.negative_slope
        else:
            return None

        def linear_then_activation(x):
            self._check_input(x)
            return F.linear_leaky_relu(x, self.weight, self.bias, slope)
        return linear_then_activation

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _ConvNd(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 weight_shape):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: in_channels {in_channels} and out_channels {out_channels} "
                             f"must both be divisible by groups {groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair(kernel_size, "kernel_size"), pair(stride, "stride")
        self.padding, self.dilation, self.groups = pair(padding, "padding"), pair(dilation, "dilation"), groups
        self.weight = _empty(*weight_shape)
        self.bias = _empty(out_channels) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.fan_in_and_fan_out(self.weight)
            init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def _check_input(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected an (N, {self.in_channels}, H, W) input, got shape {x.shape}")

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """padding_mode 'zeros' (the default) or 'reflect' (pads by reflection before a valid conv)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        kh, kw = pair(kernel_size, "kernel_size")
        super().__init__(in_channels, out_channels, (kh, kw), stride, padding, dilation, groups, bias,
                         (out_channels, in_channels // groups, kh, kw))
        if padding_mode not in ("zeros", "reflect"):
            raise ValueError(f"padding_mode must be 'zeros' or 'reflect', got {padding_mode!r}")
        self.padding_mode = padding_mode

    def forward(self, x):
        self._check_input(x)
        padding = self.padding
        if self.padding_mode == "reflect":
            (ph, pw), padding = self.padding, 0
            x = F.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="reflect")
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1):
        kh, kw = pair(kernel_size, "kernel_size")
        super().__init__(in_channels, out_channels, (kh, kw), stride, padding, dilation, groups, bias,
                         (in_channels, out_channels // groups, kh, kw))
        self.output_padding = pair(output_padding, "output_padding")

    def forward(self, x):
        self._check_input(x)
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.dilation, self.groups)


class _BatchNorm(Module):
    expected_ndim = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype=get_default_dtype())) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=get_default_dtype())) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features))
            self.register_buffer("running_var", zeros(num_features) + 1)
            self.register_buffer("num_batches_tracked", zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = None
        self.world = None  # the ranks whose samples it normalizes over (distributed.synchronize_batch_norm)

    def forward(self, x):
        if x.ndim not in self.expected_ndim or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input with {self.num_features} channels and "
                             f"{' or '.join(map(str, self.expected_ndim))} dimensions, got shape {x.shape}")
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
        if self.training and self.world is not None:
            return distributed.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                          self.momentum, self.eps, self.world)
        # Batch statistics while training (or when no running ones are kept), running ones in eval.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training or not self.track_running_stats, momentum=self.momentum,
                            eps=self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    expected_ndim = (2, 3)


class BatchNorm2d(_BatchNorm):
    expected_ndim = (4,)


class InstanceNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, affine=False):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = Parameter(np.ones(num_features, dtype=get_default_dtype())) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=get_default_dtype())) if affine else None

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected an (N, {self.num_features}, H, W) input, got shape {x.shape}")
        return F.instance_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        shape = self.normalized_shape
        self.weight = Parameter(np.ones(shape, dtype=get_default_dtype())) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dtype=get_default_dtype())) if elementwise_affine else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class GroupNorm(Module):
    """Normalizes each sample over groups of channels (F.group_norm), with a learned scale
    and shift per channel (affine)."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels {num_channels} must be divisible by num_groups {num_groups}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = Parameter(np.ones(num_channels, dtype=get_default_dtype())) if affine else None
        self.bias = _empty(num_channels) if affine else None

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"{self!r}: input shape {x.shape} should be (N, {self.num_channels}, ...)")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _empty(num_embeddings, embedding_dim)
        init.normal_(self.weight)

    def forward(self, indices):
        return F.embedding(indices, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Dropout(Module):
    """Zeroes each element with probability p in training (see F.dropout). `inplace` is
    accepted and ignored (see the top of this file)."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Upsample(Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class _Pool2d(Module):
    pool = None  # the functional op over each window

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return type(self).pool(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_Pool2d):
    pool = staticmethod(F.avg_pool2d)


class MaxPool2d(_Pool2d):
    pool = staticmethod(F.max_pool2d)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class PixelShuffle(Module):
    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x):
        return F.pixel_shuffle(x, self.upscale_factor)

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


class ReflectionPad2d(Module):
    """Pads (left, right, top, bottom) by reflection; an int pads all four sides."""

    def __init__(self, padding):
        super().__init__()
        self.padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)

    def forward(self, x):
        left, right, top, bottom = self.padding
        return F.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")

    def extra_repr(self):
        return f"{self.padding}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)


class Unflatten(Module):
    """Splits dim `dim` into `unflattened_size` (Flatten's inverse)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        dim = self.dim % x.ndim
        return F.reshape(x, x.shape[:dim] + self.unflattened_size + x.shape[dim + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Softmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, x):
        return F.log_softmax(x, self.dim)


class Identity(Module):
    """Returns its input; takes and ignores any arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class ReLU(Module):
    """max(x, 0). `inplace` is accepted and ignored (see the top of this file)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x. `inplace` is accepted and ignored (see the
    top of this file)."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class PReLU(Module):
    """Leaky ReLU whose negative slope is learned: one for all channels, or
    `num_parameters` = channels, one each (starting at `init`, 0.25 as in PyTorch)."""

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(np.full(num_parameters, init, dtype=get_default_dtype()))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Softplus(Module):
    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return F.softplus(x, self.beta)

    def extra_repr(self):
        return f"beta={self.beta}"


class ELU(Module):
    """x where x > 0, else alpha (exp(x) - 1). `inplace` is accepted and ignored (see the
    top of this file)."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"

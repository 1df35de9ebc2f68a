"""Layers and networks: `import ganforge.nn as nn`."""
from . import init  # noqa: F401
from .gan import (AdaIN, EqualizedConv2d, EqualizedLinear, MinibatchDiscrimination, MinibatchStdDev,  # noqa: F401
                  ModulatedConv2d, NoiseInjection)
from .layers import (ELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d,  # noqa: F401
                     ConvTranspose2d, Dropout, Embedding, Flatten, GroupNorm, Identity, InstanceNorm2d, LayerNorm,
                     LeakyReLU, Linear, LogSoftmax, MaxPool2d, PixelShuffle, PReLU, ReflectionPad2d, ReLU, Sigmoid,
                     Softmax, Softplus, Tanh, Unflatten, Upsample)
from .module import Module, ModuleList, Parameter, Sequential  # noqa: F401
from .spectral import remove_spectral_norm, spectral_norm  # noqa: F401
from . import utils  # noqa: F401,E402

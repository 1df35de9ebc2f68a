"""Layers and networks: `import ganforge.nn as nn`."""
from . import init  # noqa: F401
from .gan import (AdaIN, EqualizedConv2d, EqualizedLinear, MinibatchDiscrimination, MinibatchStdDev,  # noqa: F401
                  ModulatedConv2d, NoiseInjection)
from .layers import (ELU, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout,  # noqa: F401
                     Embedding, Flatten, Identity, InstanceNorm2d, LayerNorm, LeakyReLU, Linear, PixelShuffle,
                     PReLU, ReflectionPad2d, ReLU, Sigmoid, Softplus, Tanh, Upsample)
from .module import Module, ModuleList, Parameter, Sequential  # noqa: F401
from .spectral import spectral_norm  # noqa: F401

"""The models, one file each: its networks, optimizers and training step."""
from ..model import MODELS, register_model
from .anomaly import AnomalyGAN
from .cgan import CGAN
from .cyclegan import CycleGAN
from .dcgan import DCGAN
from .gan import GAN
from .lsgan import LSGAN
from .sngan import SNGAN
from .srgan import SRGAN
from .stylegan2 import StyleGAN2
from .text2image import Text2Image
from .wgan import WGAN
from .wgan_gp import WGANGP

for _model in (GAN, CGAN, DCGAN, WGAN, WGANGP, SNGAN, LSGAN, CycleGAN, SRGAN, StyleGAN2, AnomalyGAN, Text2Image):
    register_model(_model)

__all__ = ["MODELS", "GAN", "CGAN", "DCGAN", "WGAN", "WGANGP", "SNGAN", "LSGAN", "CycleGAN", "SRGAN", "StyleGAN2",
           "AnomalyGAN", "Text2Image"]

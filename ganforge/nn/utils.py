"""`nn.utils` as PyTorch spells it: spectral norm on and off, and gradient clipping (which
lives in ganforge.optim, beside the optimizers that use it)."""
from ..optim import clip_grad_norm_, clip_grad_value_  # noqa: F401
from .spectral import remove_spectral_norm, spectral_norm  # noqa: F401

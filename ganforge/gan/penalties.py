"""Regularizers of the discriminator, as functions of (D, real, fake). Each one that
looks at input gradients differentiates through a gradient (create_graph=True)."""
import numpy as np

from .. import dispatch
from .. import functional as F
from ..ops.penalty import flat
from ..autograd import grad, no_grad
from ..tensor import Tensor, default_generator


def _input_gradient(discriminator, x):
    """dD(x)/dx, itself differentiable with respect to D's parameters."""
    x = x.detach().requires_grad_()
    g, = grad(F.sum(discriminator(x)), x, create_graph=True)
    return g


def _uniform_per_sample(batch, like, generator):
    gen = generator or default_generator(like.device)
    shape = (batch,) + (1,) * (like.ndim - 1)
    return Tensor(like.xp.asarray(gen.uniform(shape, np.float64)).astype(like.dtype))


def gradient_penalty(discriminator, real, fake, weight=10.0, one_sided=False, generator=None):
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad D(x_hat)|| - 1)^2] on random
    interpolates x_hat = eps real + (1 - eps) fake, eps ~ U(0, 1) per sample. One-sided
    (Petzka et al. 2018) penalizes only norms above 1."""
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {real.shape} and fake {fake.shape} batches differ in shape")
    eps = _uniform_per_sample(real.shape[0], real, generator)
    x_hat = dispatch.call("gradient_penalty_interpolate", flat(real._data), flat(fake._data), eps._data.reshape(-1),
                          device=real.device)
    return weight * F.gradient_penalty(_input_gradient(discriminator, Tensor(x_hat.reshape(real.shape))),
                                       one_sided=one_sided)


def r1_penalty(discriminator, real, gamma=10.0):
    """R1 (Mescheder et al. 2018): gamma/2 * E[||grad D(x)||^2] on real data."""
    g = _input_gradient(discriminator, real)
    return (gamma / 2) * F.sum(g * g) / real.shape[0]


def r2_penalty(discriminator, fake, gamma=10.0):
    """R2: the same penalty on generated data."""
    return r1_penalty(discriminator, fake, gamma)


def dragan_penalty(discriminator, real, weight=10.0, scale=0.5, generator=None):
    """DRAGAN (Kodali et al. 2017): the gradient penalty on points near the real data,
    x + alpha (x_noisy - x) with x_noisy = x + scale * std(x) * U(0, 1) noise."""
    gen = generator or default_generator(real.device)
    noise = Tensor(real.xp.asarray(gen.uniform(real.shape, np.float64)).astype(real.dtype))
    noisy = real.detach() + scale * float(real._data.std()) * noise
    alpha = _uniform_per_sample(real.shape[0], real, gen)
    x_hat = real.detach() + alpha * (noisy - real.detach())
    return weight * F.gradient_penalty(_input_gradient(discriminator, x_hat))


@no_grad()
def clip_weights_(module, clip_value=0.01):
    """WGAN's weight clipping (Arjovsky et al. 2017): every parameter into [-c, c], in place."""
    for p in module.parameters():
        p.clamp_(-clip_value, clip_value)

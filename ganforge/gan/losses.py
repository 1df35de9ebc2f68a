"""GAN losses, as functions of the discriminator's raw outputs (logits or critic values).

Each entry of LOSSES is (discriminator_loss(real, fake), generator_loss(fake)); both are
minimized. Written in their stable forms: log sigmoid(x) = -softplus(-x).
"""
from .. import functional as F


def _minimax_d(real, fake):
    """-[log D(x) + log(1 - D(G(z)))], D = sigmoid(logits) (Goodfellow et al. 2014)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _minimax_g(fake):
    """log(1 - D(G(z))): the original objective, which saturates when D wins."""
    return -F.softplus(fake).mean()


def _non_saturating_g(fake):
    """-log D(G(z)): the same fixed point, with strong gradients early in training."""
    return F.softplus(-fake).mean()


def _wasserstein_d(real, fake):
    """E[D(G(z))] - E[D(x)] (Arjovsky et al. 2017); D must be kept Lipschitz."""
    return fake.mean() - real.mean()


def _wasserstein_g(fake):
    return -fake.mean()


def _hinge_d(real, fake):
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye; Miyato et al. 2018)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _least_squares_d(real, fake):
    """1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2] (Mao et al. 2017, a=0, b=c=1)."""
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()


def _least_squares_g(fake):
    return 0.5 * ((fake - 1) ** 2).mean()


LOSSES = {
    "minimax": (_minimax_d, _minimax_g),
    "non_saturating": (_minimax_d, _non_saturating_g),
    "wasserstein": (_wasserstein_d, _wasserstein_g),
    "hinge": (_hinge_d, _wasserstein_g),
    "least_squares": (_least_squares_d, _least_squares_g),
}


def _get(name):
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}: choose from {', '.join(LOSSES)}")
    return LOSSES[name]


def discriminator_loss(name, real, fake):
    """The discriminator's (or critic's) loss on its outputs for real and generated data."""
    return _get(name)[0](real, fake)


def generator_loss(name, fake):
    """The generator's loss on the discriminator's outputs for generated data."""
    return _get(name)[1](fake)

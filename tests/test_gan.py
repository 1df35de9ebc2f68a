"""GAN losses and penalties: values against their formulas, gradients against finite
differences, and the penalties' second-order paths."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F
from ganforge import nn
from ganforge.gan import (LOSSES, clip_weights_, discriminator_loss, dragan_penalty, generator_loss,
                          gradient_penalty, r1_penalty)
from ganforge.testing import gradcheck

rng = np.random.default_rng(0)
REAL, FAKE = rng.standard_normal(16) * 3, rng.standard_normal(16) * 3


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


EXPECTED = {
    "minimax": (-np.mean(np.log(sigmoid(REAL)) + np.log(1 - sigmoid(FAKE))), np.mean(np.log(1 - sigmoid(FAKE)))),
    "non_saturating": (-np.mean(np.log(sigmoid(REAL)) + np.log(1 - sigmoid(FAKE))), -np.mean(np.log(sigmoid(FAKE)))),
    "wasserstein": (FAKE.mean() - REAL.mean(), -FAKE.mean()),
    "hinge": (np.maximum(0, 1 - REAL).mean() + np.maximum(0, 1 + FAKE).mean(), -FAKE.mean()),
    "least_squares": (0.5 * ((REAL - 1) ** 2).mean() + 0.5 * (FAKE ** 2).mean(), 0.5 * ((FAKE - 1) ** 2).mean()),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_match_their_formulas_and_gradients(name):
    real, fake = gf.tensor(REAL, requires_grad=True), gf.tensor(FAKE, requires_grad=True)
    d_expected, g_expected = EXPECTED[name]
    assert discriminator_loss(name, real, fake).item() == pytest.approx(d_expected, rel=1e-12)
    assert generator_loss(name, fake).item() == pytest.approx(g_expected, rel=1e-12)
    assert gradcheck(lambda r, f: discriminator_loss(name, r, f), (real, fake))
    assert gradcheck(lambda f: generator_loss(name, f), fake)


def test_losses_are_finite_for_extreme_logits():
    big = gf.tensor([1e4, -1e4], dtype="float32", requires_grad=True)
    for name in LOSSES:
        if name in ("minimax", "non_saturating"):
            loss = discriminator_loss(name, big, big) + generator_loss(name, big)
            assert np.isfinite(loss.item())
            assert np.all(np.isfinite(gf.grad(loss, big)[0].numpy()))
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'"):
        generator_loss("wgan", big)


def small_critic():
    gf.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def test_gradient_penalty_matches_a_hand_written_one_and_trains_the_critic():
    critic = small_critic()
    real, fake = gf.randn(6, 3, dtype="float64"), gf.randn(6, 3, dtype="float64")
    gen_state = gf.Generator(5)
    ours = gradient_penalty(critic, real, fake, weight=10.0, generator=gen_state)
    eps = gf.rand(6, 1, dtype="float64", generator=gf.Generator(5))
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_()
    g, = gf.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    manual = 10.0 * ((F.norm(g, axis=1) - 1) ** 2).mean()
    assert ours.item() == pytest.approx(manual.item(), rel=1e-12)
    ours.backward()
    assert all(np.abs(p.grad.numpy()).max() > 0 for p in critic.parameters() if p.ndim == 2)


def test_penalties_are_correct_to_second_order():
    critic = small_critic()
    real, fake = gf.randn(4, 3, dtype="float64"), gf.randn(4, 3, dtype="float64")
    params = list(critic.parameters())
    names = [n for n, _ in critic.named_parameters()]

    def with_params(penalty):
        def f(*values):
            for name, value in zip(names, values):
                owner, leaf = critic[int(name.split(".")[0])], name.split(".")[1]
                owner._parameters[leaf] = value
            try:
                return penalty()
            finally:
                for name, p in zip(names, params):
                    critic[int(name.split(".")[0])]._parameters[name.split(".")[1]] = p
        return f
    assert gradcheck(with_params(lambda: gradient_penalty(critic, real, fake, generator=gf.Generator(1))), params)
    assert gradcheck(with_params(lambda: gradient_penalty(critic, real, fake, one_sided=True,
                                                          generator=gf.Generator(1))), params)
    assert gradcheck(with_params(lambda: r1_penalty(critic, real)), params)
    assert gradcheck(with_params(lambda: dragan_penalty(critic, real, generator=gf.Generator(2))), params)


def test_r1_is_gamma_half_mean_squared_gradient_norm():
    critic = small_critic()
    real = gf.randn(5, 3, dtype="float64")
    x = real.detach().requires_grad_()
    g, = gf.grad(critic(x).sum(), x)
    expected = 5.0 * (g.numpy() ** 2).sum(axis=1).mean()
    assert r1_penalty(critic, real, gamma=10.0).item() == pytest.approx(expected, rel=1e-12)


def test_weight_clipping_and_shape_checks():
    critic = small_critic()
    clip_weights_(critic, 0.01)
    assert max(np.abs(p.numpy()).max() for p in critic.parameters()) <= 0.01
    with pytest.raises(ValueError, match="real \\(4, 3\\) and fake \\(5, 3\\) batches differ"):
        gradient_penalty(critic, gf.randn(4, 3, dtype="float64"), gf.randn(5, 3, dtype="float64"))

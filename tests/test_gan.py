"""GAN losses and penalties: values against their formulas, gradients against finite
differences, and the penalties' second-order paths."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F
from ganforge import nn
from ganforge.gan import (LOSSES, clip_weights_, discriminator_loss, dragan_penalty, generator_loss,
                          gradient_penalty, r1_penalty)
from ganforge.gan.penalties import r2_penalty
from ganforge.gan.steps import discriminator_penalty, frozen
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


# --- the penalties against NumPy, with their papers' defaults ----------------------------
#
# The critic is D(x) = sum_j c_j x_j^2, whose input gradient 2 c x is known in closed form,
# so each penalty can be written out in NumPy from the same random draws.

C = np.array([0.3, 0.1, 0.6])


def quadratic_critic(x):
    return F.sum(x * x * gf.tensor(C), axis=-1)


def penalty_of_norms(norms, one_sided=False):
    excess = norms - 1
    return np.mean(np.maximum(excess, 0) ** 2 if one_sided else excess ** 2)


def penalty_data():
    rng = np.random.default_rng(3)
    real, fake = rng.uniform(-2, 2, (6, 3)), rng.uniform(-2, 2, (6, 3))
    return real, fake


def test_gradient_penalty_is_wgan_gps_formula_at_weight_10():
    real, fake = penalty_data()
    eps = gf.Generator(5).uniform((6, 1), np.float64)
    norms = np.linalg.norm(2 * C * (fake + eps * (real - fake)), axis=1)
    assert norms.min() < 1 < norms.max()  # so one-sided and two-sided differ
    for one_sided in (False, True):
        ours = gradient_penalty(quadratic_critic, gf.tensor(real), gf.tensor(fake), one_sided=one_sided,
                                generator=gf.Generator(5))
        assert ours.item() == pytest.approx(10 * penalty_of_norms(norms, one_sided), rel=1e-12)


def test_r1_and_r2_are_gamma_half_the_mean_squared_norm():
    real, fake = penalty_data()
    for data, penalty in ((real, r1_penalty), (fake, r2_penalty)):
        squared = (np.linalg.norm(2 * C * data, axis=1) ** 2).mean()
        assert penalty(quadratic_critic, gf.tensor(data)).item() == pytest.approx(5 * squared, rel=1e-12)
        assert penalty(quadratic_critic, gf.tensor(data), gamma=3.0).item() == pytest.approx(1.5 * squared,
                                                                                            rel=1e-12)


def test_dragan_penalizes_the_gradient_near_the_real_data():
    real, _ = penalty_data()
    draws = gf.Generator(7)
    noise = draws.uniform(real.shape, np.float64)
    alpha = draws.uniform((6, 1), np.float64)
    noisy = real + 0.5 * real.std() * noise
    norms = np.linalg.norm(2 * C * (real + alpha * (noisy - real)), axis=1)
    ours = dragan_penalty(quadratic_critic, gf.tensor(real), generator=gf.Generator(7))
    assert ours.item() == pytest.approx(10 * penalty_of_norms(norms), rel=1e-12)


def test_weight_clipping_clamps_every_parameter_to_the_papers_001():
    layer = nn.Linear(3, 4).double()
    before = [p.numpy().copy() for p in layer.parameters()]
    clip_weights_(layer)
    for p, original in zip(layer.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), np.clip(original, -0.01, 0.01))


def test_the_penalty_refuses_batches_of_different_shapes_either_way():
    for real, fake in (((4, 3), (4, 2)), ((4, 2), (4, 3))):
        with pytest.raises(ValueError, match="batches differ in shape"):
            gradient_penalty(quadratic_critic, gf.randn(*real, dtype="float64"), gf.randn(*fake, dtype="float64"))


def test_discriminator_penalty_picks_the_penalty_named():
    real, fake = penalty_data()
    real, fake = gf.tensor(real), gf.tensor(fake)
    for name, expected in (("gp", gradient_penalty(quadratic_critic, real, fake, 2.0, False, gf.Generator(1))),
                           ("gp_one_sided", gradient_penalty(quadratic_critic, real, fake, 2.0, True,
                                                             gf.Generator(1))),
                           ("r1", r1_penalty(quadratic_critic, real, 2.0))):
        as_read = "".join(list(name))  # a name read from a command line is another string object
        ours = discriminator_penalty(as_read, quadratic_critic, real, fake, 2.0, gf.Generator(1))
        assert ours.item() == expected.item(), name
    assert discriminator_penalty("none", quadratic_critic, real, fake, 2.0) is None
    for unknown in ("r2", "dragan"):  # either side of "r1"
        with pytest.raises(ValueError, match=f"unknown penalty '{unknown}'"):
            discriminator_penalty(unknown, quadratic_critic, real, fake, 2.0)


def test_frozen_networks_get_no_gradients_and_thaw_afterwards():
    G, D = nn.Linear(2, 3).double(), nn.Linear(3, 1).double()
    with frozen(D):
        assert not any(p.requires_grad for p in D.parameters())
        D(G(gf.randn(4, 2, dtype="float64"))).sum().backward()
    assert all(p.grad is None for p in D.parameters())
    assert all(p.grad is not None for p in G.parameters())
    assert all(p.requires_grad for p in D.parameters())


def one_step_unrolled_setup():
    """A linear generator and a small tanh discriminator in float64, D's Adam already used
    (its second moments nonzero, as in training)."""
    gf.manual_seed(3)
    G = nn.Linear(2, 2).double()
    D = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    opt_d = gf.optim.Adam(D.parameters(), lr=0.05, betas=(0.5, 0.9))
    rng = np.random.default_rng(4)
    real = [gf.tensor(rng.standard_normal((8, 2)) + 1) for _ in range(3)]
    z = [gf.tensor(rng.standard_normal((8, 2))) for _ in range(4)]
    for k in range(2):
        loss = discriminator_loss("non_saturating", D(real[k]), D(G(z[k]).detach()))
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    return G, D, opt_d, real[2], z[2], z[3]


def unrolled_generator_loss(G, D, opt_d, real, z_unroll, z_score, weight, through_updates=True):
    """The generator's loss against D one differentiable update ahead, as a function of G's weight."""
    from ganforge.gan.steps import unrolled_parameters
    g = {"weight": weight, "bias": G.bias}
    loss_of = lambda: discriminator_loss("non_saturating", D(real), D(nn.utils.functional_call(G, g, z_unroll)))  # noqa: E731
    ahead = unrolled_parameters(D, opt_d, 1, loss_of)
    if not through_updates:
        ahead = {k: v.detach() for k, v in ahead.items()}
    return generator_loss("non_saturating", nn.utils.functional_call(D, ahead, nn.utils.functional_call(G, g, z_score)))


def test_the_unrolled_generator_gradient_matches_finite_differences():
    """Metz et al.'s unrolled GAN: the generator's gradient through one Adam update of D,
    against central differences of the whole unrolled loss; and it is not the first-order
    gradient, which leaves out how D's update depends on the generator."""
    G, D, opt_d, real, z_unroll, z_score = one_step_unrolled_setup()
    weight = G.weight.detach().requires_grad_()
    D_before = {k: v.numpy().copy() for k, v in D.state_dict().items()}
    adam_before = [dict(s) for s in opt_d.state]
    assert gradcheck(lambda w: unrolled_generator_loss(G, D, opt_d, real, z_unroll, z_score, w), weight)
    for key, value in D.state_dict().items():  # the unrolling leaves D and its optimizer alone
        np.testing.assert_array_equal(value.numpy(), D_before[key])
    assert all(a["step"] == b["step"] for a, b in zip(adam_before, opt_d.state))
    true_grad, = gf.autograd.grad(unrolled_generator_loss(G, D, opt_d, real, z_unroll, z_score, weight), weight)
    first_order, = gf.autograd.grad(unrolled_generator_loss(G, D, opt_d, real, z_unroll, z_score, weight,
                                                            through_updates=False), weight)
    assert np.abs(true_grad.numpy() - first_order.numpy()).max() > 1e-3 * np.abs(first_order.numpy()).max()


def test_functional_call_swaps_parameters_and_puts_them_back():
    layer = nn.Linear(3, 2).double()
    own = layer.weight
    x = gf.tensor(np.ones((1, 3)))
    out = nn.utils.functional_call(layer, {"weight": gf.zeros(2, 3, dtype="float64")}, (x,))
    np.testing.assert_allclose(out.numpy(), layer.bias.numpy()[None])
    assert layer.weight is own
    with pytest.raises(KeyError, match="has no parameter 'weights'"):
        nn.utils.functional_call(layer, {"weights": own}, (x,))
    assert layer.weight is own

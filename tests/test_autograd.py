"""The engine: backward, grad(), higher orders, graph modes and misuse errors."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F
from ganforge.testing import gradcheck

from .conftest import import_reference, to_tensor


def test_backward_accumulates_into_leaf_grad(device):
    x = to_tensor([1.0, 2.0, 3.0], device, requires_grad=True)
    (x * x).sum().backward()
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1, 2, 3]) + 3)
    assert not x.grad.requires_grad


def test_grad_leaves_dot_grad_alone_and_matches_backward(device):
    x = to_tensor([[0.5, -1.0], [2.0, 0.3]], device, requires_grad=True)
    g, = gf.grad(F.tanh(x).sum(), x)
    assert x.grad is None
    np.testing.assert_allclose(g.numpy(), 1 - np.tanh(x.numpy()) ** 2)


def test_shared_subexpressions_add_their_gradients(device):
    x = to_tensor(1.5, device, requires_grad=True)
    y = x * x
    z = y * y + y  # dz/dx = (2y + 1) * 2x
    g, = gf.grad(z, x)
    assert g.item() == pytest.approx((2 * 1.5 ** 2 + 1) * 3.0)


def test_grad_outputs_weight_non_scalar_outputs(device):
    x = to_tensor([1.0, 2.0], device, requires_grad=True)
    gy = to_tensor([10.0, -1.0], device)
    g, = gf.grad(x * x, x, grad_outputs=gy)
    np.testing.assert_allclose(g.numpy(), [20.0, -4.0])


def test_several_outputs_and_inputs(device):
    a = to_tensor(2.0, device, requires_grad=True)
    b = to_tensor(3.0, device, requires_grad=True)
    ga, gb = gf.grad([a * b, a + b], [a, b])
    assert (ga.item(), gb.item()) == (4.0, 3.0)


def test_grad_with_respect_to_an_intermediate_tensor(device):
    x = to_tensor([1.0, 2.0], device, requires_grad=True)
    h = x * 3
    g, = gf.grad((h * h).sum(), h)
    np.testing.assert_allclose(g.numpy(), 2 * h.numpy())


def test_create_graph_gives_differentiable_gradients_to_any_order(device):
    x = to_tensor(0.7, device, requires_grad=True)
    y = x ** 5
    derivatives = []
    g = y
    for _ in range(4):
        g, = gf.grad(g, x, create_graph=True)
        derivatives.append(g.item())
    assert derivatives == pytest.approx([5 * 0.7 ** 4, 20 * 0.7 ** 3, 60 * 0.7 ** 2, 120 * 0.7])


def test_third_order_of_a_composite_matches_finite_differences():
    x = gf.tensor([0.3, -0.8], dtype="float64", requires_grad=True)

    def second_derivative_sum(x):
        g, = gf.grad(F.softplus(x * x).sum(), x, create_graph=True)
        h, = gf.grad(g.sum(), x, create_graph=True)
        return h
    assert gradcheck(second_derivative_sum, x)


def test_without_create_graph_gradients_have_no_graph():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    g, = gf.grad((x ** 3).sum(), x)
    assert not g.requires_grad and g.creator is None


def test_gradient_penalty_of_an_mlp_critic_is_correct_to_second_order():
    """d/dtheta of (||dD(x)/dx|| - 1)^2 for a small MLP critic D, as WGAN-GP computes it."""
    rng = np.random.default_rng(0)
    x = gf.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    w1 = gf.tensor(rng.standard_normal((3, 8)) * 0.7, requires_grad=True)
    b1 = gf.tensor(rng.standard_normal(8) * 0.1, requires_grad=True)
    w2 = gf.tensor(rng.standard_normal((8, 1)) * 0.7, requires_grad=True)

    def penalty(w1, b1, w2):
        critic = F.softplus(F.leaky_relu(x @ w1 + b1, 0.2) * 1.5) @ w2
        g, = gf.grad(critic.sum(), x, create_graph=True)
        return ((F.norm(g, axis=1) - 1) ** 2).mean()

    assert gradcheck(penalty, (w1, b1, w2))
    # and the penalty really moves the weights: its gradient is not zero
    gw1, = gf.grad(penalty(w1, b1, w2), w1)
    assert np.abs(gw1.numpy()).max() > 1e-3


def test_gradient_penalty_matches_pytorch():
    torch = import_reference("torch", "pip install torch==2.13.0")
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s) for s in [(4, 3), (3, 6), (6,), (6, 1)]]

    def ganforge_penalty():
        x, w1, b1, w2 = (gf.tensor(a, requires_grad=True) for a in arrays)
        d = F.tanh(x @ w1 + b1) @ w2
        g, = gf.grad(d.sum(), x, create_graph=True)
        p = ((F.norm(g, axis=1) - 1) ** 2).mean()
        return [t.numpy() for t in gf.grad(p, (w1, b1, w2))]

    def torch_penalty():
        x, w1, b1, w2 = (torch.tensor(a, requires_grad=True) for a in arrays)
        d = torch.tanh(x @ w1 + b1) @ w2
        g, = torch.autograd.grad(d.sum(), x, create_graph=True)
        p = ((g.norm(dim=1) - 1) ** 2).mean()
        return [t.numpy() for t in torch.autograd.grad(p, (w1, b1, w2))]

    for ours, theirs in zip(ganforge_penalty(), torch_penalty()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_norm_gradient_is_zero_at_zero():
    x = gf.zeros(3, dtype="float64", requires_grad=True)
    g, = gf.grad(F.norm(x), x)
    np.testing.assert_array_equal(g.numpy(), np.zeros(3))


def test_no_grad_records_nothing_and_enable_grad_turns_it_back_on():
    x = gf.tensor([1.0], requires_grad=True)
    with gf.no_grad():
        y = x * 2
        with gf.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad
    assert gf.is_grad_enabled()


def test_no_grad_works_as_a_decorator():
    @gf.no_grad()
    def sample(x):
        return x * 2
    assert not sample(gf.tensor([1.0], requires_grad=True)).requires_grad


def test_detach_cuts_the_graph():
    x = gf.tensor([2.0], requires_grad=True)
    y = x.detach() * x
    g, = gf.grad(y.sum(), x)
    assert g.item() == 2.0


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 2).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), [4.0, 8.0])


def test_gradients_keep_the_dtype_of_their_input():
    a = gf.tensor([1.0, 2.0], dtype="float32", requires_grad=True)
    b = gf.tensor([3.0, 4.0], dtype="float64", requires_grad=True)
    ga, gb = gf.grad((a * b).sum(), [a, b])
    assert ga.dtype == np.float32 and gb.dtype == np.float64


def test_broadcast_gradients_sum_back_to_each_input_shape():
    a = gf.randn(3, 1, 4, dtype="float64", requires_grad=True)
    b = gf.randn(5, 1, dtype="float64", requires_grad=True)
    ga, gb = gf.grad((a * b).sum(), [a, b])
    assert ga.shape == (3, 1, 4) and gb.shape == (5, 1)
    np.testing.assert_allclose(gb.numpy(), np.broadcast_to(a.numpy(), (3, 5, 4)).sum(axis=(0, 2))[:, None])


def test_a_deep_chain_does_not_hit_the_recursion_limit():
    x = gf.tensor([1.0], dtype="float64", requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    g, = gf.grad(y.sum(), x)
    assert g.item() == pytest.approx(1.0001 ** 5000)


# --- misuse is a clear error --------------------------------------------------------------

def test_backward_through_a_freed_graph_is_an_error():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_grad_outputs_of_the_wrong_shape_are_an_error():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"grad_outputs\[0\] has shape \(3,\) but outputs\[0\] has shape \(2,\)"):
        gf.grad(x * 2, x, grad_outputs=gf.ones(3))


def test_non_scalar_output_needs_grad_outputs():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        (x * 2).backward()


def test_in_place_change_of_an_input_whose_value_is_not_needed_is_fine():
    w = gf.tensor([1.0, 2.0], requires_grad=True)
    x = gf.tensor([3.0, 4.0])
    y = (w + x).sum()  # add's gradient does not depend on x
    x += 1
    y.backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 1.0])


def test_in_place_change_of_a_saved_tensor_is_an_error():
    w = gf.tensor([1.0, 2.0], requires_grad=True)
    x = gf.tensor([3.0, 4.0])
    y = (w * x).sum()  # the gradient of w needs x
    x += 1
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_in_place_change_of_a_saved_output_is_an_error():
    x = gf.tensor([0.5], requires_grad=True)
    y = F.sigmoid(x)  # sigmoid's gradient is computed from its output
    z = y.sum()
    with gf.no_grad():
        y.add_(1)
    with pytest.raises(RuntimeError, match="its output was modified"):
        z.backward()


def test_assigning_data_counts_as_an_in_place_change():
    w = gf.tensor([1.0, 2.0], requires_grad=True)
    x = gf.tensor([3.0, 4.0])
    y = (w * x).sum()
    x.data = np.array([0.0, 0.0], dtype=np.float32)
    with pytest.raises(RuntimeError, match="in-place"):
        y.backward()


def test_in_place_change_of_a_tensor_that_requires_grad_is_an_error():
    w = gf.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place operation on a leaf"):
        w += 1
    with gf.no_grad():  # the optimizer's way
        w -= 0.5
    assert w.item() == 0.5 and w._version == 1


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating-point tensors can require grad.*int64"):
        gf.tensor([1, 2, 3], requires_grad=True)
    t = gf.arange(3)
    with pytest.raises(TypeError, match="floating-point"):
        t.requires_grad = True


def test_unused_inputs_are_an_error_unless_allowed():
    x = gf.tensor([1.0], requires_grad=True)
    unused = gf.tensor([2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="inputs\\[1\\].*not used"):
        gf.grad((x * 2).sum(), [x, unused])
    gx, gu = gf.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert gu is None and gx.item() == 2.0


def test_grad_of_an_output_without_graph_is_an_error():
    x = gf.tensor([1.0], requires_grad=True)
    with gf.no_grad():
        y = x * 2
    with pytest.raises(RuntimeError, match="does not require grad"):
        gf.grad(y, x)


def test_inputs_must_require_grad():
    x = gf.tensor([1.0], requires_grad=True)
    c = gf.tensor([1.0])
    with pytest.raises(RuntimeError, match=r"inputs\[0\].*does not require grad"):
        gf.grad((x * c).sum(), c)


def test_a_backward_returning_the_wrong_shape_is_caught():
    class Broken(gf.Function):
        def forward(self, x):
            return x.sum()

        def backward(self, gy):
            return gy  # should have been broadcast back to x's shape

    try:
        x = gf.tensor([1.0, 2.0], requires_grad=True)
        with pytest.raises(RuntimeError, match="Broken.backward returned a gradient of shape \\(\\) for an input of shape \\(2,\\)"):
            Broken()(x).backward()
    finally:
        del gf.Function.registry["Broken"]


def test_requires_grad_cannot_be_switched_off_on_a_non_leaf():
    x = gf.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        (x * 2).requires_grad = False


def test_gradient_penalty_op_matches_its_composite_to_second_order():
    """F.gradient_penalty (kernel forward, hand-written backward) gives the same penalty and the
    same d/dtheta as the plain composite, through a create_graph gradient of an MLP critic."""
    rng = np.random.default_rng(4)
    x = gf.tensor(rng.standard_normal((6, 2, 3)), requires_grad=True)
    w1 = gf.tensor(rng.standard_normal((6, 8)) * 0.5, requires_grad=True)
    w2 = gf.tensor(rng.standard_normal((8, 1)) * 0.5, requires_grad=True)

    def critic_gradient(w1, w2):
        d = F.tanh(F.reshape(x, (6, 6)) @ w1) @ w2
        g, = gf.grad(d.sum(), x, create_graph=True)
        return g

    for one_sided in (False, True):
        def op(w1, w2):
            return F.gradient_penalty(critic_gradient(w1, w2), one_sided=one_sided)

        def composite(w1, w2):
            excess = F.norm(F.reshape(critic_gradient(w1, w2), (6, -1)), axis=1) - 1
            return ((F.relu(excess) if one_sided else excess) ** 2).mean()
        assert op(w1, w2).item() == pytest.approx(composite(w1, w2).item(), rel=1e-12)
        for a, b in zip(gf.grad(op(w1, w2), [w1, w2]), gf.grad(composite(w1, w2), [w1, w2])):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
        assert gradcheck(op, (w1, w2))

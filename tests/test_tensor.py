"""The Tensor API: construction, dtype and device, operators, factories, randomness."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F

from .conftest import to_tensor


def test_python_floats_default_to_float32_and_arrays_keep_their_dtype():
    assert gf.tensor([1.0, 2.0]).dtype == np.float32
    assert gf.tensor([1, 2]).dtype == np.int64
    assert gf.tensor(np.zeros(2)).dtype == np.float64
    assert gf.tensor([1, 2], dtype="float64").dtype == np.float64


def test_tensor_copies_but_Tensor_wraps():
    a = np.zeros(3, dtype=np.float32)
    gf.tensor(a).zero_().add_(1)
    assert a.sum() == 0
    t = gf.Tensor(a)
    t.add_(1)
    assert a.sum() == 3


def test_scalars_take_the_tensors_dtype():
    x = gf.tensor([1.0, 2.0])
    for y in (x + 1, 1 - x, x * 2.5, x / 3, 2 ** x, x ** 2, -x):
        assert y.dtype == np.float32


def test_operators_match_numpy(device):
    a = to_tensor([[1.0, 2.0], [3.0, 4.0]], device)
    b = to_tensor([0.5, -1.0], device)
    an, bn = a.numpy(), b.numpy()
    for ours, theirs in [(a + b, an + bn), (a - b, an - bn), (a * b, an * bn), (a / b, an / bn),
                         (a @ b, an @ bn), (a ** 2, an ** 2), (abs(-a), an), (a.T, an.T),
                         (a[1, ::-1], an[1, ::-1]), (a.sum(0), an.sum(0)), (a.mean(), an.mean()),
                         (a.max(1).values, an.max(1)), (a.amax(1), an.max(1)), (a.std(), an.std(ddof=1)), (a.reshape(4), an.reshape(4))]:
        np.testing.assert_allclose(ours.numpy(), theirs)
    assert (a > 2).numpy().tolist() == [[False, False], [True, True]]
    assert not (a > 2).requires_grad


def test_numpy_array_on_the_left_still_makes_a_tensor():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([2.0, 3.0], dtype=np.float32) * x
    assert isinstance(y, gf.Tensor) and y.requires_grad


def test_factories(device):
    assert gf.zeros(2, 3, device=device).numpy().tolist() == [[0, 0, 0], [0, 0, 0]]
    assert gf.ones((2,), dtype="float64", device=device).dtype == np.float64
    assert gf.full((2, 2), 7.0, device=device).numpy().sum() == 28
    assert gf.arange(4, device=device).numpy().tolist() == [0, 1, 2, 3]
    assert gf.arange(0.0, 1.0, 0.5, device=device).dtype == np.float32
    x = gf.randn(3, 4, device=device, requires_grad=True)
    assert x.shape == (3, 4) and x.requires_grad and x.device == device
    assert gf.zeros_like(x).shape == (3, 4)
    u = gf.rand(1000, device=device).numpy()
    assert 0 <= u.min() and u.max() < 1


def test_seeding_makes_random_tensors_reproducible():
    gf.manual_seed(123)
    a = gf.randn(5).numpy().copy()
    gf.manual_seed(123)
    np.testing.assert_array_equal(a, gf.randn(5).numpy())
    g = gf.Generator(7)
    state = g.get_state()
    first = gf.rand(3, generator=g).numpy().copy()
    g.set_state(state)
    np.testing.assert_array_equal(first, gf.rand(3, generator=g).numpy())


def test_random_integer_tensors_are_refused():
    with pytest.raises(TypeError, match="floating point"):
        gf.randn(3, dtype="int64")


def test_item_numpy_detach_and_repr():
    x = gf.tensor([[1.5]], requires_grad=True)
    assert x.item() == 1.5
    assert isinstance(x.numpy(), np.ndarray)
    assert not x.detach().requires_grad
    assert "requires_grad=True" in repr(x) and "float32" in repr(x)
    with pytest.raises(ValueError, match="one element"):
        gf.tensor([1.0, 2.0]).item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(gf.tensor([1.0, 2.0]))


def test_astype_and_device_moves_are_differentiable():
    x = gf.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64 and y.requires_grad
    g, = gf.grad((y * y).sum(), x)
    assert g.dtype == np.float32 and g.numpy().tolist() == [2.0, 4.0]
    assert x.to("cpu") is x


def test_asking_for_cuda_without_a_gpu_says_how_to_get_one():
    if gf.backend.gpu_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="CuPy is not usable.*pip install ganforge\\[gpu\\]"):
        gf.zeros(2, device="cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        gf.zeros(2, device="tpu")


def test_functional_argument_errors_name_the_problem():
    x = gf.randn(2, 3)
    with pytest.raises(ValueError, match="axis 2 is out of range for a tensor with 2 dimensions"):
        x.sum(2)
    with pytest.raises(ValueError, match="matmul shape mismatch: \\(2, 3\\) @ \\(2, 3\\)"):
        x @ x
    with pytest.raises(ValueError, match="cannot broadcast shape \\(2, 3\\) to \\(4, 3\\)"):
        x.broadcast_to((4, 3))
    with pytest.raises(ValueError, match="cannot squeeze axis 0 of size 2"):
        x.squeeze(0)
    with pytest.raises(ValueError, match="concat along axis 0: tensor 1 has shape \\(2, 4\\)"):
        gf.concat([x, gf.randn(2, 4)])
    with pytest.raises(ValueError, match="reflect padding \\(3, 0\\) must be smaller than the axis size 3"):
        F.pad(x, ((0, 0), (3, 0)), mode="reflect")
    with pytest.raises(ValueError, match="input shape \\(2, 3\\) and target shape \\(3,\\) differ"):
        F.mse_loss(x, gf.randn(3))
    with pytest.raises(ValueError, match="targets must lie in \\[0, 3\\)"):
        F.cross_entropy(x, gf.tensor([0, 5]))
    with pytest.raises(TypeError, match="integer class labels"):
        F.cross_entropy(x, gf.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="split sizes \\[1, 1\\] do not add up to the axis length 3"):
        F.split(x, [1, 1], axis=1)


def test_losses_are_stable_for_extreme_logits():
    x = gf.tensor([1000.0, -1000.0], dtype="float64", requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, gf.tensor([0.0, 1.0], dtype="float64"))
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(1000.0)
    g, = gf.grad(loss, x)
    assert np.all(np.isfinite(g.numpy()))
    logits = gf.tensor([[1000.0, 0.0, -1000.0]], dtype="float64", requires_grad=True)
    ce = F.cross_entropy(logits, gf.tensor([2]))
    assert ce.item() == pytest.approx(2000.0)
    assert np.all(np.isfinite(gf.grad(ce, logits)[0].numpy()))


def test_convolution_argument_errors_name_the_shapes():
    x = gf.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="conv2d: input has 3 channels but weight shape \\(4, 2, 3, 3\\) "
                                         "with groups=1 expects 2"):
        F.conv2d(x, gf.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        F.conv2d(x, gf.randn(3, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match="kernel height 9 .* larger than the padded input height 8"):
        F.conv2d(x, gf.randn(4, 3, 9, 3))
    with pytest.raises(ValueError, match="conv2d: bias has shape \\(5,\\), expected \\(4,\\)"):
        F.conv2d(x, gf.randn(4, 3, 3, 3), gf.randn(5))
    with pytest.raises(ValueError, match="output_padding 2 must be non-negative and smaller than the stride 2"):
        F.conv_transpose2d(x, gf.randn(3, 4, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="conv_transpose2d: input has 3 channels but weight shape \\(4, 4, 3, 3\\)"):
        F.conv_transpose2d(x, gf.randn(4, 4, 3, 3))
    with pytest.raises(ValueError, match="conv2d expects an \\(N, C, H, W\\) input, got shape \\(3, 8, 8\\)"):
        F.conv2d(gf.randn(3, 8, 8), gf.randn(4, 3, 3, 3))

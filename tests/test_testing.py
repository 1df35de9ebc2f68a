"""gradcheck itself must catch wrong gradients and say where."""
import pytest

import ganforge as gf
from ganforge.testing import GradcheckError, gradcheck, gradgradcheck


class WrongSquare(gf.Function):
    """x^2 with a backward that forgets the factor 2."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        return gy * self.inputs[0]


class RightFirstWrongSecond(gf.Function):
    """x^3: the first derivative is right in value, but it is built from a constant,
    so its own derivative (the second derivative of x^3) comes out as zero."""

    def forward(self, x):
        return x ** 3

    def backward(self, gy):
        x = self.inputs[0]
        return gy * gf.constant(3 * x.numpy() ** 2)


@pytest.fixture(autouse=True)
def unregister_test_functions():
    yield
    for name in ("WrongSquare", "RightFirstWrongSecond"):
        gf.Function.registry.pop(name, None)


def test_gradcheck_catches_a_wrong_gradient_and_names_the_worst_element():
    x = gf.tensor([[1.0, 2.0], [3.0, -4.0]], dtype="float64", requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(2, 2\)\).*worst at output element 3, "
                                             r"input element 3: analytic -4, numeric -8"):
        gradcheck(lambda x: WrongSquare()(x), x)
    assert gradcheck(lambda x: WrongSquare()(x), x, raise_exception=False) is False


def test_gradcheck_catches_a_wrong_gradient_along_random_directions():
    x = gf.randn(80, 80, dtype="float64", requires_grad=True)
    with pytest.raises(GradcheckError, match="random direction"):
        gradcheck(lambda x: WrongSquare()(x), x)


def test_gradgradcheck_catches_a_wrong_second_derivative():
    x = gf.tensor([0.5, -1.5], dtype="float64", requires_grad=True)
    assert gradcheck(lambda x: RightFirstWrongSecond()(x), x)
    with pytest.raises(GradcheckError):
        gradgradcheck(lambda x: RightFirstWrongSecond()(x), x)


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="needs float64 inputs, input 0 is float32"):
        gradcheck(lambda x: x * 2, gf.randn(3, requires_grad=True))


def test_gradcheck_needs_something_to_check():
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda x: x * 2, gf.randn(3, dtype="float64"))

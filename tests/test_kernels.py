"""The kernel registry and the compiled im2col/col2im: parity with the reference,
selection rules, and errors raised from C++."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ganforge as gf
from ganforge import dispatch, native
from ganforge.ops import conv

from .op_specs import window_case

needs_cpp = pytest.mark.skipif(not native.available()[0], reason=native.available()[1])


def test_the_compiled_module_is_built_in_ci():
    """CI installs with the C++ build; if it silently failed we would only test `ref`."""
    import os
    if os.environ.get("CI"):
        assert native.available() == (True, ""), native.available()[1]


@needs_cpp
def test_registry_picks_cpp_on_the_cpu_when_it_is_built(monkeypatch):
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    assert dispatch.resolve("im2col", "cpu").impl == "cpp"
    assert dispatch.resolve("col2im", "cpu").impl == "cpp"
    assert dispatch.resolve("im2col", "cuda").impl == "ref"  # until the GPU kernels exist


@needs_cpp
def test_unfold_really_calls_the_chosen_kernel(monkeypatch):
    calls = []
    cpp = dispatch.implementations("im2col")["cpp"]
    monkeypatch.setattr(cpp, "fn", lambda *a: calls.append("cpp") or conv.im2col_cpp(*a))
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    gf.unfold(gf.randn(1, 1, 4, 4), 2)
    assert calls == ["cpp"]


def test_environment_variable_and_impl_argument_choose_the_implementation(monkeypatch):
    monkeypatch.setenv("GANFORGE_KERNELS", "ref")
    assert dispatch.resolve("im2col", "cpu").impl == "ref"
    monkeypatch.setenv("GANFORGE_KERNELS", "col2im=ref")
    assert dispatch.resolve("col2im", "cpu").impl == "ref"
    if native.available()[0]:
        assert dispatch.resolve("im2col", "cpu").impl == "cpp"
        assert dispatch.resolve("im2col", "cpu", impl="cpp").impl == "cpp"  # impl= wins over the variable


def test_unknown_or_misplaced_implementations_are_errors(monkeypatch):
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    with pytest.raises(ValueError, match="no implementation 'fortran'.*choose from cpp, ref"):
        dispatch.resolve("im2col", "cpu", impl="fortran")
    with pytest.raises(ValueError, match="does not run on 'cuda'"):
        dispatch.resolve("im2col", "cuda", impl="cpp")
    with pytest.raises(KeyError, match="no kernel named 'conv9d'"):
        dispatch.resolve("conv9d", "cpu")


def test_an_unavailable_fast_kernel_warns_once_and_falls_back(monkeypatch):
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    dispatch.register("demo_op", "ref", lambda: "ref", ("cpu",))
    dispatch.register("demo_op", "cpp", lambda: "cpp", ("cpu",), lambda: (False, "not built here"))
    try:
        with pytest.warns(RuntimeWarning, match="demo_op/cpp is unavailable \\(not built here\\)"):
            assert dispatch.call("demo_op") == "ref"
        with pytest.raises(RuntimeError, match="asked for but is unavailable: not built here"):
            dispatch.call("demo_op", impl="cpp")
    finally:
        dispatch._registry.pop("demo_op")


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_cpp_im2col_and_col2im_match_the_reference(dtype, data):
    shape, geometry = data.draw(window_case())
    # Larger channel counts and batches than the gradient tests, and non-contiguous inputs.
    shape = (shape[0] + data.draw(st.integers(0, 3)), shape[1] * 2) + shape[2:]
    g = tuple(geometry[k] for k in ("kernel_size", "stride", "padding", "dilation"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(shape).astype(dtype)
    if data.draw(st.booleans()):
        x = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)  # F-ordered spatial axes
    cols = conv.im2col_cpp(x, *g)
    np.testing.assert_array_equal(cols, conv.im2col_ref(x, *g))
    assert cols.dtype == dtype
    back_cpp = conv.col2im_cpp(cols, shape[1], shape[2:], *g)
    back_ref = conv.col2im_ref(cols, shape[1], shape[2:], *g)
    np.testing.assert_allclose(back_cpp, back_ref, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


@needs_cpp
def test_cpp_checks_shapes_and_raises_python_errors():
    c = native.module()
    with pytest.raises(ValueError, match="x must be 4-D, got shape \\(2, 3, 4\\)"):
        c.im2col(np.zeros((2, 3, 4)), (1, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        c.im2col(np.zeros((2, 3, 4, 4))[..., ::2], (1, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="x must be float32 or float64, got int64"):
        c.im2col(np.zeros((1, 1, 2, 2), dtype=np.int64), (1, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="larger than the padded input"):
        c.im2col(np.zeros((1, 1, 4, 4)), (7, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="stride must be positive"):
        c.im2col(np.zeros((1, 1, 4, 4)), (1, 1), (0, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="cols has shape \\(1, 4, 9\\) but this geometry needs \\(1, 8, 16\\)"):
        c.col2im(np.zeros((1, 4, 9)), 2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1))


def test_unfold_and_fold_check_their_arguments():
    with pytest.raises(ValueError, match="unfold expects an \\(N, C, H, W\\) input, got shape \\(3, 4\\)"):
        gf.unfold(gf.randn(3, 4), 2)
    with pytest.raises(ValueError, match="kernel height 5 .* larger than the padded input height 4"):
        gf.unfold(gf.randn(1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match="fold expects \\(N, C\\*2\\*2, 9\\) columns"):
        gf.fold(gf.randn(1, 5, 9), (4, 4), 2)


def test_unfold_is_the_adjoint_of_fold():
    """<unfold(x), c> = <x, fold(c)>: the property that makes each the other's gradient."""
    rng = np.random.default_rng(0)
    x = gf.tensor(rng.standard_normal((2, 3, 7, 5)))
    cols = gf.unfold(x, (3, 2), stride=2, padding=1, dilation=(1, 2))
    c = gf.tensor(rng.standard_normal(cols.shape))
    back = gf.fold(c, (7, 5), (3, 2), stride=2, padding=1, dilation=(1, 2))
    assert float((cols * c).sum().item()) == pytest.approx(float((x * back).sum().item()), rel=1e-12)

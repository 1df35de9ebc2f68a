"""Every op: forward against NumPy in float64, dtype kept in float32, and first- and
second-order gradients against finite differences, on random shapes and values."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ganforge as gf
from ganforge import backend, functional
from ganforge.autograd import Function
from ganforge.testing import gradcheck, gradgradcheck

from .conftest import DEVICES, to_tensor
from .op_specs import SPECS

SPEC_PARAMS = [pytest.param(spec, id=spec.id) for spec in SPECS]


def on_device(params, device):
    """Index arrays and masks in params, moved to the device of the tensors."""
    def move(value):
        if isinstance(value, np.ndarray):
            return backend.to_device(value, device)
        if isinstance(value, tuple):
            return tuple(move(v) for v in value)
        return value
    return {k: move(v) for k, v in params.items()}


def run_spec(spec, arrays, params, device, dtype=np.float64, requires_grad=False):
    if device not in spec.devices:
        pytest.skip(f"{spec.id} does not run on {device}")
    tensors = [to_tensor(a, device, requires_grad, dtype) for a in arrays]
    return tensors, on_device(params, device)


def as_host_list(out):
    outs = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in outs]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", SPEC_PARAMS)
@given(data=st.data())
def test_forward_matches_numpy_float64(spec, device, data):
    arrays, params = data.draw(spec.case)
    tensors, device_params = run_spec(spec, arrays, params, device)
    got = as_host_list(spec.fn(*tensors, **device_params))
    expected = spec.ref(*arrays, **params)
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == np.shape(e), f"{spec.id}: shape {g.shape}, NumPy gives {np.shape(e)}"
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12, err_msg=spec.id)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", SPEC_PARAMS)
@given(data=st.data())
def test_forward_float32_keeps_its_dtype(spec, device, data):
    arrays, params = data.draw(spec.case)
    tensors, device_params = run_spec(spec, arrays, params, device, dtype=np.float32)
    expected = spec.ref(*[a.astype(np.float32).astype(np.float64) for a in arrays], **params)
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    for g, e in zip(as_host_list(spec.fn(*tensors, **device_params)), expected):
        assert g.dtype == np.float32, f"{spec.id} turned float32 into {g.dtype}"
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-5, err_msg=spec.id)


@pytest.mark.parametrize("check", [gradcheck, gradgradcheck], ids=["first_order", "second_order"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec", SPEC_PARAMS)
@given(data=st.data())
def test_gradients_match_finite_differences(spec, device, check, data):
    arrays, params = data.draw(spec.case)
    tensors, device_params = run_spec(spec, arrays, params, device, requires_grad=True)
    assert check(lambda *xs: spec.fn(*xs, **device_params), tensors, **spec.check)


def test_every_public_op_has_a_spec():
    missing = set(functional.__all__) - set(functional.WITHOUT_GRADIENTS) - {spec.name for spec in SPECS}
    assert not missing, f"ops without gradient tests in tests/op_specs.py: {sorted(missing)}"


def functions_in_graph(outputs):
    """The Function classes in the graphs behind `outputs`."""
    seen, stack, found = set(), [o.creator for o in outputs if o.creator is not None], set()
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        found.add(type(fn).__name__)
        stack.extend(x.creator for x in fn.inputs if x.creator is not None)
    return found


@settings(max_examples=3)
@given(data=st.data())
def test_every_registered_function_is_exercised_by_the_specs(data):
    """A Function added without a spec that reaches it (forward, or backward with
    create_graph) fails here, so gradient coverage cannot lapse."""
    exercised = set()
    for spec in SPECS:
        exercised.update(spec.covers)
        if "cpu" not in spec.devices:
            continue
        arrays, params = data.draw(spec.case)
        tensors = [to_tensor(a, "cpu", requires_grad=True) for a in arrays]
        out = spec.fn(*tensors, **params)
        outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o.requires_grad]
        exercised |= functions_in_graph(outs)
        gys = [gf.randn(*o.shape, dtype="float64", requires_grad=True) for o in outs]
        grads = gf.grad(outs, tensors, gys, create_graph=True, allow_unused=True)
        exercised |= functions_in_graph([g for g in grads if g is not None and g.requires_grad])
    registered = {name for name, cls in Function.registry.items() if cls.__module__.startswith("ganforge.")}
    assert registered - exercised == set(), f"Functions with no gradient tests: {sorted(registered - exercised)}"

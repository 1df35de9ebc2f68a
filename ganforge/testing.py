"""Gradient checks against finite differences (like torch.autograd.gradcheck).

`gradcheck(fn, inputs)` compares the gradients that ganforge computes for `fn` with
central differences (f(x + eps) - f(x - eps)) / 2 eps, element by element:

    |analytic - numeric| <= atol + rtol * |numeric|

with PyTorch's defaults eps = 1e-6, atol = 1e-5, rtol = 1e-3. Inputs must be float64:
in float32, rounding alone (about 1e-7 / eps) would swamp the comparison.

Small problems are checked through the whole Jacobian, one backward pass per output
element. Large ones (more than `full_jacobian_limit` input x output elements) are
checked along random directions instead (chainer's check_backward): for random u, v
the number u . J v is computed both ways, which catches any wrong entry with
probability one.

`gradgradcheck` runs the same check on the function (inputs, gy) -> d<gy, f>/d inputs,
built with create_graph=True: a second-order check.
"""
import numpy as np

from .autograd import grad
from .tensor import Tensor

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """A gradient disagreed with finite differences; the message names the worst element."""


def _outputs(value):
    outs = value if isinstance(value, (tuple, list)) else (value,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def _differentiable_inputs(inputs):
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 inputs, input {i} is {inputs[i].dtype}: "
                            "float32 rounding is larger than the finite-difference step")
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    return checked


def _evaluate(fn, inputs, index, array):
    """fn's float outputs, flattened and concatenated, with inputs[index]'s data replaced."""
    args = list(inputs)
    # Keep requires_grad: fn may itself call grad() (gradgradcheck does).
    args[index] = Tensor(array, requires_grad=inputs[index].requires_grad)
    outs = _outputs(fn(*args))
    return np.concatenate([o.numpy().astype(np.float64).ravel() for o in outs]) if outs else np.zeros(0)


def _numeric_directional(fn, inputs, index, direction, eps):
    """d/dt f(x + t v) at t = 0 for input `index`, by central differences."""
    x = inputs[index]._data
    plus = _evaluate(fn, inputs, index, x + eps * direction)
    minus = _evaluate(fn, inputs, index, x - eps * direction)
    return (plus - minus) / (2 * eps)


def _analytic_vjp(fn, inputs, checked, cotangent_of):
    """u^T J for each checked input, where cotangent_of(output, k) gives u's piece for output k."""
    outs = _outputs(fn(*inputs))
    live = [(k, o) for k, o in enumerate(outs) if o.requires_grad]
    if not live:
        return [np.zeros(inputs[i].shape) for i in checked], outs
    grads = grad([o for _, o in live], [inputs[i] for i in checked],
                 grad_outputs=[Tensor._wrap(cotangent_of(o, k)) for k, o in live], allow_unused=True)
    return [np.zeros(inputs[i].shape) if g is None else g.numpy().astype(np.float64)
            for i, g in zip(checked, grads)], outs


def _report(where, analytic, numeric, atol, rtol):
    error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if error.size == 0 or (np.all(error <= 0) and np.all(np.isfinite(analytic))):
        return
    worst = int(np.nanargmax(np.where(np.isfinite(error), error, np.inf)))
    position = tuple(int(i) for i in np.unravel_index(worst, error.shape))
    if len(position) == 2:  # a Jacobian: (flat output element, flat input element)
        position = f"output element {position[0]}, input element {position[1]}"
    raise GradcheckError(
        f"{where}: analytic and numeric gradients disagree; worst at {position}: "
        f"analytic {analytic.flat[worst]:.8g}, numeric {numeric.flat[worst]:.8g}, "
        f"|difference| {abs(analytic.flat[worst] - numeric.flat[worst]):.3g} > "
        f"atol + rtol*|numeric| = {atol + rtol * abs(numeric.flat[worst]):.3g}")


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, full_jacobian_limit=4096, directions=3, seed=0,
              raise_exception=True):
    """Check fn's first derivatives against central differences. Returns True, or raises
    GradcheckError naming the input, the worst element and both values (or returns False
    with raise_exception=False). Inputs that do not require grad are held constant."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = _differentiable_inputs(inputs)
    try:
        out_sizes = [o.numel() for o in _outputs(fn(*inputs))]
        n_out = int(np.sum(out_sizes))
        n_in = int(np.sum([inputs[i].numel() for i in checked]))
        if n_in * n_out <= full_jacobian_limit:
            _check_full_jacobian(fn, inputs, checked, out_sizes, eps, atol, rtol)
        else:
            _check_directions(fn, inputs, checked, eps, atol, rtol, directions, seed)
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def _check_full_jacobian(fn, inputs, checked, out_sizes, eps, atol, rtol):
    n_out = int(np.sum(out_sizes))
    offsets = np.cumsum([0] + out_sizes)
    # Analytic: row r of every Jacobian is one backward pass with a one-hot cotangent.
    analytic = [np.zeros((n_out, inputs[i].numel())) for i in checked]
    for row in range(n_out):
        k = int(np.searchsorted(offsets, row, side="right") - 1)

        def one_hot(o, out_index, k=k, row=row):
            u = o.xp.zeros(o.shape, dtype=o.dtype)
            if out_index == k:
                u.reshape(-1)[row - offsets[k]] = 1  # (a view: u is new and contiguous)
            return u
        grads, _ = _analytic_vjp(fn, inputs, checked, one_hot)
        for jacobian, g in zip(analytic, grads):
            jacobian[row] = g.ravel()
    # Numeric: column j is the central difference along the j-th unit vector.
    for jacobian, i in zip(analytic, checked):
        x = inputs[i]
        numeric = np.empty((n_out, x.numel()))
        for j in range(x.numel()):
            direction = np.zeros(x.shape)
            direction.flat[j] = 1.0
            numeric[:, j] = _numeric_directional(fn, inputs, i, x.xp.asarray(direction), eps)
        _report(f"gradcheck, input {i} (shape {x.shape}), Jacobian", jacobian, numeric, atol, rtol)


def _check_directions(fn, inputs, checked, eps, atol, rtol, directions, seed):
    rng = np.random.default_rng(seed)
    for _ in range(directions):
        cotangents = {}

        def random_cotangent(o, k):
            if k not in cotangents:
                cotangents[k] = rng.standard_normal(o.shape)
            u = cotangents[k]
            return o.xp.asarray(u, dtype=o.dtype)
        grads, outs = _analytic_vjp(fn, inputs, checked, random_cotangent)
        u = np.concatenate([cotangents.get(k, np.zeros(o.shape)).ravel() for k, o in enumerate(outs)]) \
            if outs else np.zeros(0)
        for g, i in zip(grads, checked):
            v = rng.standard_normal(inputs[i].shape)
            analytic = np.array([np.sum(g * v)])
            numeric = np.array([u @ _numeric_directional(fn, inputs, i, inputs[i].xp.asarray(v), eps)])
            _report(f"gradcheck, input {i} (shape {inputs[i].shape}), random direction", analytic, numeric,
                    atol, rtol)


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, **kwargs):
    """Check fn's second derivatives: gradcheck of (inputs, gy) -> grad(fn(inputs), inputs, gy).

    `grad_outputs` (the gy) are random float64 tensors by default, and are themselves
    checked as inputs, since the gradient is linear in them."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = _differentiable_inputs(inputs)
    outs = [o for o in _outputs(fn(*inputs)) if o.requires_grad]
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = [Tensor(o.xp.asarray(rng.standard_normal(o.shape)), requires_grad=True) for o in outs]
    grad_outputs = list(grad_outputs)
    n = len(inputs)

    def first_derivative(*args):
        xs, gys = args[:n], args[n:]
        ys = [o for o in _outputs(fn(*xs)) if o.requires_grad]
        if not ys:
            return ()
        grads = grad(ys, [xs[i] for i in checked], grad_outputs=list(gys), create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivative, inputs + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol, seed=seed,
                     **kwargs)

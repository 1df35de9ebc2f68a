"""Reverse-mode automatic differentiation, to any order.

A `Function` is one primitive op. Its `forward` maps arrays to an array; its
`backward` maps the output's gradient `gy` (a Tensor) to the inputs' gradients
(Tensors), written with ganforge ops. Because backward is built from ops, running
it with gradient recording on (`create_graph=True`) records a graph of the
gradient itself, which can be differentiated again: that is all there is to
higher-order gradients (WGAN-GP, R1 and DRAGAN need them).

The graph is implicit: each non-leaf Tensor points to the Function that made it
(`creator`), and each Function holds its input Tensors. `backward` walks it from
the outputs in reverse topological order.
"""
import itertools
import weakref
from operator import attrgetter

# C-level accessors: in the per-op hot path, map() with these beats list comprehensions.
_requires_grad_of = attrgetter("_requires_grad")
_version_of = attrgetter("_version")
_sequence_of = attrgetter("sequence")
_sequence = itertools.count()  # numbers Functions in the order they are recorded

# --- gradient mode -----------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled():
    return _grad_enabled


class set_grad_enabled:
    """Context manager (and decorator) that turns graph recording on or off."""

    def __init__(self, mode):
        self.mode = bool(mode)

    def __enter__(self):
        global _grad_enabled
        self.previous, _grad_enabled = _grad_enabled, self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.previous

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


class no_grad(set_grad_enabled):
    """Ops inside record no graph: for sampling, evaluation and optimizer updates."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Turns recording back on inside a `no_grad` block."""

    def __init__(self):
        super().__init__(True)


# --- Function ---------------------------------------------------------------------


class Function:
    """One primitive op: `forward(*arrays) -> array`, `backward(gy) -> gradients`.

    Subclasses set their parameters in `__init__` and are used as
    `Exp()(x)` or `Sum(axis=1)(x)`. In `backward`, `self.inputs` are the input
    Tensors, `self.output()` the output Tensor (only for classes that set
    `saves_output = True`), and `self.needs_input_grad[i]` says whether the i-th
    gradient is wanted; return None for those that are not.
    """

    # Every subclass, by name: the tests check that each one has gradient tests.
    registry = {}
    saves_output = False
    # False for ops whose backward reads only the inputs' shapes (add, sum, reshape, ...):
    # changing such an input in place after the forward pass is then harmless.
    needs_inputs = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):  # private bases share code, they are not ops
            Function.registry[cls.__name__] = cls

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    def __call__(self, *inputs):
        # Most ops take one or two inputs; spelling those out avoids unpacking an
        # iterator, which on small tensors costs as much as the array work itself.
        if len(inputs) == 1:
            y = self.forward(inputs[0]._data)
        elif len(inputs) == 2:
            y = self.forward(inputs[0]._data, inputs[1]._data)
        else:
            y = self.forward(*[x._data for x in inputs])
        if not (_grad_enabled and any(map(_requires_grad_of, inputs))):
            return Tensor._wrap(y)
        out = Tensor._wrap(y, True, self)
        self.inputs = inputs
        self.sequence = next(_sequence)
        if self.needs_inputs:
            self.input_versions = list(map(_version_of, inputs))
        if self.saves_output:
            self._output_ref = weakref.ref(out)
            self._output_data = y
        return out

    def output(self):
        """The output Tensor, as a node of the graph (rebuilt if the user dropped it)."""
        out = self._output_ref()
        if out is None:
            out = Tensor._wrap(self._output_data, requires_grad=True, creator=self)
            self._output_ref = weakref.ref(out)
        elif out._version != 0:
            raise RuntimeError(_inplace_message(self, "its output"))
        return out

    def _check_versions(self):
        if list(map(_version_of, self.inputs)) == self.input_versions:
            return
        for i, (x, version) in enumerate(zip(self.inputs, self.input_versions)):
            if x._version != version:
                raise RuntimeError(_inplace_message(self, f"input {i} (shape {x.shape})"))

    def _release(self):
        """Drop the saved tensors: the graph below this node can no longer be walked."""
        self.inputs = None
        self._output_data = None

    def __repr__(self):
        return f"<{type(self).__name__} backward>"


def _inplace_message(fn, what):
    return (f"{type(fn).__name__}: {what} was modified by an in-place operation after it was "
            "used, but the gradient needs its old value; use an out-of-place op (x = x + 1) "
            "instead of x += 1, or clone() the tensor before changing it")


_FREED_MESSAGE = ("trying to backward through the graph a second time, or to read saved tensors "
                  "after they were freed: pass retain_graph=True to the first backward()/grad() "
                  "call if you need to go through the graph again")


# --- the graph walk ---------------------------------------------------------------


def _topological_order(roots):
    """The Functions that `roots` depend on, each before the Functions it depends on.

    Every Function is numbered when it records itself, and its inputs already existed
    then, so newest-first is a valid order for the backward walk.
    """
    seen, stack = set(roots), list(roots)
    while stack:
        fn = stack.pop()
        if fn.inputs is None:
            raise RuntimeError(_FREED_MESSAGE)
        for x in fn.inputs:
            creator = x.creator
            if creator is not None and creator not in seen:
                seen.add(creator)
                stack.append(creator)
    return sorted(seen, key=_sequence_of, reverse=True)


def _root_gradients(outputs, grad_outputs):
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"got {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    grads = []
    for i, (y, gy) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(y, Tensor):
            raise TypeError(f"outputs[{i}] is a {type(y).__name__}, not a Tensor")
        if not y._requires_grad:
            raise RuntimeError(f"outputs[{i}] does not require grad and has no graph: "
                               "did you compute it under no_grad() or from detached tensors?")
        if gy is None:
            if y.numel() != 1:
                raise RuntimeError(f"grad can be created implicitly only for scalar outputs; "
                                   f"outputs[{i}] has shape {y.shape}: pass grad_outputs")
            gy = Tensor._wrap(y.xp.ones_like(y._data))
        else:
            gy = gy if isinstance(gy, Tensor) else Tensor(gy, dtype=y.dtype, device=y.device)
            if gy.shape != y.shape:
                raise RuntimeError(f"mismatch in shape: grad_outputs[{i}] has shape {gy.shape} "
                                   f"but outputs[{i}] has shape {y.shape}")
        grads.append(gy)
    return grads


def _run_backward(outputs, grad_outputs, targets, retain_graph, create_graph):
    """Propagate gradients from `outputs` back through the graph.

    With `targets`, returns {id(t): (t, gradient)} for those tensors and runs only the
    Functions on a path to them. Without, returns the same for every leaf that requires
    grad and every non-leaf that asked for `retain_grad()` (what backward() fills in).
    """
    root_grads = _root_gradients(outputs, grad_outputs)
    order = _topological_order([y.creator for y in outputs if y.creator is not None])

    target_ids = None if targets is None else {id(t) for t in targets}
    reaches = None  # with targets: the Functions on a path to one of them
    if targets is not None:
        reaches = set()
        for fn in reversed(order):  # inputs before consumers
            if any([id(x) in target_ids or x.creator in reaches for x in fn.inputs]):
                reaches.add(fn)

    grad_of_output = {}  # Function -> gradient of its output, summed over its consumers
    captured = {}        # id(tensor) -> (tensor, gradient) for the tensors we report

    def accumulate(x, g):
        creator = x.creator
        if creator is not None and (reaches is None or creator in reaches):
            previous = grad_of_output.get(creator)
            grad_of_output[creator] = g if previous is None else previous + g
        if id(x) in target_ids if target_ids is not None else (creator is None or x._retains_grad):
            previous = captured.get(id(x))
            captured[id(x)] = (x, g if previous is None else previous[1] + g)

    with set_grad_enabled(create_graph):
        for y, gy in zip(outputs, root_grads):
            accumulate(y, gy)
        for fn in order:
            gy = grad_of_output.pop(fn, None)
            if gy is None:  # nothing flows here (not on a path to a target, or no gradient)
                continue
            if fn.needs_inputs:
                fn._check_versions()
            if reaches is None:
                fn.needs_input_grad = list(map(_requires_grad_of, fn.inputs))
            else:
                fn.needs_input_grad = [id(x) in target_ids or x.creator in reaches for x in fn.inputs]
            gxs = fn.backward(gy)
            if type(gxs) is not tuple:
                gxs = (gxs,)
            for x, gx, needed in zip(fn.inputs, gxs, fn.needs_input_grad):
                if gx is None or not needed:
                    continue
                g, a = gx._data, x._data
                if g.shape != a.shape:
                    raise RuntimeError(f"{type(fn).__name__}.backward returned a gradient of shape "
                                       f"{gx.shape} for an input of shape {x.shape}")
                if g.dtype is not a.dtype and g.dtype != a.dtype:
                    gx = gx.astype(a.dtype)
                accumulate(x, gx)
            if not retain_graph:
                fn._release()
    return captured


def backward(tensor, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(tensor)/d(leaf) into `leaf.grad` for every leaf that requires grad."""
    retain_graph = create_graph if retain_graph is None else retain_graph
    grad_outputs = None if gradient is None else [gradient]
    if inputs is not None:
        inputs = list(inputs)
    captured = _run_backward([tensor], grad_outputs, inputs, retain_graph, create_graph)
    for leaf, g in captured.values():
        if not create_graph:
            g = g.detach()
            buffer = getattr(leaf, "grad_buffer", None)
            if buffer is not None:
                _accumulate_into(buffer, leaf, g)
                continue
        leaf.grad = g if leaf.grad is None else leaf.grad + g


def _accumulate_into(buffer, leaf, g):
    """leaf.grad (+)= g, with the gradient kept in `buffer`, the leaf's own array for it."""
    if leaf.grad is None:
        buffer[...] = g._data
    elif leaf.grad._data is buffer:
        buffer += g._data
    else:
        buffer[...] = leaf.grad._data + g._data
    if leaf.grad is None or leaf.grad._data is not buffer:
        leaf.grad = Tensor._wrap(buffer)


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None, allow_unused=False):
    """Gradients of `outputs` with respect to `inputs`, returned as a tuple (PyTorch's meaning).

    With `create_graph=True` the returned gradients are themselves part of a graph and
    can be differentiated again, to any order. `.grad` attributes are left untouched.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single_input = isinstance(inputs, Tensor)
    inputs = [inputs] if single_input else list(inputs)
    if isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs[{i}] is a {type(x).__name__}, not a Tensor")
        if not x._requires_grad:
            raise RuntimeError(f"inputs[{i}] (shape {x.shape}) does not require grad")
    retain_graph = create_graph if retain_graph is None else retain_graph
    captured = _run_backward(outputs, grad_outputs, inputs, retain_graph, create_graph)
    results = []
    for i, x in enumerate(inputs):
        entry = captured.get(id(x))
        if entry is None:
            if not allow_unused:
                raise RuntimeError(f"inputs[{i}] (shape {x.shape}) was not used to compute the "
                                   "outputs; pass allow_unused=True if that is expected")
            results.append(None)
        else:
            results.append(entry[1] if create_graph else entry[1].detach())
    return tuple(results)


def gradient_in_ops(fn, in_ops, gy):
    """The gradients that fused op `fn` owes its inputs, taken through `in_ops(*fn.inputs)`,
    the same function written as a chain of ops, with create_graph=True: so that the
    gradient is itself a graph, for a fused op whose own backward holds something fixed
    that depends on its inputs (higher orders: R1, a gradient penalty)."""
    targets = [t for t, needed in zip(fn.inputs, fn.needs_input_grad) if needed]
    with enable_grad():
        y = in_ops(*fn.inputs)
        grads = iter(grad(y, targets, gy, create_graph=True, allow_unused=True))
    return tuple(next(grads) if needed else None for needed in fn.needs_input_grad)


from .tensor import Tensor  # noqa: E402  (tensor.py imports this module first)

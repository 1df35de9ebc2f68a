"""Module: a network's parameters, buffers and sub-networks, with PyTorch's API."""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that a Module trains: it requires grad unless told otherwise."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter(" + super().__repr__() + ")"


class Module:
    """Base class of every layer and network.

    Assigning a Parameter or a Module to an attribute registers it; `register_buffer`
    adds state that is saved but not trained (running statistics, spectral-norm vectors).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", [])
        object.__setattr__(self, "training", True)

    # --- registration -------------------------------------------------------------------

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before "
                               "assigning attributes")
        if isinstance(value, (Parameter, Module)):
            self._forget(name)
            (self._parameters if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"buffer {name!r} must be a Tensor or None, got {type(value).__name__}")
            self._buffers[name] = value
        elif name in self._parameters and value is not None:
            raise TypeError(f"cannot assign a {type(value).__name__} to parameter {name!r}: "
                            "wrap it in gf.nn.Parameter, or delete the parameter first")
        else:
            self._forget(name)
            object.__setattr__(self, name, value)

    def _forget(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}) needs a Parameter, got {type(param).__name__}")
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        """State that moves with the module and is saved (unless persistent=False), but is not trained."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"buffer {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def register_forward_pre_hook(self, hook):
        """hook(module, inputs) runs before every forward (spectral norm uses it)."""
        self._forward_pre_hooks.append(hook)
        return hook

    # --- walking the tree ---------------------------------------------------------------

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        yield from ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_prefix}.{name}" if module_prefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # --- saving and loading -------------------------------------------------------------

    def state_dict(self):
        """Parameters and persistent buffers by dotted name (detached; sharing memory)."""
        state = OrderedDict()
        for module_prefix, module in self.named_modules():
            dot = f"{module_prefix}." if module_prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    state[dot + name] = p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent:
                    state[dot + name] = b.detach()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into this module's tensors (in place, so optimizers keep their references).

        With strict=True (the default) missing and unexpected keys are an error; a shape
        mismatch always is. Returns (missing_keys, unexpected_keys)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
            if array.size == 1 == target.numel():  # a count saved as (1,) before it became a scalar, as PyTorch's
                continue
            if tuple(array.shape) != target.shape:
                layer = key.rsplit(".", 1)[0] if "." in key else type(self).__name__
                raise ValueError(f"load_state_dict: {key!r} (in {layer}) has shape {tuple(array.shape)} in the "
                                 f"state dict but {target.shape} in the model")
        with no_grad():
            for module_prefix, module in self.named_modules():
                dot = f"{module_prefix}." if module_prefix else ""
                for registry in (module._parameters, module._buffers):
                    for name, tensor in registry.items():
                        if tensor is not None and dot + name in state_dict:
                            value = state_dict[dot + name]
                            if tuple(getattr(value, "shape", ())) != tensor.shape:  # a one-element count
                                value = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
                                value = value.reshape(tensor.shape)
                            tensor.copy_(value)
        return missing, unexpected

    # --- modes and bulk changes ---------------------------------------------------------

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._wrap(p.xp.zeros_like(p._data))

    def requires_grad_(self, flag=True):
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def apply(self, fn):
        """fn(module) on every submodule, children first, then this one (PyTorch's order)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, device=None, dtype=None):
        """Move (and/or cast) every parameter and buffer in place; floating-point ones only for dtype."""
        def convert(t):
            array = t._data
            if device is not None:
                array = backend.to_device(array, device)
            if dtype is not None and array.dtype.kind == "f":
                array = array.astype(dtype, copy=False)  # the same dtype: no copy, a no-op
            if array is not t._data:
                t._data = array
                t._version += 1
                if t.grad is not None:
                    t.grad = None
        for t in list(self.parameters()) + list(self.buffers()):
            convert(t)
        return self

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    # --- running --------------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        for hook in self._forward_pre_hooks:
            hook(self, args)
        return self.forward(*args, **kwargs)

    def fused_with(self, following):
        """A function computing following(self(x)) as one op, or None: how Sequential runs
        a Linear and the activation after it (nn.Linear.fused_with)."""
        return None

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = list(self.named_children())
        if not children:
            return lines[0] + ")"
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after another. Where a module and the next one can run as one
    op (a Linear and the LeakyReLU or ReLU after it, Module.fused_with), they do: the
    result and its gradients are the same, and the module's and the activation's own
    forward are not called."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            fused = modules[i].fused_with(modules[i + 1]) if i + 1 < len(modules) else None
            if fused is None:
                x = modules[i](x)
                i += 1
            else:
                x = self._call_fused(modules[i], modules[i + 1], fused, x)
                i += 2
        return x

    @staticmethod
    def _call_fused(first, second, fused, x):
        """fused(x), standing for second(first(x)): the profiler times the pair here, as
        one layer."""
        return fused(x)

    def __getitem__(self, index):
        items = list(self._modules.values())
        return Sequential(*items[index]) if isinstance(index, slice) else items[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        setattr(self, str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters the parent sees."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, index):
        items = list(self._modules.values())
        return ModuleList(items[index]) if isinstance(index, slice) else items[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

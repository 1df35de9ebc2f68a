"""The kernel registry: one op name, several implementations.

Every kernel has a `ref` implementation in plain `xp` code (NumPy or CuPy) that
runs everywhere and is every test's oracle (ganforge/ops/). Faster ones (`cpp` on the
CPU, `triton` and `cuda` on the GPU) register from ganforge/backends/. `resolve` picks,
in order:
an explicit `impl=` argument, the GANFORGE_KERNELS environment variable
(`GANFORGE_KERNELS=ref` or `GANFORGE_KERNELS=im2col=ref,col2im=cpp`), then the
fastest available implementation for the device (the CHOICE table below), else `ref`. A bare name in the
variable (`GANFORGE_KERNELS=triton`) applies to every op that has such an
implementation on the device; an op named in it must have the one asked for.
"""
import os
import warnings
from dataclasses import dataclass

# Which implementation runs an op when nothing is asked for: the first available one of
# its row, the op's own row if it has one, else its device's "*" row. Measured on an H100
# (docs/benchmarks.md, "Results on the GPU"): the Triton convolutions ran 1.6-4.2x faster than the
# CUDA ones at dcgan28's and dcgan64's large layers, the CUDA spectral norm and gradient
# penalty were the faster of theirs.
CHOICE = {
    # (device, op)                  fastest first
    ("cpu", "*"):                   ("cpp", "ref"),
    ("cuda", "*"):                  ("cuda", "triton", "ref"),
    ("cuda", "conv2d"):             ("triton", "cuda", "ref"),
    ("cuda", "conv_transpose2d"):   ("triton", "cuda", "ref"),
    ("cuda", "conv2d_weight_grad"): ("triton", "cuda", "ref"),
}


def preference(op, device):
    """The implementations of `op` on `device` in the order CHOICE tries them."""
    return CHOICE.get((device, op), CHOICE.get((device, "*"), ("ref",)))


@dataclass
class Kernel:
    op: str
    impl: str
    fn: object
    devices: tuple
    available: object  # a callable returning (ok: bool, reason: str)


_registry = {}
_warned = set()
# What resolve() chose, by (op, device, impl, GANFORGE_KERNELS): every op call asks, and
# on the small tensors of an MLP the asking cost as much as a kernel. register() clears it.
_resolved = {}

# GANFORGE_KERNELS as every call reads it. os.environ.get takes 0.7 us (it encodes the key
# and decodes the value: 2% of the `gan` MLP step at a batch of 64); CPython's store
# behind os.environ answers in 20 ns and sees every change made through os.environ.
try:
    _environ, _KERNELS_KEY = os.environ._data, os.environ.encodekey("GANFORGE_KERNELS")
except AttributeError:  # another Python's os.environ
    _environ, _KERNELS_KEY = os.environ, "GANFORGE_KERNELS"


def register(op, impl, fn, devices, available=None):
    """Add an implementation of `op`. `available()` returns (ok, reason) and is asked lazily."""
    devices = (devices,) if isinstance(devices, str) else tuple(devices)
    available = available or (lambda: (True, ""))
    _registry.setdefault(op, {})[impl] = Kernel(op, impl, fn, devices, available)
    _resolved.clear()


def ops():
    return sorted(_registry)


def implementations(op):
    if op not in _registry:
        raise KeyError(f"no kernel named {op!r}; known: {', '.join(ops())}")
    return _registry[op]


def _requested(op, kernels, device):
    """The implementation GANFORGE_KERNELS asks for this op on this device, or None."""
    spec = os.environ.get("GANFORGE_KERNELS", "").strip()
    if not spec:
        return None
    default = None
    for part in spec.split(","):
        part = part.strip()
        if "=" in part:
            name, impl = (s.strip() for s in part.split("=", 1))
            if name == op:
                return impl
        elif part:
            default = part
    if default is not None and not any(default in impls for impls in _registry.values()):
        known = sorted({name for impls in _registry.values() for name in impls})
        raise ValueError(f"GANFORGE_KERNELS={spec!r} names no implementation {default!r}; known: {', '.join(known)}")
    if default in kernels and device in kernels[default].devices:
        return default
    return None


def resolve(op, device="cpu", impl=None):
    """The Kernel that will run `op` on `device`."""
    kernels = implementations(op)
    explicit = impl or _requested(op, kernels, device)
    if explicit is not None:
        if explicit not in kernels:
            raise ValueError(f"kernel {op!r} has no implementation {explicit!r}; "
                             f"choose from {', '.join(sorted(kernels))}")
        kernel = kernels[explicit]
        if device not in kernel.devices:
            raise ValueError(f"kernel {op}/{explicit} does not run on {device!r} "
                             f"(it runs on {', '.join(kernel.devices)})")
        ok, reason = kernel.available()
        if not ok:
            raise RuntimeError(f"kernel {op}/{explicit} was asked for but is unavailable: {reason}")
        return kernel
    for name in preference(op, device):
        kernel = kernels.get(name)
        if kernel is None or device not in kernel.devices:
            continue
        ok, reason = kernel.available()
        if ok:
            return kernel
        if (op, name) not in _warned:
            _warned.add((op, name))
            warnings.warn(f"ganforge: {op}/{name} is unavailable ({reason}); falling back", RuntimeWarning,
                          stacklevel=3)
    raise RuntimeError(f"no implementation of {op!r} runs on {device!r}")


def call(op, *args, device="cpu", impl=None, **kwargs):
    key = (op, device, impl, _environ.get(_KERNELS_KEY))
    kernel = _resolved.get(key)
    if kernel is None:
        kernel = _resolved[key] = resolve(op, device, impl)
    return kernel.fn(*args, **kwargs)


def table():
    """(op, device, chosen impl, {impl: status}) rows for `ganforge info`."""
    rows = []
    for op in ops():
        for device in ("cpu", "cuda"):
            kernels = [k for k in _registry[op].values() if device in k.devices]
            if not kernels:
                continue
            statuses = {k.impl: k.available() for k in kernels}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    chosen = resolve(op, device).impl
                except (RuntimeError, ValueError) as exc:
                    chosen = f"error: {exc}"
            rows.append((op, device, chosen, statuses))
    return rows

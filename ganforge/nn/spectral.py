"""Spectral normalization (Miyato et al. 2018) with PyTorch's semantics.

`spectral_norm(module)` replaces `module.weight` by `weight_orig / sigma`, where sigma,
the largest singular value of the weight (viewed as a matrix with `dim` first), is
estimated by power iteration. The vectors u and v are buffers: one iteration refines
them on every forward in training mode (none in eval), and sigma = u^T W v is
differentiated with u and v held constant.
"""
from ..autograd import no_grad
from ..ops.spectral import SpectralNormalize
from .module import Parameter
from ..tensor import Tensor, default_generator
from .layers import ConvTranspose2d


class SpectralNorm:
    """The forward pre-hook that recomputes module.<name> before every call."""

    def __init__(self, name, n_power_iterations, eps, dim):
        self.name, self.n_power_iterations, self.eps, self.dim = name, n_power_iterations, eps, dim

    def compute_weight(self, module, do_power_iteration):
        weight = getattr(module, self.name + "_orig")
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        normalize = SpectralNormalize(u._data, v._data, self.n_power_iterations if do_power_iteration else 0,
                                      self.eps, self.dim)
        normalized = normalize(weight)
        if do_power_iteration:
            with no_grad():
                u.copy_(normalize.u)
                v.copy_(normalize.v)
        return normalized

    def __call__(self, module, inputs):
        object.__setattr__(module, self.name, self.compute_weight(module, module.training))


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None, generator=None):
    """Wrap `module` (in place, returning it) so that its `name` parameter is spectrally normalized."""
    if any(isinstance(h, SpectralNorm) and h.name == name for h in module._forward_pre_hooks):
        raise RuntimeError(f"spectral_norm is already applied to {name!r} of {type(module).__name__}")
    if name not in module._parameters or module._parameters[name] is None:
        raise ValueError(f"spectral_norm: {type(module).__name__} has no parameter {name!r}")
    if n_power_iterations < 1:
        raise ValueError(f"spectral_norm needs at least one power iteration, got {n_power_iterations}")
    if dim is None:
        dim = 1 if isinstance(module, ConvTranspose2d) else 0
    weight = module._parameters.pop(name)
    rows = weight.shape[dim]
    cols = weight.numel() // rows
    gen = generator or default_generator(weight.device)
    xp = weight.xp

    def unit_vector(n):
        r = xp.asarray(gen.normal((n,), weight.dtype))
        return r / max(float(xp.linalg.norm(r)), eps)
    module.register_parameter(name + "_orig", weight)
    module.register_buffer(name + "_u", Tensor(unit_vector(rows)))
    module.register_buffer(name + "_v", Tensor(unit_vector(cols)))
    hook = SpectralNorm(name, n_power_iterations, eps, dim)
    object.__setattr__(module, name, weight.detach())
    module.register_forward_pre_hook(hook)
    return module


def remove_spectral_norm(module, name="weight"):
    """Undo spectral_norm (in place, returning the module): `name` becomes a plain parameter
    again, holding the normalized weight as it stands (weight_orig / sigma)."""
    hooks = [h for h in module._forward_pre_hooks if isinstance(h, SpectralNorm) and h.name == name]
    if not hooks:
        raise ValueError(f"remove_spectral_norm: spectral_norm of {name!r} is not applied to {type(module).__name__}")
    with no_grad():
        weight = hooks[0].compute_weight(module, do_power_iteration=False)
    module._forward_pre_hooks.remove(hooks[0])
    for suffix in ("_orig", "_u", "_v"):
        delattr(module, name + suffix)
    module.__dict__.pop(name, None)
    module.register_parameter(name, Parameter(weight._data.copy()))
    return module

"""`nn.utils` as PyTorch spells it: spectral norm on and off, and gradient clipping (which
lives in ganforge.optim, beside the optimizers that use it), and functional_call."""
from contextlib import contextmanager

from ..optim import clip_grad_norm_, clip_grad_value_  # noqa: F401
from .spectral import remove_spectral_norm, spectral_norm  # noqa: F401


@contextmanager
def swapped_parameters(module, tensors):
    """Inside the block `module` computes with `tensors` (by dotted name) in place of those
    of its parameters; functional_call is one call inside it."""
    owners = dict(module.named_modules())
    saved = []
    try:
        for name, tensor in tensors.items():
            path, _, leaf = name.rpartition(".")
            owner = owners.get(path)
            if owner is None or leaf not in owner._parameters:
                raise KeyError(f"functional_call: {type(module).__name__} has no parameter {name!r}")
            saved.append((owner, leaf, owner._parameters[leaf]))
            owner._parameters[leaf] = tensor
        yield
    finally:
        for owner, leaf, param in reversed(saved):
            owner._parameters[leaf] = param


def functional_call(module, parameters, args=(), kwargs=None):
    """module(*args, **kwargs) computed with the tensors in `parameters` (by dotted name, as
    named_parameters gives them) in place of its own, as torch.func.functional_call does.
    The tensors may be any tensors, results of other ops included, so the output
    differentiates back through however they were computed (the unrolled GAN's
    discriminator after k differentiable updates). The module's own parameters are back
    in place afterwards."""
    args = args if isinstance(args, tuple) else (args,)
    with swapped_parameters(module, parameters):
        return module(*args, **(kwargs or {}))

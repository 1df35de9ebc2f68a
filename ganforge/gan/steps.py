"""Small helpers a model's train_step calls: one optimizer update, networks in eval mode
or frozen while another trains through them, a penalty chosen by name, an unrolled look-ahead."""
import copy
from contextlib import contextmanager

from .. import optim
from .penalties import gradient_penalty, r1_penalty

PENALTIES = ("none", "gp", "gp_one_sided", "r1")


def update(optimizer, loss, clip_grad_norm=None):
    """zero_grad, backward, step: one update of the optimizer's parameters on `loss`,
    their gradient norm clipped to `clip_grad_norm` first when it is given."""
    optimizer.zero_grad()
    loss.backward()
    if clip_grad_norm:
        optimizer.synchronize()  # clip the gradient every rank steps with, not this rank's own
        optim.clip_grad_norm_(optimizer.params, clip_grad_norm)
    optimizer.step()


@contextmanager
def in_eval_mode(*nets):
    """These networks in eval mode inside (batch norm on its running statistics, no dropout),
    each back in the mode it had afterwards: for pictures, scores and inference mid-training."""
    modes = [net.training for net in nets]
    for net in nets:
        net.eval()
    try:
        yield
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


@contextmanager
def frozen(*nets):
    """No parameter gradients for these networks inside: a generator's loss goes through
    the discriminator, whose weight gradients would be computed and thrown away."""
    for net in nets:
        net.requires_grad_(False)
    try:
        yield
    finally:
        for net in nets:
            net.requires_grad_(True)


def discriminator_penalty(name, critic, real, fake, weight, generator=None):
    """The penalty `--penalty NAME` asks for, on `critic` (a function of images), or None:
    the gradient penalty on interpolates (two- or one-sided) or R1 on real data."""
    if name in (None, "none"):
        return None
    if name in ("gp", "gp_one_sided"):
        return gradient_penalty(critic, real, fake, weight, name == "gp_one_sided", generator)
    if name == "r1":
        return r1_penalty(critic, real, weight)
    raise ValueError(f"unknown penalty {name!r}: use one of {', '.join(PENALTIES)}")


@contextmanager
def unrolled(net, optimizer, steps, update_once):
    """Unrolled GAN (Metz et al. 2017): inside the block `net` is `steps` updates ahead
    (`update_once()` each), so a generator scored there cannot profit from moving all its
    mass to where D is weak today; afterwards `net` and its optimizer are back where they
    were. (Metz et al. also differentiate through those updates; this is the first-order form.)"""
    if not steps:
        yield
        return
    weights = {k: t.numpy().copy() for k, t in net.state_dict().items()}
    moments = copy.deepcopy(optimizer.state_dict())
    for _ in range(steps):
        update_once()
    try:
        yield
    finally:
        net.load_state_dict(weights)
        optimizer.load_state_dict(moments)

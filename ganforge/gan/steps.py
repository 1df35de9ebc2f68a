"""Small helpers a model's train_step calls: one optimizer update, networks in eval mode
or frozen while another trains through them, a penalty chosen by name, an unrolled look-ahead."""
import copy
from contextlib import contextmanager

from .. import optim
from ..autograd import grad
from ..nn.utils import swapped_parameters
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
    were. This is the first-order form: the generator's gradient does not flow through the
    look-ahead updates (unrolled_parameters below is the form that does)."""
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


def unrolled_parameters(net, optimizer, steps, loss_of):
    """Unrolled GAN as Metz et al. (2017) wrote it: `net`'s parameters after `steps` updates
    by `optimizer`, each on loss_of() computed with the parameters so far, kept as tensors
    whose graph holds every update. A generator loss computed with them (through
    nn.utils.functional_call) differentiates through the updates, so the generator also
    sees how D would react to its move. `net` and `optimizer` are left as they were
    (batch-norm statistics included); returns {dotted name: tensor}."""
    names, params = zip(*net.named_parameters())
    slot = {id(p): i for i, p in enumerate(optimizer.params)}
    if any(id(p) not in slot for p in params):
        raise ValueError("unrolled_parameters: the optimizer must hold every parameter of the network it unrolls")
    states = [optimizer.state[slot[id(p)]] for p in params]
    buffers = {k: t.numpy().copy() for k, t in net.state_dict().items()}
    # the unrolling starts from fresh leaves: the generator's gradient is all that is wanted,
    # and the network's own parameters stay out of the graph
    weights = [p.detach().requires_grad_() for p in params]
    try:
        for _ in range(steps):
            with swapped_parameters(net, dict(zip(names, weights))):
                loss = loss_of()
            grads = grad(loss, weights, create_graph=True)
            weights, states = optimizer.differentiable_step(weights, grads, states)
    finally:
        net.load_state_dict(buffers)
    return dict(zip(names, weights))

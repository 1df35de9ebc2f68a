"""Optimizers, gradient clipping, a weight EMA and learning-rate schedules.

Updates happen in place on the parameters' arrays under no_grad(), so models and
optimizers keep referring to the same tensors. Every optimizer's state_dict() holds
plain arrays and numbers (what a checkpoint saves) and load_state_dict() restores it.
"""
import math
import types

import numpy as np

from . import dispatch
from .autograd import no_grad
from .backend import device_of, to_device, xp_of
from .tensor import Tensor


class Optimizer:
    """Holds the parameters and per-parameter state; subclasses define `update`."""

    defaults = {}

    def __init__(self, params, **hyperparameters):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        unknown = set(hyperparameters) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown arguments {sorted(unknown)}")
        self.hyper = {**self.defaults, **hyperparameters}
        if self.hyper.get("lr", 0) < 0:
            raise ValueError(f"learning rate must be non-negative, got {self.hyper['lr']}")
        self.state = [dict() for _ in self.params]
        self.step_count = 0
        # Data-parallel training (distributed.py) sets this: it averages the gradients over the ranks
        self.gradient_sync = None
        self._synchronized = False

    @property
    def lr(self):
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value):
        self.hyper["lr"] = value

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None if set_to_none or p.grad is None else p.grad * 0

    def synchronize(self):
        """Make the gradients final before they are read: in data-parallel training, average
        them over the ranks (once per update); in one process, nothing. step() calls it, and
        so does whatever reads the gradients before the step (gan/steps.py's clipping)."""
        if self.gradient_sync is not None and not self._synchronized:
            self.gradient_sync()
            self._synchronized = True

    @no_grad()
    def step(self):
        """One update of every parameter that has a gradient, in place."""
        self.synchronize()
        self._synchronized = False  # the next backward brings new gradients
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            self.apply(p, p.grad._data, state)

    def apply(self, p, grad, state):
        """Update the parameter tensor p in place: by default, subtract `update`."""
        p.sub_(self.update(p._data, grad, state))

    def update(self, param, grad, state):
        """The amount to subtract from param (a fresh array the caller may consume)."""
        raise NotImplementedError

    def differentiable_step(self, params, grads, states):
        """One update written in Tensor ops instead of in place: takes the parameters, their
        gradients (which may carry a graph, from autograd.grad(create_graph=True)) and per-parameter
        states (dicts as in self.state), returns the new parameters and states as tensors that
        remember how they were computed. The optimizer itself is not touched. This is what
        the unrolled GAN differentiates through (gan/steps.py, unrolled_parameters)."""
        raise NotImplementedError(f"{type(self).__name__} has no differentiable step: differentiating through "
                                  "updates is written for Adam and SGD")

    def state_dict(self):
        return {"hyperparameters": dict(self.hyper), "step_count": self.step_count,
                "state": [{k: (to_device(v, "cpu") if hasattr(v, "shape") else v) for k, v in s.items()}
                          for s in self.state]}

    def load_state_dict(self, state_dict):
        state = state_dict["state"]
        if len(state) != len(self.params):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state has {len(state)} parameters, "
                             f"this optimizer {len(self.params)}")
        for i, (p, s) in enumerate(zip(self.params, state)):
            for key, value in s.items():
                if hasattr(value, "shape") and tuple(value.shape) != p.shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: {key!r} of parameter {i} has "
                                     f"shape {tuple(value.shape)}, the parameter {p.shape}")
        self.hyper.update(state_dict["hyperparameters"])
        self.step_count = state_dict["step_count"]
        self.state = [{k: (p.xp.asarray(v, dtype=p.dtype) if hasattr(v, "shape") else v) for k, v in s.items()}
                      for p, s in zip(self.params, state)]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (PyTorch's form) and Nesterov."""

    defaults = {"lr": 1e-2, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}

    def __init__(self, params, lr=1e-2, **kwargs):
        super().__init__(params, lr=lr, **kwargs)
        if self.hyper["nesterov"] and (self.hyper["momentum"] <= 0 or self.hyper["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")

    def update(self, param, grad, state):
        h = self.hyper
        if h["weight_decay"]:
            grad = grad + h["weight_decay"] * param
        if h["momentum"]:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.copy()
            else:
                state["momentum_buffer"] = h["momentum"] * state["momentum_buffer"] + (1 - h["dampening"]) * grad
            buf = state["momentum_buffer"]
            grad = grad + h["momentum"] * buf if h["nesterov"] else buf
        return h["lr"] * grad

    def differentiable_step(self, params, grads, states):
        h = self.hyper
        new_params, new_states = [], []
        for param, grad, state in zip(params, grads, states):
            if h["weight_decay"]:
                grad = grad + h["weight_decay"] * param
            state = dict(state)
            if h["momentum"]:
                buffer = _as_tensor(state.get("momentum_buffer"))
                buffer = grad if buffer is None else h["momentum"] * buffer + (1 - h["dampening"]) * grad
                state["momentum_buffer"] = buffer
                grad = grad + h["momentum"] * buffer if h["nesterov"] else buffer
            new_params.append(param - h["lr"] * grad)
            new_states.append(state)
        return new_params, new_states


def _as_tensor(value):
    """An optimizer state's array as a constant tensor (None stays None)."""
    return value if value is None or isinstance(value, Tensor) else Tensor(value)


def adam_step_ref(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step):
    """One step of Adam (Kingma & Ba, Algorithm 1), updating param and both moments in place.
    A kernel of the registry: backends/cpu/kernels.py has it as one pass in C++."""
    exp_avg[...] = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = exp_avg / (1 - beta1 ** step)
    v_hat = exp_avg_sq / (1 - beta2 ** step)
    param -= lr * m_hat / (xp_of(grad).sqrt(v_hat) + eps)


dispatch.register("adam_step", "ref", adam_step_ref, ("cpu", "cuda"))


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; weight_decay adds L2 to the gradient."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}

    def __init__(self, params, lr=1e-3, **kwargs):
        super().__init__(params, lr=lr, **kwargs)

    def apply(self, p, grad, state):
        h = self.hyper
        if h["weight_decay"]:
            grad = grad + h["weight_decay"] * p._data
        if "exp_avg" not in state:
            state["step"] = 0
            # C-ordered even when the gradient is a transposed view (of a weight used as
            # x @ w.T), so that the compiled step takes them
            xp = xp_of(grad)
            state["exp_avg"], state["exp_avg_sq"] = xp.zeros(grad.shape, grad.dtype), xp.zeros(grad.shape, grad.dtype)
        state["step"] += 1
        p._inplace(lambda param: dispatch.call("adam_step", param, grad, state["exp_avg"], state["exp_avg_sq"],
                                               h["lr"], *h["betas"], h["eps"], state["step"],
                                               device=device_of(param)))

    def differentiable_step(self, params, grads, states):
        h = self.hyper
        beta1, beta2 = h["betas"]
        new_params, new_states = [], []
        for param, grad, state in zip(params, grads, states):
            if h["weight_decay"]:
                grad = grad + h["weight_decay"] * param
            step = state.get("step", 0) + 1
            exp_avg, exp_avg_sq = (1 - beta1) * grad, (1 - beta2) * grad * grad
            if "exp_avg" in state:
                exp_avg = exp_avg + beta1 * _as_tensor(state["exp_avg"])
                exp_avg_sq = exp_avg_sq + beta2 * _as_tensor(state["exp_avg_sq"])
            m_hat = exp_avg / (1 - beta1 ** step)
            v_hat = exp_avg_sq / (1 - beta2 ** step)
            # the tiny term keeps sqrt's derivative finite where a gradient is exactly 0
            # (1/(2 sqrt 0) times a zero cotangent would be NaN); it changes no float32 sum above 1e-23
            new_params.append(param - h["lr"] * m_hat / ((v_hat + 1e-30).sqrt() + h["eps"]))
            new_states.append({"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq})
        return new_params, new_states


class RMSprop(Optimizer):
    """RMSprop (Hinton), PyTorch's form: the WGAN paper's optimizer."""

    defaults = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0, "centered": False}

    def __init__(self, params, lr=1e-2, **kwargs):
        super().__init__(params, lr=lr, **kwargs)

    def update(self, param, grad, state):
        h = self.hyper
        if h["weight_decay"]:
            grad = grad + h["weight_decay"] * param
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(grad)
        square_avg = state["square_avg"]
        square_avg *= h["alpha"]
        square_avg += (1 - h["alpha"]) * grad * grad
        average = square_avg
        if h["centered"]:
            state.setdefault("grad_avg", np.zeros_like(grad))
            state["grad_avg"] = h["alpha"] * state["grad_avg"] + (1 - h["alpha"]) * grad
            average = square_avg - state["grad_avg"] ** 2
        step = grad / (average ** 0.5 + h["eps"])
        if h["momentum"]:
            state["momentum_buffer"] = h["momentum"] * state.get("momentum_buffer", 0) + step
            step = state["momentum_buffer"]
        return h["lr"] * step


@no_grad()
def clip_grad_norm_(params, max_norm, norm_type=2.0):
    """Scale all gradients together so that their joint norm is at most max_norm; returns the norm."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == float("inf"):
        total = max(float(abs(g._data).max()) for g in grads)
    else:
        total = sum(float((abs(g._data) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    if not math.isfinite(total):
        raise FloatingPointError(f"clip_grad_norm_: the gradients' norm is {total}")
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g.mul_(scale)
    return total


@no_grad()
def clip_grad_value_(params, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value]."""
    for p in params:
        if p.grad is not None:
            p.grad.clamp_(-clip_value, clip_value)


class EMA:
    """An exponential moving average of a model's parameters (and a copy of its buffers),
    the generator weights GANs sample from: shadow = d * shadow + (1 - d) * param.

    With warmup (the default), d = min(decay, (1 + n) / (10 + n)) after n updates, so the
    average forgets the random initial weights quickly instead of over ~1/(1 - decay) steps.
    A `schedule` (n -> d) replaces both, for a model with its own ramp-up."""

    def __init__(self, model, decay=0.999, warmup=True, schedule=None):
        if not 0 <= decay <= 1:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.model, self.decay, self.warmup, self.updates = model, decay, warmup, 0
        self.schedule = schedule  # updates -> decay, in place of decay and warmup (StyleGAN2's ramp-up)
        self.shadow = {name: t._data.copy() for name, t in model.state_dict().items()}

    def current_decay(self):
        if self.schedule is not None:
            return self.schedule(self.updates)
        return min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay

    @no_grad()
    def update(self):
        params = dict(self.model.named_parameters())
        decay = self.current_decay()
        self.updates += 1
        for name, value in self.model.state_dict().items():
            if name in params and value._data.dtype.kind == "f":
                self.shadow[name] *= decay
                self.shadow[name] += (1 - decay) * value._data
            else:  # buffers (running statistics, spectral-norm vectors) are copied
                self.shadow[name] = value._data.copy()

    def copy_to(self, model=None):
        """Load the averaged weights into `model` (by default the tracked one)."""
        (model or self.model).load_state_dict(self.shadow)

    def state_dict(self):
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates,
                "shadow": {k: to_device(v, "cpu") for k, v in self.shadow.items()}}

    def load_state_dict(self, state):
        current = self.model.state_dict()
        if set(state["shadow"]) != set(current):
            raise ValueError(f"EMA.load_state_dict: the averaged entries {sorted(state['shadow'])} do not match "
                             f"the model's {sorted(current)}")
        self.decay, self.warmup, self.updates = state["decay"], state.get("warmup", True), state.get("updates", 0)
        # On the model's device and in its dtypes (a checkpoint holds host arrays).
        # (reshaped: a batch-norm count was saved as (1,) before it became a scalar, as PyTorch's)
        self.shadow = {k: current[k].xp.array(v, dtype=current[k].dtype).reshape(current[k].shape)
                       for k, v in state["shadow"].items()}


class LinearDecayLR:
    """Keep the learning rate until `start`, then decay it linearly to 0 at `total` steps
    (the schedule of CycleGAN and many GAN recipes). Call step() once per optimizer step."""

    def __init__(self, optimizer, total, start=0):
        if not 0 <= start < total:
            raise ValueError(f"LinearDecayLR needs 0 <= start < total, got start={start}, total={total}")
        self.optimizer, self.total, self.start = optimizer, total, start
        self.base_lr, self.steps = optimizer.lr, 0

    def factor(self, steps):
        return 1.0 if steps <= self.start else max(0.0, 1 - (steps - self.start) / (self.total - self.start))

    def step(self):
        self.steps += 1
        self.optimizer.lr = self.base_lr * self.factor(self.steps)

    def state_dict(self):
        return {"steps": self.steps, "base_lr": self.base_lr, "total": self.total, "start": self.start}

    def load_state_dict(self, state):
        self.steps, self.base_lr, self.total, self.start = (state["steps"], state["base_lr"], state["total"],
                                                            state["start"])
        self.optimizer.lr = self.base_lr * self.factor(self.steps)


class LRScheduler:
    """A learning-rate schedule shaped like torch.optim.lr_scheduler's: made after its
    optimizer (whose lr it takes as the base), it sets the optimizer's lr to lr_at(0) at
    once, and each step() moves one epoch (or step) on: lr = lr_at(last_epoch). Subclasses
    write lr_at, the closed form of the schedule."""

    def __init__(self, optimizer):
        self.optimizer, self.base_lr, self.last_epoch = optimizer, optimizer.lr, 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch):
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self):
        """[lr], a list as PyTorch's (one entry per parameter group; ganforge has one)."""
        return [self.optimizer.lr]

    def state_dict(self):
        return {key: value for key, value in vars(self).items() if key != "optimizer" and not callable(value)}

    def load_state_dict(self, state):
        vars(self).update(state)
        self.optimizer.lr = self.lr_at(self.last_epoch)


def _positive(name, value, schedule):
    if not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{schedule}: {name} must be a positive whole number of epochs, got {value!r}")
    return value


class StepLR(LRScheduler):
    """base lr x gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = _positive("step_size", step_size, "StepLR"), gamma
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class LambdaLR(LRScheduler):
    """base lr x lr_lambda(epoch). The function is not part of state_dict (as in PyTorch):
    give the same one when rebuilding the schedule to resume it."""

    def __init__(self, optimizer, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError(f"LambdaLR: lr_lambda must be a function of the epoch, got {lr_lambda!r}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * self.lr_lambda(epoch)


class CosineAnnealingLR(LRScheduler):
    """From the base lr down to eta_min along half a cosine over T_max epochs (Loshchilov &
    Hutter 2017, without restarts): eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0):  # noqa: N803 (PyTorch's name)
        self.T_max, self.eta_min = _positive("T_max", T_max, "CosineAnnealingLR"), eta_min
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


# PyTorch's spelling, optim.lr_scheduler.StepLR(...). An attribute, not a module: optim is
# one file, so `from ganforge.optim.lr_scheduler import StepLR` does not work.
lr_scheduler = types.SimpleNamespace(LRScheduler=LRScheduler, StepLR=StepLR, LambdaLR=LambdaLR,
                                     CosineAnnealingLR=CosineAnnealingLR, LinearDecayLR=LinearDecayLR)

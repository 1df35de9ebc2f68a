"""The training loop: n_critic discriminator steps per generator step, an EMA of the
generator, seeded data and noise, checkpoints that resume exactly, a guard against
NaN/Inf, logs, sample grids and loss curves.

One step, as in BENCH_MODELS.md: the discriminator is updated on a real batch and a
detached generated batch; the generator is then updated through a fresh discriminator
pass over the same generated batch (with n_critic > 1, the last one).
"""
import copy
import csv
import dataclasses
import json
import math
import os
import shutil

import numpy as np

from .. import __version__
from .. import io, optim
from ..autograd import no_grad
from ..data import DataLoader, load_fashion_mnist, load_image_folder, mixture, sample_mixture
from ..data.fashion_mnist import CLASSES
from ..tensor import Generator, Tensor, default_generator, manual_seed, randn
from .losses import discriminator_loss, generator_loss
from .nets import with_minibatch_discrimination
from .penalties import clip_weights_, gradient_penalty, r1_penalty
from .variants import get_variant

DEFAULTS = {"steps": 3000, "batch_size": 64, "z_dim": 100, "seed": 0, "device": "cpu", "data_path": None,
            "resolution": None, "channels": None, "sample_every": 500, "checkpoint_every": 500, "log_every": 50,
            "ema_decay": 0.999, "lr_decay": False, "rollback": False, "flatten": False, "progress": True,
            # mode-collapse remedies: look-ahead discriminator steps for the generator's loss
            # (unrolled GAN), minibatch-discrimination features in D, a bound on gradient norms
            "unrolled_steps": 0, "minibatch_discrimination": False, "clip_grad_norm": None,
            # None: the variant's own; a value replaces it (a recipe for other data)
            "lr": None, "betas": None, "n_critic": None, "penalty": None, "penalty_weight": None}
VARIANT_OPTIONS = ("lr", "betas", "n_critic", "penalty", "penalty_weight")
PENALTIES = ("none", "gp", "gp_one_sided", "r1")
MIXTURE_POINTS = 100_000  # 2-D data sets are drawn once, from the run's seed, then batched like images


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


def load_data(config):
    """(samples, labels or None, class names or None) for the configured data set."""
    name = config["data"]
    if name in ("ring8", "grid25"):
        return sample_mixture(name, MIXTURE_POINTS, np.random.default_rng(config["seed"])), None, None
    if name == "fashion-mnist":
        images, labels = load_fashion_mnist(config["data_path"], "train")
        return images, labels, CLASSES
    if os.path.isdir(name):
        resolution = config["resolution"] or 64
        return load_image_folder(name, resolution, config["channels"] or 3), None, None
    raise ValueError(f"unknown data set {name!r}: use ring8, grid25, fashion-mnist, or the path of a folder of "
                     "PNG/JPEG images")


class Trainer:
    def __init__(self, variant, out_dir, **overrides):
        self.variant = get_variant(variant) if isinstance(variant, str) else variant
        unknown = set(overrides) - set(DEFAULTS) - {"data"}
        if unknown:
            raise TypeError(f"unknown training options {sorted(unknown)}")
        self.config = {**DEFAULTS, **self.variant.defaults,
                       **{k: v for k, v in overrides.items() if v is not None}}
        self.variant = self._with_options(self.variant, self.config)
        self.out_dir = out_dir
        cfg = self.config
        samples, labels, self.class_names = load_data(cfg)
        if self.variant.conditional and labels is None:
            raise ValueError(f"{self.variant.name} is class-conditional and needs a labelled data set "
                             "(fashion-mnist)")
        if cfg["flatten"] and samples.ndim == 4:
            self.image_shape = samples.shape[1:]
            samples = samples.reshape(len(samples), -1)
        else:
            self.image_shape = samples.shape[1:] if samples.ndim == 4 else None
        self.data_shape = samples.shape[1:]
        self.num_classes = len(self.class_names) if self.variant.conditional else None
        manual_seed(cfg["seed"])  # the networks' initial weights
        self.G, self.D = self.variant.build(self.data_shape, cfg["z_dim"], self.num_classes)
        if cfg["minibatch_discrimination"]:
            self.D = with_minibatch_discrimination(self.D)
        self.G_ema, _ = self.variant.build(self.data_shape, cfg["z_dim"], self.num_classes)
        for net in (self.G, self.D, self.G_ema):
            net.to(cfg["device"])
        self.G_ema.load_state_dict(self.G.state_dict())
        self.G_ema.eval()
        self.opt_g, self.opt_d = self._optimizer(self.G), self._optimizer(self.D)
        # Decaying both learning rates linearly to 0 lets a generator settle on the modes
        # instead of jittering around them (what the 2-D recipes need); one step per G update.
        self.schedules = [optim.LinearDecayLR(opt, cfg["steps"]) for opt in (self.opt_g, self.opt_d)] \
            if cfg["lr_decay"] else []
        self.ema = optim.EMA(self.G, cfg["ema_decay"])
        arrays = (samples,) if labels is None else (samples, labels)
        self.loader = DataLoader(*arrays, batch_size=cfg["batch_size"], seed=cfg["seed"])
        self.noise = Generator(cfg["seed"] + 1, cfg["device"])  # z and the penalties' random numbers
        fixed = Generator(cfg["seed"] + 2, cfg["device"])
        self.fixed_z = self._z(80 if self.variant.conditional else (2500 if len(self.data_shape) == 1 else 64), fixed)
        self.step, self.history = 0, []

    @staticmethod
    def _with_options(variant, config):
        """The variant with the configured lr, betas, n_critic and penalty in place of its
        own; the config is filled with the values in use, so a checkpoint records them."""
        if config["penalty"] is not None and config["penalty"] not in PENALTIES:
            raise ValueError(f"unknown penalty {config['penalty']!r}: use one of {', '.join(PENALTIES)}")
        chosen = {k: config[k] for k in VARIANT_OPTIONS if config[k] is not None}
        if "betas" in chosen:
            chosen["betas"] = tuple(chosen["betas"])
        if chosen.get("penalty") == "none":
            chosen["penalty"] = None
        variant = dataclasses.replace(variant, **chosen)
        for k in VARIANT_OPTIONS:
            config[k] = getattr(variant, k)
        config["penalty"] = config["penalty"] or "none"
        return variant

    # --- pieces of a step --------------------------------------------------------------------

    def _optimizer(self, net):
        v = self.variant
        if v.optimizer == "rmsprop":
            return optim.RMSprop(net.parameters(), lr=v.lr)
        return optim.Adam(net.parameters(), lr=v.lr, betas=v.betas)

    def _z(self, n, generator=None):
        shape = (n, self.config["z_dim"]) + ((1, 1) if len(self.data_shape) == 3 else ())
        return randn(*shape, device=self.config["device"], generator=generator or self.noise)

    def _batch(self):
        batch = self.loader.next_batch()
        real, labels = batch if isinstance(batch, tuple) else (batch, None)
        device = self.config["device"]
        return real.to(device), None if labels is None else labels.to(device)

    def _generate(self, z, labels):
        return self.G(z, labels) if self.variant.conditional else self.G(z)

    def _discriminate(self, x, labels):
        return self.D(x, labels) if self.variant.conditional else self.D(x)

    def _penalty(self, real, fake, labels):
        v = self.variant
        critic = (lambda x: self.D(x, labels)) if v.conditional else self.D
        if v.penalty in ("gp", "gp_one_sided"):
            return gradient_penalty(critic, real, fake, v.penalty_weight, v.penalty == "gp_one_sided", self.noise)
        if v.penalty == "r1":
            return r1_penalty(critic, real, v.penalty_weight)
        return None

    def _discriminator_step(self, keep_fake):
        """One discriminator update on a fresh real batch and a fresh generated one; returns
        (loss, penalty, fake, labels), `fake` keeping its graph when asked."""
        v = self.variant
        real, labels = self._batch()
        z = self._z(real.shape[0])
        if keep_fake:
            fake = self._generate(z, labels)
        else:
            with no_grad():
                fake = self._generate(z, labels)
        loss_d = discriminator_loss(v.loss, self._discriminate(real, labels),
                                    self._discriminate(fake.detach(), labels))
        penalty = self._penalty(real, fake, labels)
        total_d = loss_d if penalty is None else loss_d + penalty
        self._update(self.D, self.opt_d, total_d)
        if v.weight_clip:
            clip_weights_(self.D, v.weight_clip)
        return loss_d, penalty, fake, labels

    def _update(self, net, opt, loss):
        opt.zero_grad()
        loss.backward()
        if self.config["clip_grad_norm"]:
            optim.clip_grad_norm_(net.parameters(), self.config["clip_grad_norm"])
        opt.step()

    def train_step(self):
        """One generator update and n_critic discriminator updates; returns the losses."""
        v = self.variant
        for i in range(v.n_critic):
            loss_d, penalty, fake, labels = self._discriminator_step(keep_fake=i == v.n_critic - 1)
        unrolled_from = None
        if self.config["unrolled_steps"]:
            # Unrolled GAN (Metz et al. 2017): the generator is scored by the discriminator
            # as it will be k updates from now, so it cannot profit from moving all its mass
            # to where D is weak today. D then goes back to where it was. (Metz et al. also
            # differentiate through those k updates; this is the first-order form.)
            unrolled_from = ({k: t.numpy().copy() for k, t in self.D.state_dict().items()},
                             copy.deepcopy(self.opt_d.state_dict()))
            for _ in range(self.config["unrolled_steps"]):
                self._discriminator_step(keep_fake=False)
        self.D.requires_grad_(False)  # the generator step needs no discriminator gradients
        try:
            loss_g = generator_loss(v.loss, self._discriminate(fake, labels))
            self._update(self.G, self.opt_g, loss_g)
        finally:
            self.D.requires_grad_(True)
        if unrolled_from is not None:
            self.D.load_state_dict(unrolled_from[0])
            self.opt_d.load_state_dict(unrolled_from[1])
        self.ema.update()
        for schedule in self.schedules:
            schedule.step()
        self.step += 1
        losses = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
        if penalty is not None:
            losses["penalty"] = penalty.item()
        return losses

    # --- the loop ---------------------------------------------------------------------------

    def train(self, steps=None):
        """Train until `steps` (default: the configured number) generator updates are done."""
        cfg = self.config
        target = steps or cfg["steps"]
        os.makedirs(self.out_dir, exist_ok=True)
        bar = _progress(target, self.step, cfg["progress"])
        rollbacks = 0
        while self.step < target:
            losses = self.train_step()
            if not all(math.isfinite(v) for v in losses.values()):
                message = (f"step {self.step}: the losses became non-finite ({_format(losses)}); lower the "
                           "learning rate, or pass --rollback to restart from the last good checkpoint")
                if not cfg["rollback"] or rollbacks >= 3 or not os.path.exists(os.path.join(self.out_dir, "latest")):
                    raise TrainingDiverged(message)
                rollbacks += 1
                print(f"ganforge: {message}; rolling back to the last checkpoint ({rollbacks}/3)", flush=True)
                self.load(self.out_dir)
                continue
            if self.step % cfg["log_every"] == 0 or self.step == target:
                self._log(losses)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(_format(losses))
            elif self.step % cfg["log_every"] == 0:
                print(f"step {self.step}/{target}  {_format(losses)}", flush=True)
            if self.step % cfg["sample_every"] == 0 or self.step == target:
                self.save_samples()
            if self.step % cfg["checkpoint_every"] == 0 or self.step == target:
                self.save()
        if bar is not None:
            bar.close()
        return self.history

    def _log(self, losses):
        entry = {"step": self.step, **losses}
        self.history.append(entry)
        with open(os.path.join(self.out_dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\n")
        path = os.path.join(self.out_dir, "log.csv")
        fresh = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(entry))
            if fresh:
                writer.writeheader()
            writer.writerow(entry)

    # --- pictures -------------------------------------------------------------------------------

    def sample(self, z=None, labels=None, use_ema=True):
        """Generated samples as a NumPy array, from the EMA generator by default."""
        generator = self.G_ema if use_ema else self.G
        z = self.fixed_z if z is None else z
        if self.variant.conditional and labels is None:
            labels = np.arange(len(z)) % self.num_classes
        with no_grad():
            generator.eval()
            if self.variant.conditional:
                out = generator(z.to(self.config["device"]), Tensor(np.asarray(labels)).to(self.config["device"]))
            else:
                out = generator(z.to(self.config["device"]))
            if generator is self.G:
                generator.train()
        return out.numpy()

    def save_samples(self):
        self.ema.copy_to(self.G_ema)
        folder = os.path.join(self.out_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"step-{self.step:06d}.png")
        try:
            if len(self.data_shape) == 1 and self.image_shape is None:
                means = mixture(self.config["data"])[0] if self.config["data"] in ("ring8", "grid25") else None
                io.save_scatter(path, self.sample(), means)
            else:
                z = self.fixed_z
                labels = None
                if self.variant.conditional:  # one row per class, the same z along each column
                    z = Tensor(np.tile(self.fixed_z.numpy()[:8], (self.num_classes, 1, 1, 1)))
                    labels = np.repeat(np.arange(self.num_classes), 8)
                images = self.sample(z, labels)
                if self.image_shape is not None and images.ndim == 2:
                    images = images.reshape((-1,) + tuple(self.image_shape))
                io.save_image_grid(path, images, rows=8 if self.variant.conditional else None)
            io.save_loss_curves(os.path.join(self.out_dir, "losses.png"), self.history)
        except ImportError as exc:  # Pillow is optional: samples are still in the checkpoints
            print(f"ganforge: {exc}; no PNG written", flush=True)
            return None
        shutil.copyfile(path, os.path.join(folder, "latest.png"))
        return path

    # --- checkpoints ----------------------------------------------------------------------------

    def save(self):
        tensors = {}
        for prefix, net in (("G", self.G), ("D", self.D)):
            for name, t in net.state_dict().items():
                tensors[f"{prefix}.{name}"] = t.numpy()
        for name, array in self.ema.shadow.items():
            tensors[f"G_ema.{name}"] = np.asarray(array)
        state = {"ganforge": __version__, "variant": self.variant.name, "config": self.config, "step": self.step,
                 "data_shape": list(self.data_shape), "image_shape": None if self.image_shape is None else
                 list(self.image_shape), "num_classes": self.num_classes, "history": self.history,
                 "loader": self.loader.state_dict(), "noise": self.noise.get_state(),
                 "default_generator": default_generator(self.config["device"]).get_state(),
                 "ema_updates": self.ema.updates, "optimizers": {},
                 "schedules": [schedule.state_dict() for schedule in self.schedules]}
        for label, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            saved = opt.state_dict()
            for i, slot in enumerate(saved["state"]):
                for key, value in list(slot.items()):
                    if hasattr(value, "shape"):
                        tensors[f"{label}.{i}.{key}"] = value
                        slot[key] = {"tensor": f"{label}.{i}.{key}"}
            state["optimizers"][label] = saved
        return io.save_checkpoint(self.out_dir, f"checkpoint-{self.step:06d}", tensors, state)

    def load(self, path):
        """Restore everything from a checkpoint (or a run folder's latest one)."""
        tensors, state = io.load_checkpoint(path)
        if state.get("variant") != self.variant.name:
            raise io.CheckpointError(f"{path} holds a {state.get('variant')!r} run, not {self.variant.name!r}")
        try:
            for prefix, net in (("G", self.G), ("D", self.D)):
                net.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
            self.ema.load_state_dict({"decay": self.config["ema_decay"], "updates": state["ema_updates"], "shadow": {
                k[len("G_ema."):]: v for k, v in tensors.items() if k.startswith("G_ema.")}})
            for label, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
                saved = state["optimizers"][label]
                for slot in saved["state"]:
                    for key, value in slot.items():
                        if isinstance(value, dict) and "tensor" in value:
                            slot[key] = tensors[value["tensor"]]
                opt.load_state_dict(saved)
            for schedule, saved in zip(self.schedules, state.get("schedules", []), strict=True):
                schedule.load_state_dict(saved)
        except (KeyError, ValueError) as exc:
            raise io.CheckpointError(f"{path} does not fit this model ({exc}); was it made with other options?") from None
        self.loader.load_state_dict(state["loader"])
        self.noise.set_state(state["noise"])
        default_generator(self.config["device"]).set_state(state["default_generator"])
        self.step, self.history = state["step"], state["history"]
        self.ema.copy_to(self.G_ema)
        return self


def _format(losses):
    return "  ".join(f"{k} {v:+.4f}" for k, v in losses.items())


def _progress(total, start, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def resume_or_start(variant, out_dir, resume=False, **config):
    """A Trainer for `out_dir`: restored from its latest checkpoint when `resume` is set."""
    if resume:
        _, state = io.load_checkpoint(out_dir)
        saved = {k: v for k, v in state["config"].items() if k in DEFAULTS or k == "data"}
        trainer = Trainer(state["variant"], out_dir, **{**saved, **{k: v for k, v in config.items() if v is not None}})
        return trainer.load(out_dir)
    if os.path.exists(os.path.join(out_dir, "latest")):
        raise FileExistsError(f"{out_dir} already holds a run: pass --resume to continue it, or choose another --out")
    return Trainer(variant, out_dir, **config)


def load_generator(run_dir, use_ema=True):
    """The trained generator of a run folder, in eval mode, with NumPy alone.
    Returns (generator, info): info has the variant, z_dim, data and image shapes, classes."""
    tensors, state = io.load_checkpoint(run_dir)
    variant = get_variant(state["variant"])
    cfg = state["config"]
    G, _ = variant.build(tuple(state["data_shape"]), cfg["z_dim"], state["num_classes"])
    prefix = "G_ema." if use_ema else "G."
    G.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    G.eval()
    info = {"variant": variant, "z_dim": cfg["z_dim"], "data_shape": tuple(state["data_shape"]),
            "image_shape": state["image_shape"], "num_classes": state["num_classes"], "data": cfg["data"],
            "step": state["step"]}
    return G, info


def generate(run_dir, n, labels=None, seed=0, use_ema=True, batch_size=500):
    """n samples (NumPy) from a trained run; `labels` (an int or n ints) for conditional models."""
    G, info = load_generator(run_dir, use_ema)
    shape = (n, info["z_dim"]) + ((1, 1) if len(info["data_shape"]) == 3 else ())
    z = randn(*shape, generator=Generator(seed)).numpy()
    if info["num_classes"]:
        labels = np.arange(n) % info["num_classes"] if labels is None else np.broadcast_to(labels, (n,))
        if np.max(labels) >= info["num_classes"] or np.min(labels) < 0:
            raise ValueError(f"--label must be in [0, {info['num_classes']})")
        labels = np.asarray(labels, dtype=np.int64)
    elif labels is not None:
        raise ValueError(f"{info['variant'].name} is not class-conditional: --label does not apply")
    chunks = []
    with no_grad():  # in batches, so that 10k images do not need 10k images' activations at once
        for i in range(0, n, batch_size):
            z_i = Tensor(z[i:i + batch_size])
            chunks.append((G(z_i, Tensor(labels[i:i + batch_size])) if info["num_classes"] else G(z_i)).numpy())
    samples = np.concatenate(chunks)
    if info["image_shape"] and samples.ndim == 2:
        samples = samples.reshape((n,) + tuple(info["image_shape"]))
    return samples, info


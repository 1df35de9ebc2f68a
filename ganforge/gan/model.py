"""What a GAN model is, to the trainer and to inference.

A model names its networks (`self.nets`, a dict of Modules), builds their optimizers,
says which networks keep an exponential moving average (EMA) to sample from, and writes
one training step, `train_step(batches)`, as a single-file PyTorch GAN script would:
forward, losses, backward, step. Whatever else must survive a resume (schedules, an
image pool, a running mean) it returns from `state_dict()`.

The trainer (trainer.py) knows nothing more about it: it hands the step dict batches,
keeps the EMA copies, and checkpoints whatever the model names. Inference (`sample`,
and later `translate`, `upscale`, `score`) goes through the model too, with NumPy alone.
See docs/adding-a-model.md for a walk through one model file.
"""
import copy
from dataclasses import dataclass

from .. import optim
from ..tensor import Generator


@dataclass(frozen=True)
class DataInfo:
    """What a model learns about its data set when it is built (and what a checkpoint
    records, so that inference can rebuild the model without the data)."""
    name: str                 # "ring8", "fashion-mnist", an image folder ...
    shape: tuple              # one sample of batch["x"], as the model receives it
    image_shape: tuple = None  # the picture one sample is (C, H, W), or None for points
    classes: tuple = None     # class names, when batches carry "label"

    @property
    def num_classes(self):
        return len(self.classes) if self.classes else None

    def to_json(self):
        return {"name": self.name, "shape": list(self.shape),
                "image_shape": None if self.image_shape is None else list(self.image_shape),
                "classes": None if self.classes is None else list(self.classes)}

    @classmethod
    def from_json(cls, saved):
        return cls(saved["name"], tuple(saved["shape"]),
                   None if saved["image_shape"] is None else tuple(saved["image_shape"]),
                   None if saved["classes"] is None else tuple(saved["classes"]))


class Model:
    """Base class of the models in gan/models/: subclasses set the class attributes and
    write `build_networks`, `build_optimizers` and `train_step`."""

    name = None     # what `ganforge train NAME` calls it
    summary = ""    # one line for `ganforge list`
    defaults = {}   # the trainer's options this model sets: data, steps, batch_size ...
    options = {}    # the model's own hyper-parameters and their defaults (command-line flags)
    ema = ("G",)    # networks that keep an EMA copy, which pictures and inference use
    data_kind = "images"  # its batches: images (x, label), unpaired (a, b) or paired (lr, hr)
    conditional = False  # draws samples of asked classes: sample(n, labels=...)
    w_space = False      # has StyleGAN's W: truncation, style mixing, projection
    lr_constant = 0.0  # with lr_decay: the fraction of the steps before the learning rates start to fall

    def __init__(self, config, data, noise=None):
        self.config, self.data = config, data
        self.device = config.get("device", "cpu")
        # z and every other random number of a step (the trainer passes its seeded stream)
        self.noise = noise or Generator(config.get("seed", 0) + 1, self.device)
        self.nets = self.build_networks()
        self.optimizers = {}
        self.schedules = {}
        self.preview_batch = None  # the first items of each data source (the trainer sets it)

    ema_decay = None  # updates -> the EMA's decay, for a model with its own schedule (stylegan2)

    def build_networks(self):
        """{name: Module}, freshly initialized."""
        raise NotImplementedError

    def build_optimizers(self):
        """{name: optimizer} for the networks it trains."""
        raise NotImplementedError

    def setup_optimizers(self):
        """What the trainer calls once the networks are on their device: the optimizers, and
        with `lr_decay` in the config a LinearDecayLR for each, constant for the first
        `lr_constant` of the steps (the step calls `self.step_schedules()` at its end)."""
        self.optimizers = self.build_optimizers()
        if self.config.get("lr_decay"):
            steps = self.config["steps"]
            self.schedules = {name: optim.LinearDecayLR(opt, steps, start=int(self.lr_constant * steps))
                              for name, opt in self.optimizers.items()}

    def step_schedules(self):
        for schedule in self.schedules.values():
            schedule.step()

    def train_step(self, batches):
        """One training step; `batches` yields dict batches (next(batches)), as many as the
        step needs. Returns {name: float} for the logs and the progress bar."""
        raise NotImplementedError

    def state_dict(self):
        """Everything besides networks and optimizers that a resume needs (arrays allowed)."""
        return {"schedules": {name: s.state_dict() for name, s in self.schedules.items()}}

    def load_state_dict(self, state):
        saved = state.get("schedules", {})
        if set(saved) != set(self.schedules):
            raise ValueError(f"the checkpoint has learning-rate schedules for {sorted(saved)}, this run for "
                             f"{sorted(self.schedules)}")
        for name, schedule in self.schedules.items():
            schedule.load_state_dict(saved[name])

    def preview(self):
        """(array, columns) of the run's picture: images (N, C, H, W) in a grid of that many
        columns (None: square), or points (N, 2) for 2-D data. The same inputs every time
        (a fixed z, or `self.preview_batch`), so that the pictures of a run compare."""
        raise NotImplementedError

    def sample(self, n, labels=None, seed=0, batch_size=500):
        """n samples drawn from noise, for the models that make them (`ganforge sample`)."""
        raise ValueError(f"{self.name} does not draw samples from noise (see `ganforge list` for what it does)")

    def latent_walk(self, n, frames, seed=0):
        """(frames, n, C, H, W): n samples moving smoothly through the latent space, for the
        models that draw from noise (`ganforge interpolate`)."""
        raise ValueError(f"{self.name} does not draw samples from noise, so it has no latent space to walk")

    def translate(self, images, direction="ab", batch_size=16):
        """Images of one domain translated to the other, for translation models (`ganforge translate`)."""
        raise ValueError(f"{self.name} does not translate images; train cyclegan for that")

    def using(self, nets):
        """This model with some networks replaced (the trainer's EMA copies, for pictures)."""
        view = copy.copy(self)
        view.nets = {**self.nets, **nets}
        return view

    def as_pictures(self, samples):
        """Flattened images back in their (C, H, W) shape; points as they are."""
        if self.data.image_shape is not None and samples.ndim == 2:
            return samples.reshape((-1,) + tuple(self.data.image_shape))
        return samples


MODELS = {}


def register_model(cls):
    """Make a Model subclass known to the trainer, `ganforge train` and `ganforge list`."""
    if not (isinstance(cls, type) and issubclass(cls, Model)) or not cls.name:
        raise TypeError(f"register_model takes a Model subclass with a name, got {cls!r}")
    MODELS[cls.name] = cls
    return cls


def get_model(name):
    if isinstance(name, type) and issubclass(name, Model):
        return name
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; `ganforge list` shows them: {', '.join(MODELS)}")
    return MODELS[name]

"""The training loop, for any model (model.py): seeded data and noise, the model's
train_step, an EMA of the networks the model names, logs and a progress bar, a guard
against NaN/Inf, sample pictures, and checkpoints that resume exactly.

The trainer knows nothing about generators and discriminators: it checkpoints whatever
networks, optimizers, EMA copies and extra state the model names. Batches are dicts:
images `x` with an optional `label`, unpaired domains `a` and `b`, or paired `lr`/`hr`
(the model's `data_kind` says which).
"""
import contextlib
import copy
import csv
import json
import math
import os
import shutil
import signal
import threading

import numpy as np

from .. import __version__
from .. import distributed, io, optim
from ..metrics.progress import measurable, training_scores
from ..backend import to_device
from ..data import (DataLoader, captions, folder_channels, load_fashion_edges, load_fashion_mnist, load_image_crops,
                    load_image_folder, load_size, mixture, resize_bicubic, sample_mixture)
from ..data.fashion_mnist import CLASSES
from ..backends.cpu.native import set_flush_denormal
from ..tensor import Generator, Tensor, default_generator, manual_seed
from . import models  # noqa: F401  (registers the models)
from .model import DataInfo, get_model
from .steps import in_eval_mode

DEFAULTS = {"steps": 3000, "batch_size": 64, "seed": 0, "device": "cpu", "data": None, "data_path": None,
            "data_b": None, "scale": 4, "resolution": None, "channels": None, "flatten": False, "sample_every": 500,
            "checkpoint_every": 500, "log_every": 50, "ema_decay": 0.999, "rollback": False, "progress": True,
            "eval_every": 0, "eval_samples": 2000,  # --eval-every: score the run as it trains (0: never)
            "sync_batch_norm": True,  # with several ranks: batch norm over all their samples
            "init_from": None,  # a run folder whose networks of the same names this run starts from
            "labels_per_class": None,  # train on this many images of each class (the few-labels setting)
            "flush_denormal": False}  # denormal floats to zero (gf.set_flush_denormal): second-order graphs make them
CHECKPOINT_FORMAT = 2  # 1: before models owned their step (one G and one D); _upgrade reads it
PREVIEW_ITEMS = 8
MIXTURE_POINTS = 100_000  # 2-D data sets are drawn once, from the run's seed, then batched like images


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


def _images(config, name):
    """(images, labels or None, class names or None) of one image data set."""
    if name == "fashion-mnist":
        images, labels = load_fashion_mnist(config["data_path"], "train")
        if config["resolution"] == 32:  # for networks that halve 32 down to 4: a 2-pixel border of background
            images = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-1.0)
        elif config["resolution"] not in (None, 28):
            raise ValueError(f"Fashion-MNIST's images are 28x28 (or 32x32 padded): --resolution "
                             f"{config['resolution']} does not apply")
        return images, labels, tuple(CLASSES)
    if name and os.path.isdir(name):
        return load_image_folder(name, config["resolution"] or 64, config["channels"] or 3), None, None
    raise ValueError(f"unknown data set {name!r}: use ring8, grid25, fashion-mnist, or the path of a folder of "
                     "PNG/JPEG images")


def normal_images(config, images, labels, classes, part="train"):
    """For anomaly detection (a config with `normal_class` or `held_out`): the normal
    images, those of class `normal_class` of a labelled set or a whole folder, split by
    the run's seed into those it trains on (part="train") and the `held_out` fraction
    that sets the score threshold (part="held-out"). Other configs get their data as it is."""
    normal_class, fraction = config.get("normal_class"), config.get("held_out") or 0.0
    if normal_class is not None:
        if labels is None:
            raise ValueError("--normal-class picks one class of a labelled data set (fashion-mnist); the images of a "
                             "folder given with --data are all taken as normal, so leave it out")
        if not 0 <= normal_class < len(classes):
            raise ValueError(f"--normal-class {normal_class} is out of range: {config['data']} has classes 0-"
                             f"{len(classes) - 1} ({', '.join(f'{i} {c}' for i, c in enumerate(classes))})")
        keep = labels == normal_class
        images, labels = images[keep], labels[keep]
    if not fraction:
        return images, labels
    if not 0 < fraction < 1:
        raise ValueError(f"--held-out is the fraction of normal images kept for the threshold, between 0 and 1, "
                         f"got {fraction}")
    order = np.random.default_rng(config["seed"]).permutation(len(images))
    count = int(round(fraction * len(images)))
    chosen = np.sort(order[:count] if part == "held-out" else order[count:])
    if len(chosen) == 0:
        raise ValueError(f"{len(images)} normal images leave none for {part}: give more images or change --held-out")
    return images[chosen], None if labels is None else labels[chosen]


def _captioned(config):
    """Fashion-MNIST with a caption per image (data/captions.py) as word indices, less the
    class-and-attribute combinations the model keeps out of training."""
    if config["data"] != "fashion-mnist":
        raise ValueError(f"text2image writes its captions from Fashion-MNIST's classes; --data {config['data']} has "
                         "none (use --data fashion-mnist)")
    images, labels, classes = _images({**config, "resolution": None}, "fashion-mnist")
    cuts = captions.terciles(images, labels)
    asked = captions.levels(images, labels, cuts)
    keep = np.ones(len(images), dtype=bool)
    if config.get("held_out_combinations"):
        for k, brightness, width in captions.HELD_OUT:
            keep &= ~((labels == k) & (asked["brightness"] == brightness) & (asked["width"] == width))
    tokens = np.stack([captions.tokenize(c) for c in captions.captions_of(images[keep], labels[keep], cuts)])
    arrays = {"x": images[keep], "tokens": tokens, "label": labels[keep]}
    return {"x": arrays}, DataInfo("fashion-mnist", tuple(images.shape[1:]), tuple(images.shape[1:]), classes)


def labelled_subset(labels, per_class, seed):
    """Indices of `per_class` images of every class, drawn by `seed`: the labelled part
    of a few-labels experiment (bench/augmentation_few_labels.py draws the same)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        if len(members) < per_class:
            raise ValueError(f"--labels-per-class {per_class}: class {k} has only {len(members)} images")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def normal_images_of_run(config, *parts):
    """The normal images of a run of this config, one array per part ("train", "held-out"),
    from one read of its data."""
    images, labels, classes = _images(config, config["data"])
    return [normal_images(config, images, labels, classes, part)[0] for part in parts]


def held_out_normal_images(config):
    """The normal images a run of this config did not train on (its threshold's set)."""
    return normal_images_of_run(config, "held-out")[0]


def training_normal_images(config):
    """The normal images a run of this config trained on (its anomaly score's memory)."""
    return normal_images_of_run(config, "train")[0]


def _unpaired(config):
    """(domain A, domain B, the (C, H, W) the model trains on) for unpaired translation:
    the built-in fashion-edges, or two folders loaded a little larger than --resolution
    (the model crops them at random) with one channel count (grey converted to RGB)."""
    if config["data"] == "fashion-edges":
        a, b = load_fashion_edges(config["data_path"], "train")
        return a, b, tuple(a.shape[1:])
    if not config["data"] or not config["data_b"]:
        raise ValueError("unpaired translation needs two image sets: --data FOLDER_A --data-b FOLDER_B, or "
                         "--data fashion-edges")
    folders = config["data"], config["data_b"]
    channels = config["channels"]
    if not channels:
        found = [folder_channels(folder) for folder in folders]
        channels = max(found)
        if found[0] != found[1]:
            grey = folders[found.index(1)]
            print(f"ganforge: {grey} holds grey images and the other folder colour ones: the grey images are "
                  "converted to RGB", flush=True)
    resolution = config["resolution"] or 64
    a, b = (load_image_folder(folder, load_size(resolution), channels) for folder in folders)
    return a, b, (channels, resolution, resolution)


def _high_resolution(config):
    """The high-resolution halves of super-resolution pairs: Fashion-MNIST's images whole,
    or crops of --resolution pixels (96 by default, as SRGAN's) from a folder's images at
    their own size (grey converted to RGB unless --channels says otherwise)."""
    name = config["data"]
    if name and os.path.isdir(name):
        return load_image_crops(name, config["resolution"] or 96, config["channels"] or 3)
    if config["resolution"] not in (None, 28) and name == "fashion-mnist":
        raise ValueError(f"Fashion-MNIST's images are 28x28: --resolution {config['resolution']} applies to image "
                         "folders")
    return _images(config, name)[0]


def load_data(config, kind="images"):
    """The data a model of this `kind` trains on: ({loader: {batch key: array}}, DataInfo).
    Each loader shuffles its own arrays; a batch holds one draw of every loader.
      images    x (and label, for a labelled set): a 2-D mixture, Fashion-MNIST or a folder
      unpaired  a and b: two folders (--data and --data-b) or fashion-edges, drawn independently
      paired    hr and lr: the images and their bicubic downscales by --scale"""
    name = config["data"]
    if kind == "unpaired":
        a, b, shape = _unpaired(config)
        return {"a": {"a": a}, "b": {"b": b}}, DataInfo(name, shape, shape)
    if kind == "paired":
        hr, scale = _high_resolution(config), config["scale"]
        height, width = hr.shape[2:]
        if height % scale or width % scale:
            if name == "fashion-mnist":
                raise ValueError(f"Fashion-MNIST's 28x28 images do not divide by --scale {scale}: use --scale 2 or 4")
            raise ValueError(f"{height}x{width} images do not divide by --scale {scale}: choose a --resolution "
                             f"that is a multiple of {scale}")
        lr = resize_bicubic(hr, height // scale, width // scale)
        return {"pairs": {"hr": hr, "lr": lr}}, DataInfo(name, tuple(hr.shape[1:]), tuple(hr.shape[1:]))
    if kind == "captioned":
        return _captioned(config)
    if kind != "images":
        raise ValueError(f"unknown kind of data {kind!r}: images, unpaired, paired or captioned")
    classes = None
    if name in ("ring8", "grid25"):
        arrays = {"x": sample_mixture(name, MIXTURE_POINTS, np.random.default_rng(config["seed"]))}
    else:
        images, labels, classes = _images(config, name)
        images, labels = normal_images(config, images, labels, classes)
        if config["labels_per_class"]:
            if labels is None:
                raise ValueError("--labels-per-class picks images of each class of a labelled data set "
                                 "(fashion-mnist); a folder has no classes")
            chosen = labelled_subset(labels, config["labels_per_class"], config["seed"])
            images, labels = images[chosen], labels[chosen]
        arrays = {"x": images} if labels is None else {"x": images, "label": labels}
    x = arrays["x"]
    image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None
    if config["flatten"] and x.ndim == 4:  # for MLPs: the model sees vectors, pictures keep the image shape
        arrays["x"] = x = x.reshape(len(x), -1)
    return {"x": arrays}, DataInfo(name, tuple(x.shape[1:]), image_shape, classes)


class Trainer:
    """Trains a model (a name of `ganforge list` or a Model class) into the run folder `out_dir`.

    With a `world` of several ranks (distributed.World, under mpirun) each rank trains on
    its own shard of the data with its own noise; gradients are averaged before every
    optimizer step, so the weights stay the same on every rank. Rank 0 alone writes logs,
    pictures and checkpoints (which hold every rank's data position and random state)."""

    def __init__(self, model, out_dir, world=None, **overrides):
        model_class = get_model(model)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(overrides) - set(DEFAULTS) - set(model_class.options)
        if unknown:
            raise TypeError(f"unknown training options {sorted(unknown)} for {model_class.name}; it takes "
                            f"{', '.join(sorted(set(DEFAULTS) | set(model_class.options)))}")
        self.config = cfg = {**DEFAULTS, **model_class.defaults, **model_class.options,
                             **overrides}
        self.out_dir = out_dir
        self.world = world = world or distributed.World()
        if cfg["flush_denormal"]:
            set_flush_denormal(True)
        sources, self.data = load_data(cfg, model_class.data_kind)
        manual_seed(cfg["seed"])  # the networks' initial weights
        # every random number of the steps: one stream per rank (rank 0's is a single process's)
        self.noise = Generator(distributed.rank_seed(cfg["seed"] + 1, world.rank), cfg["device"])
        self.model = model_class(cfg, self.data, self.noise)
        if cfg["init_from"]:
            self.start_from(cfg["init_from"])
        for net in self.model.nets.values():
            net.to(cfg["device"])
            world.broadcast_module(net)
        if world.rank:  # what the layers draw while training (dropout, crops): the rank's own stream
            default_generator(cfg["device"]).manual_seed(distributed.rank_seed(cfg["seed"], world.rank))
        self.model.setup_optimizers()
        self.ema = {name: optim.EMA(self.model.nets[name], cfg["ema_decay"], schedule=self.model.ema_decay)
                    for name in self.model.ema}
        self.ema_nets = {name: copy.deepcopy(self.model.nets[name]).eval() for name in self.model.ema}
        if world.size > 1:
            for optimizer in self.model.optimizers.values():
                distributed.average_gradients(world, optimizer)
            if cfg["sync_batch_norm"]:
                for net in self.model.nets.values():
                    distributed.synchronize_batch_norm(net, world)
        # Each rank draws from its shard (every size-th item), shuffled by its own seed; the
        # first loader's seed is the run's, as before there were several (results unchanged)
        self.loaders = {name: (list(arrays), DataLoader(*(a[world.rank::world.size] for a in arrays.values()),
                                                        batch_size=cfg["batch_size"],
                                                        seed=distributed.rank_seed(cfg["seed"] + 100 * i, world.rank)))
                        for i, (name, arrays) in enumerate(sources.items())}
        self.batches = self._batches()
        # the first few items of every data source, for pictures of translations and upscalings
        self.model.preview_batch = {key: Tensor(array[:PREVIEW_ITEMS]).to(cfg["device"])
                                    for arrays in sources.values() for key, array in arrays.items()}
        self.step, self.history, self.evaluations = 0, [], []
        self._bar = None  # the progress bar while train() runs
        if cfg["eval_every"] and measurable(self.model) is not None:
            raise ValueError(f"--eval-every: {measurable(self.model)}; leave --eval-every out")

    def start_from(self, run_dir):
        """Start the networks that `run_dir`'s checkpoint also has (by name, with its raw
        weights) from there: SRGAN from a trained SRResNet, a fine-tuning from its base."""
        tensors, state = read_checkpoint(run_dir)
        shared = [name for name in self.model.nets if _prefixed(tensors, name)]
        if not shared:
            raise ValueError(f"--init-from {run_dir}: its {state['model']} run has none of this model's networks "
                             f"({', '.join(self.model.nets)})")
        for name in shared:
            try:
                self.model.nets[name].load_state_dict(_prefixed(tensors, name))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"--init-from {run_dir}: its {name} is not this run's {name} (other options? "
                                 f"{exc})") from None
        if self.world.is_root:
            print(f"ganforge: {', '.join(shared)} start{'s' if len(shared) == 1 else ''} from {run_dir} "
                  f"(its step {state['step']})", flush=True)

    def _batches(self):
        """Dict batches on the run's device, forever (the loaders' states are the position)."""
        while True:
            batch = {}
            for keys, loader in self.loaders.values():
                arrays = loader.next_batch()
                arrays = arrays if isinstance(arrays, tuple) else (arrays,)
                batch.update({key: a.to(self.config["device"]) for key, a in zip(keys, arrays)})
            yield batch

    def train_step(self):
        """One step of the model, then its EMA copies; returns the losses (averaged over the
        ranks, so that every rank's NaN guard decides alike)."""
        losses = self.model.train_step(self.batches)
        for ema in self.ema.values():
            ema.update()
        self.step += 1
        return self.world.average(losses)

    # --- the loop ---------------------------------------------------------------------------

    def train(self, steps=None):
        """Train until `steps` (default: the configured number) training steps are done."""
        cfg = self.config
        target = steps or cfg["steps"]
        root = self.world.is_root  # rank 0 alone logs, shows progress and writes files
        if root:
            os.makedirs(self.out_dir, exist_ok=True)
        bar = self._bar = _progress(target, self.step, cfg["progress"] and root)
        rollbacks = 0
        with _interrupt_between_steps(self.world.size == 1) as interrupted:
            while self.step < target:
                rollbacks = self._one_step(target, bar, rollbacks)
                if interrupted():
                    self.save()
                    raise KeyboardInterrupt(f"step {self.step} is checkpointed in {self.out_dir}")
        if bar is not None:
            bar.close()
        self._bar = None
        return self.history

    def _one_step(self, target, bar, rollbacks):
        """One training step and what follows it (logs, pictures, scores, checkpoint);
        returns the count of rollbacks so far."""
        cfg, root = self.config, self.world.is_root
        losses = self.train_step()
        if not all(math.isfinite(v) for v in losses.values()):
            message = (f"step {self.step}: the losses became non-finite ({_format(losses)}); lower the "
                       "learning rate, or pass --rollback to restart from the last good checkpoint")
            if not cfg["rollback"] or rollbacks >= 3 or not os.path.exists(os.path.join(self.out_dir, "latest")):
                raise TrainingDiverged(message)
            rollbacks += 1
            print(f"ganforge: {message}; rolling back to the last checkpoint ({rollbacks}/3)", flush=True)
            self.load(self.out_dir)
            return rollbacks
        if (self.step % cfg["log_every"] == 0 or self.step == target) and root:
            self._log(losses)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(_format(losses))
        elif self.step % cfg["log_every"] == 0 and root:
            print(f"step {self.step}/{target}  {_format(losses)}", flush=True)
        if (self.step % cfg["sample_every"] == 0 or self.step == target) and root:
            self.save_samples()
        if cfg["eval_every"] and (self.step % cfg["eval_every"] == 0 or self.step == target) and root:
            self.evaluate()
        if self.step % cfg["checkpoint_every"] == 0 or self.step == target:
            self.save()
        return rollbacks

    def _log(self, losses):
        entry = {"step": self.step, **losses}
        self.history.append(entry)
        _append_rows(os.path.join(self.out_dir, "log"), [entry])

    def evaluate(self):
        """Score the run as it stands, as its pictures show it (EMA networks, eval mode): a
        row of metrics.jsonl (and .csv), redrawn in metrics.png."""
        with self._averaged_in_eval_mode() as model:
            scores = training_scores(model, self.config["eval_samples"], self.config["data_path"],
                                     seed=self.config["seed"])
        entry = {"step": self.step, **scores}
        self.evaluations.append(entry)
        _append_rows(os.path.join(self.out_dir, "metrics"), [entry])
        line = "  ".join(f"{name} {value:.4g}" for name, value in scores.items())
        message = f"ganforge: step {self.step}, scored on {self.config['eval_samples']} samples: {line}"
        if self._bar is not None:
            self._bar.write(message)  # above the progress bar, not through it
        else:
            print(message, flush=True)
        try:
            io.save_metric_curves(os.path.join(self.out_dir, "metrics.png"), self.evaluations)
        except ImportError as exc:
            print(f"ganforge: {exc}; no metrics.png written", flush=True)
        return scores

    def _rewrite_logs(self):
        """The logs as the checkpoint knows them: a resumed run continues them without the
        lines written after its checkpoint by the run that stopped."""
        for name, rows in (("log", self.history), ("metrics", self.evaluations)):
            for suffix in (".jsonl", ".csv"):
                if os.path.exists(os.path.join(self.out_dir, name + suffix)):
                    os.remove(os.path.join(self.out_dir, name + suffix))
            _append_rows(os.path.join(self.out_dir, name), rows)

    # --- pictures -------------------------------------------------------------------------------

    def averaged_model(self):
        """The model with its EMA networks in place of the trained ones (what pictures show)."""
        for name, ema in self.ema.items():
            ema.copy_to(self.ema_nets[name])
        return self.model.using(self.ema_nets)

    @contextlib.contextmanager
    def _averaged_in_eval_mode(self):
        """The averaged model with every network in eval mode, for pictures and scores:
        they must not move batch-norm statistics (or draw dropout masks) of the networks in
        training, or a resumed run would not continue exactly."""
        model = self.averaged_model()
        with in_eval_mode(*model.nets.values()):
            yield model

    def preview(self):
        """The run's picture as an array (images or 2-D points) and its grid's column count."""
        with self._averaged_in_eval_mode() as model:
            return model.preview()

    def save_samples(self):
        folder = os.path.join(self.out_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"step-{self.step:06d}.png")
        samples, columns = self.preview()
        try:
            if samples.ndim == 2:
                means = mixture(self.data.name)[0] if self.data.name in ("ring8", "grid25") else None
                io.save_scatter(path, samples, means)
            else:
                io.save_image_grid(path, samples, rows=columns)
            io.save_loss_curves(os.path.join(self.out_dir, "losses.png"), self.history)
        except ImportError as exc:  # Pillow is optional: samples are still in the checkpoints
            print(f"ganforge: {exc}; no PNG written", flush=True)
            return None
        shutil.copyfile(path, os.path.join(folder, "latest.png"))
        return path

    # --- checkpoints ----------------------------------------------------------------------------

    def _rank_state(self, tensors, prefix=""):
        """What differs between the ranks: data position, random streams, the model's own
        state (an image pool holds the rank's own images). Arrays go into `tensors`."""
        return {"loaders": {name: loader.state_dict() for name, (_, loader) in self.loaders.items()},
                "noise": self.noise.get_state(),
                "default_generator": default_generator(self.config["device"]).get_state(),
                "model_state": _arrays_to(tensors, prefix + "model", self.model.state_dict())}

    def save(self):
        """Write a checkpoint (rank 0 writes it; the other ranks send it their state)."""
        own = {}
        ranks = self.world.gather((own, self._rank_state(own, f"rank{self.world.rank}." if self.world.rank else "")))
        if not self.world.is_root:
            return None
        tensors = {k: v for rank_tensors, _ in ranks for k, v in rank_tensors.items()}
        state = {**ranks[0][1], "world_size": self.world.size, "other_ranks": [s for _, s in ranks[1:]]}
        for name, net in self.model.nets.items():
            tensors.update({f"{name}.{k}": t.numpy() for k, t in net.state_dict().items()})
        for name, ema in self.ema.items():
            tensors.update({f"{name}_ema.{k}": to_device(a, "cpu") for k, a in ema.shadow.items()})
        state.update({"ganforge": __version__, "format": CHECKPOINT_FORMAT, "model": self.model.name,
                      "config": self.config, "step": self.step, "data": self.data.to_json(), "history": self.history,
                      "evaluations": self.evaluations,
                      "ema": {name: ema.updates for name, ema in self.ema.items()},
                      "optimizers": {name: _arrays_to(tensors, f"opt.{name}", opt.state_dict())
                                     for name, opt in self.model.optimizers.items()}})
        return io.save_checkpoint(self.out_dir, f"checkpoint-{self.step:06d}", tensors, state)

    def load(self, path):
        """Restore everything from a checkpoint (or a run folder's latest one)."""
        tensors, state = read_checkpoint(path)
        if state["model"] != self.model.name:
            raise io.CheckpointError(f"{path} holds a {state['model']!r} run, not {self.model.name!r}")
        saved_size = state.get("world_size", 1)
        if saved_size != self.world.size:
            raise io.CheckpointError(f"{path} was trained on {saved_size} rank(s), this run has {self.world.size}: "
                                     f"resume it on {saved_size} (mpirun -np {saved_size} ... --distributed, or "
                                     f"--nproc {saved_size})")
        own = state if self.world.rank == 0 else state["other_ranks"][self.world.rank - 1]
        try:
            for name, net in self.model.nets.items():
                net.load_state_dict(_prefixed(tensors, name))
            for name, ema in self.ema.items():
                ema.load_state_dict({"decay": self.config["ema_decay"], "updates": state["ema"][name],
                                     "shadow": _prefixed(tensors, f"{name}_ema")})
            saved = state["optimizers"]
            if set(saved) != set(self.model.optimizers):
                raise ValueError(f"optimizers {sorted(saved)} saved, {sorted(self.model.optimizers)} built")
            for name, opt in self.model.optimizers.items():
                opt.load_state_dict(_arrays_from(tensors, saved[name]))
            self.model.load_state_dict(_arrays_from(tensors, own["model_state"]))
        except (KeyError, ValueError) as exc:
            raise io.CheckpointError(f"{path} does not fit this model ({exc}); was it made with other options?") from None
        for name, (_, loader) in self.loaders.items():
            loader.load_state_dict(own["loaders"][name])
        self.noise.set_state(own["noise"])
        default_generator(self.config["device"]).set_state(own["default_generator"])
        self.step, self.history, self.evaluations = state["step"], state["history"], state.get("evaluations", [])
        if self.world.is_root and os.path.isdir(self.out_dir):
            self._rewrite_logs()
        return self


@contextlib.contextmanager
def _interrupt_between_steps(enabled):
    """Ctrl-C (SIGINT) during training takes effect after the step in progress, which the
    trainer then checkpoints: the checkpoint is a state the run really passed through, so
    --resume continues exactly and at most one step is lost. Yields a function that says
    whether it was asked for. Off (a plain KeyboardInterrupt) with several ranks, which
    may see the signal in different steps, and outside the main thread."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    asked = []
    previous = signal.signal(signal.SIGINT, lambda *_: asked.append(True))
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGINT, previous)


def _append_rows(path, rows):
    """Append rows (dicts) to PATH.jsonl and PATH.csv (with a header when it is new)."""
    if not rows:
        return
    with open(path + ".jsonl", "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    header = []
    if os.path.exists(path + ".csv"):
        with open(path + ".csv", newline="") as f:
            header = next(csv.reader(f), [])
    columns = list(dict.fromkeys(header + [key for row in rows for key in row]))
    if header and columns == header:
        with open(path + ".csv", "a", newline="") as f:
            csv.DictWriter(f, fieldnames=columns).writerows(rows)
        return
    # a new file, or new columns (a model whose step changes what it logs, as anomaly's
    # encoder phase does): the whole table again from the JSON lines, one column per key
    with open(path + ".jsonl") as f:
        every_row = [json.loads(line) for line in f if line.strip()]
    with open(path + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(every_row)


def _prefixed(tensors, prefix):
    """The entries of `tensors` under `prefix.`, without it."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _arrays_to(tensors, name, value):
    """`value` (nested dicts and lists) with each array moved into `tensors` under a dotted
    name and replaced by {"tensor": name}: the rest is JSON."""
    if hasattr(value, "shape"):
        tensors[name] = to_device(value, "cpu")
        return {"tensor": name}
    if isinstance(value, dict):
        return {k: _arrays_to(tensors, f"{name}.{k}", v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_arrays_to(tensors, f"{name}.{i}", v) for i, v in enumerate(value)]
    return value


def _arrays_from(tensors, value):
    """The inverse of _arrays_to."""
    if isinstance(value, dict):
        if set(value) == {"tensor"}:
            return tensors[value["tensor"]]
        return {k: _arrays_from(tensors, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays_from(tensors, v) for v in value]
    return value


def read_checkpoint(path):
    """(tensors, state) of a checkpoint, in the current format."""
    tensors, state = io.load_checkpoint(path)
    return tensors, _upgrade(state, path)


def _upgrade(state, path):
    """A checkpoint written before models owned their step (format 1: one G, one D, a
    "variant") holds the same tensors; only its state is laid out differently."""
    if state.get("format") == CHECKPOINT_FORMAT:
        return state
    if "format" in state:
        raise io.CheckpointError(f"{path} has checkpoint format {state['format']}, newer than this ganforge "
                                 f"({__version__}, format {CHECKPOINT_FORMAT}) reads: upgrade ganforge")
    if "variant" not in state or "optimizers" not in state:
        raise io.CheckpointError(f"{path} is not a ganforge checkpoint (its state.json names no model)")
    config = state["config"]
    return {**state, "format": CHECKPOINT_FORMAT, "model": state["variant"],
            "data": {"name": config["data"], "shape": state["data_shape"], "image_shape": state["image_shape"],
                     "classes": list(CLASSES) if state["num_classes"] else None},
            "loaders": {"x": state["loader"]}, "ema": {"G": state["ema_updates"]},
            "optimizers": {"G": state["optimizers"]["opt_g"], "D": state["optimizers"]["opt_d"]},
            "model_state": {"schedules": dict(zip(("G", "D"), state.get("schedules", [])))}}


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


def resume_or_start(model, out_dir, resume=False, world=None, **config):
    """A Trainer for `out_dir`: restored from its latest checkpoint when `resume` is set
    (the saved options, with any given here in their place); `world`: the ranks of a
    data-parallel run (distributed.World), None for one process."""
    if resume:
        _, state = read_checkpoint(out_dir)
        model_class = get_model(state["model"] if isinstance(model, str) or model is None else model)
        known = set(DEFAULTS) | set(model_class.options)
        # the checkpoint's weights replace those a run started from, which may be gone by now
        saved = {k: v for k, v in state["config"].items() if k in known and k != "init_from"}
        trainer = Trainer(model_class, out_dir, world,
                          **{**saved, **{k: v for k, v in config.items() if v is not None}})
        return trainer.load(out_dir)
    if os.path.exists(os.path.join(out_dir, "latest")):
        raise FileExistsError(f"{out_dir} already holds a run: pass --resume to continue it, or choose another --out")
    return Trainer(model, out_dir, world, **config)


def load_model(run_dir, use_ema=True):
    """The trained model of a run folder (or checkpoint), for inference with NumPy alone:
    its networks in eval mode, holding their EMA weights unless `use_ema` is False."""
    tensors, state = read_checkpoint(run_dir)
    model_class = get_model(state["model"])
    model = model_class(state["config"], DataInfo.from_json(state["data"]))
    for name, net in model.nets.items():
        averaged = _prefixed(tensors, f"{name}_ema")
        net.load_state_dict(averaged if use_ema and averaged else _prefixed(tensors, name))
        net.eval()
    model.step = state["step"]
    return model


def load_generator(run_dir, use_ema=True):
    """The trained generator G of a run folder, in eval mode, with NumPy alone, and the
    model it belongs to (whose `sample` draws from it)."""
    model = load_model(run_dir, use_ema)
    return model.nets["G"], model


def generate(run_dir, n, labels=None, seed=0, use_ema=True, batch_size=500, truncation=None, text=None):
    """(n samples as a NumPy array, the model) from a trained run; `labels` (an int or n
    ints) for class-conditional models, `truncation` for models with a W space, `text`
    for text2image."""
    model = load_model(run_dir, use_ema)
    extra = {}
    if text is not None:
        if model.data_kind != "captioned":
            raise ValueError(f"{run_dir} holds a {model.name} run, which does not draw from text; train text2image")
        extra["text"] = text
    if truncation is not None:
        require_w_space(model, run_dir, "--truncation")
        extra["truncation"] = truncation
    return model.sample(n, labels=labels, seed=seed, batch_size=batch_size, **extra), model


def require_w_space(model, run_dir, what):
    """The one-line error for `what` (truncation, mixing, projection) on a model without W."""
    if not model.w_space:
        raise ValueError(f"{run_dir} holds a {model.name} run, which has no W space: {what} applies to stylegan2 "
                         "runs")

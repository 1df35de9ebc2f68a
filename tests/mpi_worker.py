"""One rank of the data-parallel tests (tests/test_distributed.py starts it under mpirun).

  python tests/mpi_worker.py same-weights MODEL OUT STEPS DATA_PATH
      train STEPS steps on every rank; rank 0 writes every rank's weights, buffers and
      gradients to OUT/ranks.npz (the test compares them bit for bit); WORKER_DEVICE=cuda
      trains on the GPU (or on the tests' CuPy stand-in)
  python tests/mpi_worker.py global-batch MODEL OUT STEPS DATA_PATH
      train on fixed global batches of 64 and fixed noise, each rank on its rows (N ranks
      x 64/N); rank 0 writes the gradients of the first step and the weights after STEPS
      to OUT/global.npz (the test compares 2 ranks with 1)
  python tests/mpi_worker.py global-batch-unsynced ...
      the same with batch norm over each rank's own samples (what the test must tell apart)
"""
import os
import sys

import numpy as np

from ganforge import distributed
from ganforge.data import fashion_edges
from ganforge.gan import trainer as trainer_module
from ganforge.gan.trainer import Trainer, load_data
from ganforge.tensor import Generator, Tensor

# the tests hand a small stand-in for Fashion-MNIST (tests/test_trainer.py does the same)
_load_fashion_mnist = trainer_module.load_fashion_mnist
for _module in (trainer_module, fashion_edges):
    _module.load_fashion_mnist = lambda root, split: _load_fashion_mnist(root, split, expected_count=0)

GLOBAL_BATCH = 64


class RowsOfGlobalDraw(Generator):
    """Noise as one process drawing for the global batch would draw it: every rank draws
    the global shape from the same stream and keeps its own rows."""

    def __init__(self, seed, world, device="cpu"):
        super().__init__(seed, device)
        self.world = world

    def _rows(self, draw, shape, dtype):
        n = shape[0]
        full = draw((n * self.world.size,) + tuple(shape[1:]), dtype)
        return full[self.world.rank * n:(self.world.rank + 1) * n]

    def normal(self, shape, dtype):
        return self._rows(super().normal, shape, dtype)

    def uniform(self, shape, dtype):
        return self._rows(super().uniform, shape, dtype)


def global_batches(trainer, world, seed=7):
    """The same sequence of 64-item batches on every rank; each rank gets its rows."""
    sources, _ = load_data(trainer.config, trainer.model.data_kind)
    whole = {key: array for arrays in sources.values() for key, array in arrays.items()}
    rng = np.random.default_rng(seed)
    rows = GLOBAL_BATCH // world.size
    while True:
        index = rng.choice(len(whole["x"]), GLOBAL_BATCH, replace=False)
        mine = index[world.rank * rows:(world.rank + 1) * rows]
        yield {key: Tensor(a[mine]) for key, a in whole.items()}


def options(model, steps, data_path, batch_size):
    return dict(steps=steps, batch_size=batch_size, data_path=data_path, sample_every=10 ** 6,
                checkpoint_every=10 ** 6, log_every=1, progress=False, device=os.environ.get("WORKER_DEVICE", "cpu"))


def weights_and_grads(trainer):
    out = {}
    for name, net in trainer.model.nets.items():
        for key, t in net.state_dict().items():
            out[f"{name}.{key}"] = t.numpy().copy()
        for key, p in net.named_parameters():
            if p.grad is not None:
                out[f"{name}.{key}.grad"] = p.grad.numpy().copy()
    return out


def main(scenario, model, out, steps, data_path):
    world = distributed.World.from_mpi()
    steps = int(steps)
    if scenario == "same-weights":
        trainer = Trainer(model, out, world, **options(model, steps, data_path, 8))
        trainer.train()
        ranks = world.gather(weights_and_grads(trainer))
        if world.is_root:
            np.savez(os.path.join(out, "ranks.npz"),
                     **{f"{rank}/{key}": a for rank, arrays in enumerate(ranks) for key, a in arrays.items()})
    elif scenario in ("global-batch", "global-batch-unsynced"):
        trainer = Trainer(model, out, world, **options(model, steps, data_path, GLOBAL_BATCH // world.size),
                          sync_batch_norm=scenario == "global-batch")
        trainer.model.noise = RowsOfGlobalDraw(11, world)
        trainer.batches = global_batches(trainer, world)
        # Adam's first steps are lr x sign(gradient): a gradient that is 0 up to rounding (a
        # bias feeding batch norm) would step by +-lr at rounding's whim. A large eps makes
        # the step lr x gradient there, so that the runs differ by rounding, not by its signs.
        for optimizer in trainer.model.optimizers.values():
            optimizer.hyper["eps"] = 1.0
        trainer.train_step()
        first = {k + ".first": v for k, v in weights_and_grads(trainer).items() if k.endswith(".grad")}
        for _ in range(steps - 1):
            trainer.train_step()
        last = {k: v for k, v in weights_and_grads(trainer).items() if not k.endswith(".grad")}
        if world.is_root:
            np.savez(os.path.join(out, "global.npz"), **first, **last)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Batches from in-memory arrays, shuffled by a seeded generator.

The loader's position and its generator's state are part of `state_dict()`, so a
resumed training run sees exactly the batches an uninterrupted one would have.
"""
import numpy as np

from ..tensor import Tensor


class DataLoader:
    """Iterate over batches of (arrays[0][i], arrays[1][i], ...) as Tensors, forever
    (epoch after epoch, reshuffled each time), or for one epoch with `epoch()`."""

    def __init__(self, *arrays, batch_size, shuffle=True, drop_last=True, seed=0):
        if not arrays:
            raise ValueError("DataLoader needs at least one array")
        n = len(arrays[0])
        for i, a in enumerate(arrays):
            if len(a) != n:
                raise ValueError(f"DataLoader: array {i} has {len(a)} items, array 0 has {n}")
        if batch_size < 1 or (drop_last and batch_size > n):
            raise ValueError(f"batch size {batch_size} does not fit a data set of {n} items")
        self.arrays, self.batch_size, self.shuffle, self.drop_last = arrays, batch_size, shuffle, drop_last
        self.rng = np.random.default_rng(seed)
        self.epochs_done, self.position = 0, 0
        self._order = self._new_order()

    def __len__(self):
        n = len(self.arrays[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _new_order(self):
        n = len(self.arrays[0])
        return self.rng.permutation(n) if self.shuffle else np.arange(n)

    def next_batch(self):
        """The next batch, starting a new (reshuffled) epoch when this one runs out."""
        n = len(self.arrays[0])
        end = self.position + self.batch_size
        if end > n and (self.drop_last or self.position >= n):
            self.epochs_done += 1
            self.position, end = 0, self.batch_size
            self._order = self._new_order()
        index = self._order[self.position:min(end, n)]
        self.position = min(end, n)
        batch = tuple(Tensor(a[index]) for a in self.arrays)
        return batch if len(batch) > 1 else batch[0]

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self):
        return {"epochs_done": self.epochs_done, "position": self.position, "order": self._order.tolist(),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        if len(state["order"]) != len(self.arrays[0]):
            raise ValueError(f"DataLoader.load_state_dict: the saved order covers {len(state['order'])} items, "
                             f"this data set has {len(self.arrays[0])}")
        self.epochs_done, self.position = state["epochs_done"], state["position"]
        self._order = np.asarray(state["order"], dtype=np.int64)
        self.rng.bit_generator.state = state["rng"]

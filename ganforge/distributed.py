"""Data-parallel training over MPI: ganforge past one process.

Every rank (one process, started by `mpirun`) holds the whole model and trains it on its
own shard of the data with its own noise. Before each optimizer step the ranks average
their gradients, so every rank takes the same step and the weights stay identical, bit
for bit, with no further exchange. With N ranks of batch B, a step sees N x B samples.

What the trainer does with a `World` (trainer.py), and nothing in a model file knows:
  broadcast_module(net)          rank 0's weights and buffers to every rank, at the start
  GradientAverager(opt)          the optimizer's gradients live in one flat buffer (each
                                 parameter's gradient is a view into it, so there is no
                                 packing copy); one Allreduce of it, in buckets if it is
                                 large, before the optimizer reads them (Optimizer.synchronize)
  synchronize_batch_norm(net)    batch norm's statistics over every rank's samples
  gather, average                the ranks' random states for checkpoints; the logged losses
Spectral-norm vectors need nothing: rank 0's are broadcast with the weights, and the
power iteration then computes the same vector on every rank from the same weights.

Arrays on the GPU are reduced by NCCL (through CuPy, its id passed over MPI), or, when
CuPy has no NCCL, copied to the host and reduced by MPI there.
"""
import os
import shutil
import time

import numpy as np

from . import backend, dispatch
from .autograd import Function, enable_grad, grad, is_grad_enabled
from .backend import xp_of
from .ops.norm import channel_axes, per_channel
from .tensor import Tensor

BUCKET_BYTES = 64 << 20  # one Allreduce moves at most this much (MPI counts are 32-bit ints)
THREAD_VARIABLES = ("GANFORGE_NUM_THREADS", "GANFORGE_GEMM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")


def rank_seed(seed, rank):
    """The seed of one rank's random stream: rank 0 keeps the run's seed (so one rank is the
    same run as no MPI at all), the others get independent streams derived from it."""
    return seed if rank == 0 else [seed, rank]


class World:
    """The ranks of a run, as this process sees them: `rank`, `size`, and the collectives
    the trainer needs. `World()` is one process alone, where every collective is a no-op."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.communication_s = 0.0  # time spent in gradient Allreduces (bench/distributed.py reads it)
        self.reduced_bytes = 0
        self._nccl = None

    @classmethod
    def from_mpi(cls):
        """The world of `mpirun -np N ...`: MPI.COMM_WORLD, through mpi4py."""
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError(f"--distributed needs mpi4py and an MPI library ({exc}): run `scripts/setup.sh dist` "
                              "(Open MPI from apt, then pip install -e '.[dist]')") from None
        return cls(MPI.COMM_WORLD)

    @property
    def is_root(self):
        return self.rank == 0

    def __deepcopy__(self, memo):  # a communicator is a handle to share, not a value to copy
        return self

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size})"

    # --- collectives on arrays -----------------------------------------------------------------

    def allreduce_sum_(self, array):
        """Sum `array` over the ranks, in place (every rank gets the same sum)."""
        if self.size == 1:
            return array
        if not backend.is_cupy_array(array):
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        elif self._nccl_communicator() is not None:
            self._nccl_allreduce(array)
        else:  # host staging: CuPy without NCCL (or an MPI that cannot read device memory)
            host = backend.to_device(array, "cpu")
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
            array[...] = backend.to_device(host, "cuda")
        return array

    def broadcast_(self, array):
        """Rank 0's `array` on every rank, in place."""
        if self.size == 1:
            return array
        if backend.is_cupy_array(array):
            host = backend.to_device(array, "cpu")
            self.comm.Bcast(host, root=0)
            array[...] = backend.to_device(host, "cuda")
        else:
            self.comm.Bcast(array, root=0)
        return array

    def _nccl_communicator(self):
        """NCCL's communicator for these ranks (made once, its unique id sent over MPI), or
        None where CuPy has no NCCL: then device arrays are staged through the host."""
        if self._nccl is None:
            from mpi4py import MPI
            try:
                from cupy.cuda import nccl
                available = nccl.get_version() > 0
            except Exception:  # no NCCL in this CuPy (or the stand-in CuPy of the tests)
                available = False
            # every rank takes the same path, or one would wait for the others in a collective forever
            if not self.comm.allreduce(available, op=MPI.LAND):
                self._nccl = False
                return None
            unique_id = nccl.get_unique_id() if self.is_root else None
            self._nccl = nccl.NcclCommunicator(self.size, self.comm.bcast(unique_id, root=0), self.rank)
        return self._nccl or None

    def _nccl_allreduce(self, array):
        import cupy
        from cupy.cuda import nccl
        kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        self._nccl.allReduce(array.data.ptr, array.data.ptr, array.size, kinds[np.dtype(array.dtype)],
                             nccl.NCCL_SUM, cupy.cuda.get_current_stream().ptr)

    # --- collectives on Python values ----------------------------------------------------------

    def gather(self, value):
        """[every rank's value] on rank 0, None on the others."""
        return [value] if self.size == 1 else self.comm.gather(value, root=0)

    def average(self, numbers):
        """{name: mean over the ranks} of a dict of floats (the same dict on every rank)."""
        if self.size == 1:
            return numbers
        values = np.array(list(numbers.values()), dtype=np.float64)
        from mpi4py import MPI
        self.comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM)
        return dict(zip(numbers, (values / self.size).tolist()))

    def abort(self, code=1):
        """End every rank of the run (one rank's error would leave the others waiting)."""
        if self.size > 1:
            self.comm.Abort(code)

    # --- what the trainer calls ----------------------------------------------------------------

    def broadcast_module(self, net):
        """Rank 0's parameters and buffers (spectral-norm vectors included) on every rank."""
        for tensor in net.state_dict().values():
            self.broadcast_(tensor._data)


class GradientAverager:
    """The gradients of one optimizer's parameters in one flat buffer, averaged over the
    ranks with one Allreduce (a few, for a buffer over BUCKET_BYTES) when the optimizer
    synchronizes, before its step or a gradient clip reads them.

    Each parameter's `grad_buffer` is its slice of the buffer: backward() accumulates the
    gradient there (autograd.backward), so the buffer is already packed when it is reduced."""

    def __init__(self, world, params, bucket_bytes=BUCKET_BYTES):
        params = list(params)
        kinds = {(p.dtype, p.device) for p in params}
        if len(kinds) != 1:
            raise ValueError(f"data-parallel training needs one dtype and device per optimizer, got {sorted(map(str, kinds))}")
        for p in params:
            if getattr(p, "grad_buffer", None) is not None:
                raise ValueError(f"a parameter of shape {p.shape} is in two optimizers: data-parallel training "
                                 "averages each parameter's gradient once, with its one optimizer")
        self.world, self.params = world, params
        self.buffer = params[0].xp.zeros(sum(p.numel() for p in params), dtype=params[0].dtype)
        offset = 0
        for p in params:
            p.grad_buffer = self.buffer[offset:offset + p.numel()].reshape(p.shape)
            offset += p.numel()
        step = max(1, bucket_bytes // self.buffer.itemsize)
        self.buckets = [self.buffer[i:i + step] for i in range(0, self.buffer.size, step)]

    def __call__(self):
        present = []
        for p in self.params:
            view = p.grad_buffer
            if p.grad is None:  # no gradient this update, on every rank alike
                view[...] = 0
            elif p.grad._data is not view:  # set outside backward() (or by a create_graph backward)
                view[...] = p.grad._data
            present.append(p.grad is not None)
        start = time.perf_counter()
        for bucket in self.buckets:
            self.world.allreduce_sum_(bucket)
        self.world.communication_s += time.perf_counter() - start
        self.world.reduced_bytes += self.buffer.nbytes
        self.buffer *= self.buffer.dtype.type(1 / self.world.size)
        for p, has_grad in zip(self.params, present):
            if has_grad and p.grad._data is not p.grad_buffer:
                p.grad = Tensor._wrap(p.grad_buffer)


def average_gradients(world, optimizer):
    """Make `optimizer` average its gradients over the ranks before it uses them."""
    optimizer.gradient_sync = GradientAverager(world, optimizer.params)
    return optimizer


# --- batch norm over every rank's samples ---------------------------------------------------------

class AllReduceSum(Function):
    """y = the sum of x over the ranks (the same y on every rank). Every rank's loss depends
    on y, so the gradient of x is the sum over the ranks of their gradients of y."""

    needs_inputs = False

    def __init__(self, world):
        self.world = world

    def forward(self, x):
        return self.world.allreduce_sum_(x.copy())

    def backward(self, gy):
        return AllReduceSum(self.world)(gy)


class SyncBatchNorm(Function):
    """Training-mode batch norm whose statistics cover the samples of every rank; inputs
    (x, weight, bias). Each rank's batch must be the same size (the trainer's are). The
    math is `batch_norm_in_ops` below; this is it with the batch-norm kernels of the
    registry (ops/norm.py) doing the passes over the activations:

    Forward: each rank's mean and variance (the kernel's), combined over the ranks with
    Chan et al.'s rule: the global mean, then sum_r m (var_r + (mean_r - mean)^2) / M,
    with m values per channel on a rank and M on all of them; the kernel's output, x
    normalized by the rank's own statistics, is then rescaled and shifted to the global ones.
    Backward: the textbook gradient, with its two sums taken over all ranks (PyTorch's
    SyncBatchNorm does the same):

        gbeta = sum_all(gy)      ggamma = sum_all(gy x_hat)
        gx    = gamma / (M std) (M gy - gbeta - x_hat ggamma)

    The kernel computes it with this rank's sums over m; the other ranks' samples then move
    the two subtracted means, which one correction per channel, linear in x, puts right.
    The gradients of weight and bias are this rank's own sums: the optimizer's Allreduce
    adds the other ranks'. Under create_graph the backward differentiates
    `batch_norm_in_ops` instead, as ops.norm.BatchNorm does, for higher orders."""

    def __init__(self, world, eps=1e-5):
        self.world, self.eps = world, eps

    def forward(self, x, weight, bias):
        xp, device = xp_of(x), backend.device_of(x)
        # y normalized by this rank's statistics, then moved to the global ones in place:
        # y = (x - mean) inv_std gamma + beta = y_rank (rank_std inv_std gamma) + (rank_mean - mean) inv_std gamma + beta
        y, rank_mean, rank_var, rank_inv_std = dispatch.call("batch_norm", x, None, None, self.eps, device=device)
        self.per_rank = x.size // x.shape[1]
        self.count = self.per_rank * self.world.size
        self.mean = self.world.allreduce_sum_(rank_mean * self.per_rank) / self.count
        squares = self.per_rank * (rank_var + (rank_mean - self.mean) ** 2)
        self.var = self.world.allreduce_sum_(squares) / self.count
        self.inv_std = 1 / xp.sqrt(self.var + self.eps)
        scale = weight * self.inv_std
        planes = _planes(y)  # (N, C, H*W): NumPy's per-channel loops run over whole planes, not rows
        planes *= (scale / rank_inv_std)[:, None]
        planes += ((rank_mean - self.mean) * scale + bias)[:, None]
        return y

    def backward(self, gy):
        if is_grad_enabled():
            targets = [t for t, needed in zip(self.inputs, self.needs_input_grad) if needed]
            with enable_grad():
                y = batch_norm_in_ops(*self.inputs, self.eps, self.world)
                grads = iter(grad(y, targets, gy, create_graph=True, allow_unused=True))
            return tuple(next(grads) if needed else None for needed in self.needs_input_grad)
        x, weight = self.inputs[0]._data, self.inputs[1]._data
        gx, gweight, gbias = dispatch.call("batch_norm_backward", x, gy._data, weight, self.mean, self.inv_std,
                                           device=backend.device_of(x))
        both = self.world.allreduce_sum_(xp_of(x).concatenate([gbias, gweight]))
        gbeta, ggamma = both[:len(gbias)], both[len(gbias):]
        # gx - kernel's gx = gamma inv_std ((gbias/m - gbeta/M) + x_hat (gweight/m - ggamma/M)) = x a + b
        a = weight * self.inv_std ** 2 * (gweight / self.per_rank - ggamma / self.count)
        b = weight * self.inv_std * (gbias / self.per_rank - gbeta / self.count) - self.mean * a
        planes = _planes(gx)
        planes += _planes(x) * a[:, None]
        planes += b[:, None]
        return Tensor._wrap(gx), Tensor._wrap(gweight), Tensor._wrap(gbias)


def _planes(array):
    """An (N, C, ...) array as (N, C, rest), a view where it can be."""
    return array.reshape(array.shape[0], array.shape[1], -1)


def batch_norm_in_ops(x, weight, bias, eps, world):
    """SyncBatchNorm's output written in ops (AllReduceSum for the sums over the ranks):
    the same math, differentiable to any order."""
    from . import functional as F
    axes = channel_axes(x.ndim)
    count = (x.numel() // x.shape[1]) * world.size
    mean = AllReduceSum(world)(F.sum(x, axis=axes)) / count
    centered = x - per_channel(mean, x.ndim)
    var = AllReduceSum(world)(F.sum(centered * centered, axis=axes)) / count
    return F.normalized(x, per_channel(mean, x.ndim), per_channel(var, x.ndim), eps, weight, bias, per_channel=True)


def batch_norm(x, running_mean, running_var, weight, bias, momentum, eps, world):
    """Training-mode batch norm over every rank's samples: N ranks of batch B normalize as
    one process with batch N x B would; the running statistics (when given) are updated
    with those statistics, so they too are the same on every rank."""
    from . import functional as F
    count = (x.numel() // x.shape[1]) * world.size
    if x.ndim < 2 or count < 2:
        raise ValueError(f"batch_norm in training needs more than one value per channel, got input shape {x.shape}")
    fn = SyncBatchNorm(world, eps)
    y = fn(x, *F.scale_and_shift(x, weight, bias))
    F.update_running_statistics(running_mean, running_var, fn.mean, fn.var, momentum, count)
    return y


def synchronize_batch_norm(net, world):
    """Batch-norm layers of `net` that normalize over every rank's samples while training
    (PyTorch's convert_sync_batchnorm). Returns how many layers it changed."""
    from .nn.layers import _BatchNorm
    layers = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    for layer in layers:
        layer.world = world
    return len(layers)


# --- starting ranks ------------------------------------------------------------------------------

def mpirun_command(nproc, threads_per_rank=None):
    """The `mpirun` that starts `nproc` ranks on this machine, each with `threads_per_rank`
    compute threads (default: this machine's cores shared out; variables already set win)."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise FileNotFoundError("mpirun not found: run `scripts/setup.sh dist` (it installs Open MPI with apt-get)")
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    command = [mpirun, "-np", str(nproc), "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Open MPI refuses root unless told: containers and CI run as root
        command.append("--allow-run-as-root")
    threads = threads_per_rank or max(1, (os.cpu_count() or 1) // nproc)
    for name in THREAD_VARIABLES:
        command += ["-x", f"{name}={os.environ.get(name, threads)}"]
    # Open MPI's shared-memory transport copies between processes with a ptrace-based call
    # that containers usually forbid; its plain copy-in/copy-out works everywhere
    command += ["--mca", "btl_vader_single_copy_mechanism", "none"]
    return command

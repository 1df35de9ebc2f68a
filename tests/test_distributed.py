"""Data-parallel training (ganforge/distributed.py): the flat gradient buffer and the
averaging hook in one process, then real runs of 2 ranks under `mpirun --oversubscribe`
(tests/mpi_worker.py is what each rank runs): identical weights on every rank, 2 x 32
equal to 1 x 64, a killed rank, an exact resume, the GPU's host-staging path.

Open MPI and mpi4py come from `scripts/setup.sh test`; without them the MPI tests are
skipped on a workstation and fail in CI."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ganforge as gf
from ganforge import distributed, nn, optim
from ganforge.gan.steps import update
from ganforge.gan.trainer import read_checkpoint

from .conftest import IN_CI

TESTS = Path(__file__).resolve().parent
MPI_READY = shutil.which("mpirun") is not None and importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not MPI_READY and not IN_CI, reason="Open MPI and mpi4py: scripts/setup.sh test")


# --- one process: the buffer and the hook ---------------------------------------------------------

def small_net():
    gf.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))


def test_gradients_accumulate_in_one_flat_buffer():
    net, plain = small_net(), small_net()
    averaged = distributed.average_gradients(distributed.World(), optim.SGD(net.parameters(), lr=0.1))
    buffer = averaged.gradient_sync.buffer
    x = gf.randn(4, 3)
    for model in (net, plain):
        model(x).sum().backward()
        (model(x) ** 2).sum().backward()  # a second backward adds to the first
    for p, q in zip(net.parameters(), plain.parameters()):
        assert np.shares_memory(p.grad.numpy(), buffer)
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)
    assert buffer.size == sum(p.numel() for p in net.parameters())
    averaged.zero_grad()
    net(x).sum().backward()  # after zero_grad the buffer is overwritten, not added to
    expected = gf.grad(net(x).sum(), list(net.parameters()))
    for p, g in zip(net.parameters(), expected):
        np.testing.assert_allclose(p.grad.numpy(), g.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="in two optimizers"):
        distributed.average_gradients(distributed.World(), optim.SGD(net.parameters(), lr=0.1))


class TwoIdenticalRanks(distributed.World):
    """A world of 2 ranks whose other rank always has the same gradient: the Allreduce
    doubles, the average must give back this rank's gradient. Counts the Allreduces."""

    def __init__(self):
        super().__init__()
        self.size, self.calls = 2, 0

    def allreduce_sum_(self, array):
        self.calls += 1
        array *= 2
        return array


def test_one_allreduce_per_update_even_when_clipping_reads_the_gradients_first():
    net, plain = small_net(), small_net()
    world = TwoIdenticalRanks()
    opt = distributed.average_gradients(world, optim.Adam(net.parameters(), lr=0.01))
    plain_opt = optim.Adam(plain.parameters(), lr=0.01)
    x = gf.randn(8, 3)
    for step in range(3):
        update(opt, (net(x) ** 2).mean(), clip_grad_norm=0.05)
        update(plain_opt, (plain(x) ** 2).mean(), clip_grad_norm=0.05)
        assert world.calls == step + 1
    for p, q in zip(net.parameters(), plain.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_a_large_buffer_is_reduced_in_buckets():
    net = small_net()
    world = TwoIdenticalRanks()
    sync = distributed.GradientAverager(world, net.parameters(), bucket_bytes=32)  # 8 floats a bucket
    net(gf.randn(2, 3)).sum().backward()
    expected = [p.grad.numpy().copy() for p in net.parameters()]
    sync()
    assert world.calls == -(-sync.buffer.size // 8) > 1
    for p, g in zip(net.parameters(), expected):
        np.testing.assert_array_equal(p.grad.numpy(), g)


def test_synchronized_batch_norm_on_one_rank_is_batch_norm_and_updates_the_running_statistics():
    x = gf.randn(6, 3, 2, 2)
    plain, synced = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    assert distributed.synchronize_batch_norm(nn.Sequential(synced, nn.ReLU()), distributed.World()) == 1
    np.testing.assert_allclose(synced(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-6)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(synced, name).numpy(), getattr(plain, name).numpy(), rtol=1e-6)
    synced.eval()
    np.testing.assert_allclose(synced(x).numpy(), plain.eval()(x).numpy(), rtol=1e-5, atol=1e-6)


def test_rank_seeds_keep_rank_zero_and_separate_the_others():
    assert distributed.rank_seed(5, 0) == 5
    draws = [gf.Generator(distributed.rank_seed(5, r)).normal((4,), np.float32) for r in range(3)]
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])


def test_mpirun_command_shares_the_cores_and_keeps_a_users_thread_setting(monkeypatch):
    if shutil.which("mpirun") is None:
        with pytest.raises(FileNotFoundError, match="scripts/setup.sh dist"):
            distributed.mpirun_command(2)
        return
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("GANFORGE_NUM_THREADS", raising=False)
    command = distributed.mpirun_command(2, threads_per_rank=1)
    assert command[1:3] == ["-np", "2"] and "OMP_NUM_THREADS=3" in command and "GANFORGE_NUM_THREADS=1" in command
    with pytest.raises(ValueError, match="at least 1"):
        distributed.mpirun_command(0)


def test_nproc_refuses_bad_input_in_one_line_before_starting_mpi(tmp_path, capsys):
    from ganforge import cli
    for argv, message in ((["train", "gan", "--nproc", "0"], "--nproc must be at least 1, got 0"),
                          (["train", "nosuch", "--nproc", "2"], "unknown model 'nosuch'")):
        assert cli.main(argv + ["--out", str(tmp_path / "run")]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


# --- real ranks under mpirun -------------------------------------------------------------------------

def mpirun(nproc, *args, env=None, timeout=300):
    command = distributed.mpirun_command(nproc, threads_per_rank=1) + [sys.executable, *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=TESTS.parent,
                          env=dict(os.environ, **(env or {})))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def worker(nproc, scenario, model, out, steps, data_path, env=None):
    out.mkdir(parents=True, exist_ok=True)
    mpirun(nproc, TESTS / "mpi_worker.py", scenario, model, out, steps, data_path, env=env)
    return np.load(out / ("ranks.npz" if scenario == "same-weights" else "global.npz"))


def assert_ranks_identical(arrays):
    keys = [k[2:] for k in arrays.files if k.startswith("0/")]
    assert any(k.endswith(".grad") for k in keys) and any("running_mean" in k or "_u" in k or ".u" in k for k in keys)
    for key in keys:
        assert np.array_equal(arrays["0/" + key], arrays["1/" + key]), key


@needs_mpi
@pytest.mark.parametrize("model", ["gan", "dcgan", "sngan", "cyclegan"])
def test_every_rank_holds_the_same_weights_bit_for_bit(model, tiny_fashion, tmp_path):
    """Weights, gradients and buffers (batch-norm statistics, spectral-norm vectors) after
    3 steps on 2 ranks, each on its own data and noise; rank 0 alone writes the files,
    and its checkpoint holds each rank's own state (CycleGAN's image pools)."""
    arrays = worker(2, "same-weights", model, tmp_path, 3, tiny_fashion)
    if model in ("gan", "cyclegan"):  # no buffers: only weights and gradients to compare
        keys = [k[2:] for k in arrays.files if k.startswith("0/")]
        assert all(np.array_equal(arrays["0/" + k], arrays["1/" + k]) for k in keys)
    else:
        assert_ranks_identical(arrays)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-000003", "latest", "log.csv", "log.jsonl", "losses.png",
                                           "ranks.npz", "samples"]
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    tensors, state = read_checkpoint(str(tmp_path))
    assert state["world_size"] == 2 and len(state["other_ranks"]) == 1
    assert state["other_ranks"][0]["noise"] != state["noise"]  # each rank its own noise
    source = next(iter(state["loaders"]))
    assert state["other_ranks"][0]["loaders"][source]["order"] != state["loaders"][source]["order"]
    if model == "cyclegan":
        pools = sorted(k for k in tensors if k.startswith("rank1.model"))
        assert pools and not np.array_equal(tensors[pools[0]], tensors[pools[0][len("rank1."):]])


def scaled_error(a, b, prefix, suffix):
    """The largest difference over one network's arrays, relative to its largest value."""
    keys = [k for k in a.files if k.startswith(prefix) and k.endswith(suffix) and "num_batches" not in k]
    assert keys
    return max(np.abs(a[k] - b[k]).max() for k in keys) / max(np.abs(a[k]).max() for k in keys)


@needs_mpi
@pytest.mark.parametrize("model", ["gan", "dcgan"])
def test_two_ranks_of_32_equal_one_rank_of_64(model, tiny_fashion, tmp_path):
    """The same 64-item batches and noise, split over 2 ranks or not, through the model's
    own train_step: the first step's gradients and the weights after 3 steps agree to
    float32 rounding, with batch norm only when it is synchronized. (The worker gives Adam
    a large eps, so that a gradient that is 0 up to rounding does not step by +-lr.)"""
    one = worker(1, "global-batch", model, tmp_path / "one", 3, tiny_fashion)
    two = worker(2, "global-batch", model, tmp_path / "two", 3, tiny_fashion)
    for net in "GD":
        assert scaled_error(one, two, net + ".", ".grad.first") < 1e-5, net
        assert scaled_error(one, two, net + ".", "weight") < 1e-7, net
    if model == "dcgan":  # without synchronized statistics each rank normalizes by its own 32
        unsynced = worker(2, "global-batch-unsynced", model, tmp_path / "unsynced", 3, tiny_fashion)
        assert scaled_error(one, unsynced, "D.", ".grad.first") > 1e-2
        assert scaled_error(one, unsynced, "G.", "weight") > 1e-6


def rank_one_pid(out_dir, timeout=60):
    """The process of rank 1 of the run writing to out_dir (Open MPI names ranks in the environment)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"OMPI_COMM_WORLD_RANK=1" in environ and str(out_dir).encode() in cmdline:
                return int(pid)
        time.sleep(0.05)
    raise AssertionError("rank 1 never started")


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the run ended first: {out[-2000:]}\n{err[-3000:]}")
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def final_weights(run):
    tensors, state = read_checkpoint(str(run))
    return state["step"], {k: v for k, v in tensors.items() if k[:2] in ("G.", "D.")}


@needs_mpi
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds rank 1 through /proc")
def test_a_killed_rank_ends_the_run_and_resume_continues_exactly(tmp_path):
    """`ganforge train --nproc 2`; rank 1 is killed after the first checkpoint; the run
    stops with a message, and --resume on 2 ranks ends where an uninterrupted run does."""
    def train(out, steps, *extra, wait=True):
        command = [sys.executable, "-m", "ganforge.cli", "train", "gan", "--nproc", "2", "--steps", str(steps),
                   "--checkpoint-every", "10", "--sample-every", "100000", "--no-progress", "--out", str(out), *extra]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=TESTS.parent)
        if wait:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err[-3000:]
        return process

    killed = tmp_path / "killed"
    run = train(killed, 100_000, wait=False)
    wait_for(killed / "checkpoint-000010", run)
    os.kill(rank_one_pid(killed), signal.SIGKILL)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0
    assert "stopped" in err and "--resume" in err and str(killed / "latest") in err
    start, _ = final_weights(killed)
    end = start + 20
    train(killed, end, "--resume")
    train(tmp_path / "straight", end)
    resumed_step, resumed = final_weights(killed)
    straight_step, straight = final_weights(tmp_path / "straight")
    assert resumed_step == straight_step == end and resumed.keys() == straight.keys()
    for key in straight:
        assert np.array_equal(resumed[key], straight[key]), key
    # another number of ranks is refused, with the fix
    done = subprocess.run([sys.executable, "-m", "ganforge.cli", "train", "gan", "--resume", "--out", str(killed)],
                          capture_output=True, text=True, cwd=TESTS.parent)
    assert done.returncode == 1
    assert "trained on 2 rank(s), this run has 1" in done.stderr and "--nproc 2" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@needs_mpi
@pytest.mark.skipif(gf.backend.gpu_available(), reason="a real GPU: the stand-in is for machines without one")
def test_gpu_arrays_are_reduced_through_the_host_on_the_stand_in(tiny_fashion, tmp_path):
    """CuPy without NCCL (here the strict stand-in, which refuses host arrays in device
    code) stages gradients and broadcasts through the host; the ranks still agree."""
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS / "strict_cupy"), str(TESTS.parent)]),
           "GANFORGE_KERNELS": "ref", "WORKER_DEVICE": "cuda"}
    arrays = worker(2, "same-weights", "dcgan", tmp_path, 2, tiny_fashion, env=env)
    assert_ranks_identical(arrays)

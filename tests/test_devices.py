"""The "cuda" code paths on a machine without a GPU, through a strict stand-in for CuPy
(tests/strict_cupy): NumPy underneath, but an operation that mixes device and host arrays
fails, as it does with CuPy. Each check runs in its own process, with the stand-in first
on the path and the `ref` kernels (the GPU kernels themselves are tested in
test_gpu_kernels.py). What only a real GPU shows is still owed: CuPy's API and numerics.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganforge import backend

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(backend.gpu_available(), reason="a real GPU runs the `gpu` tests themselves")


def with_strict_cupy(command, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS / "strict_cupy"), str(TESTS.parent)]),
               GANFORGE_KERNELS="ref")
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env, cwd=TESTS.parent,
                          **kwargs)


def test_the_stand_in_refuses_to_mix_host_and_device_arrays():
    done = with_strict_cupy(["-c", "import numpy, cupy; cupy.asarray([1.0, 2.0]) + numpy.ones(2)"])
    assert done.returncode != 0 and "strict cupy: a NumPy array of shape (2,) reached add" in done.stderr


def test_every_gpu_marked_op_and_layer_test_passes_on_the_stand_in():
    """The CuPy-parametrized copies of the op, layer, optimizer and trainer tests."""
    done = with_strict_cupy(["-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests",
                             "--ignore=tests/test_gpu_kernels.py", "--ignore=tests/test_devices.py"], timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]


@pytest.mark.parametrize("variant", ["dcgan", "wgan-gp", "sngan", "cgan"])
def test_training_on_cuda_checkpoints_and_resumes_exactly(variant, tmp_path):
    """4 steps straight against 2 steps, a checkpoint and --resume to 4 (losses equal to the bit)."""
    def train(out, steps, *extra):
        done = with_strict_cupy(["-m", "ganforge.cli", "train", variant, "--device", "cuda", "--steps", str(steps),
                                 "--sample-every", "2", "--out", str(out), *extra], timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    straight = train(tmp_path / "straight", 4)
    train(tmp_path / "resumed", 2)
    resumed = train(tmp_path / "resumed", 4, "--resume")
    assert resumed[-1]["step"] == straight[-1]["step"] == 4
    assert resumed[-1] == straight[-1]

import importlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from ganforge import backend
from ganforge.data import write_idx

if not backend.gpu_available():
    # Without a GPU, Triton's kernels run only in its interpreter, a choice Triton makes
    # when it is first imported (tests/test_gpu_kernels.py).
    os.environ.setdefault("TRITON_INTERPRET", "1")

import ganforge as gf  # noqa: E402

# Gradient checks are slow per example; a deadline would only make them flaky.
settings.register_profile("default", deadline=None, max_examples=12,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
IN_CI = os.environ.get("CI") == "true"


def import_reference(name, install):
    """A test-only reference library (PyTorch, safetensors): skipped where it is missing,
    except under CI=true, whose set-up installs it, so that a missing one fails there
    instead of quietly skipping the tests that compare against it."""
    if IN_CI:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            pytest.fail(f"CI must have {name} ({install}): {exc}", pytrace=False)
    return pytest.importorskip(name, reason=f"{name} is the reference here: {install}")


# the real data set: skipped where it is missing, except in CI, whose set-up installs it
needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist") and not IN_CI,
                                         reason="apt-get install dataset-fashion-mnist")


def pytest_collection_modifyitems(config, items):
    if backend.gpu_available():
        return
    skip = pytest.mark.skip(reason=f"no CUDA device with CuPy here ({backend.cupy_unavailable_reason()})")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def to_tensor(array, device, requires_grad=False, dtype=np.float64):
    """A tensor on `device` from a NumPy array."""
    return gf.Tensor(np.asarray(array, dtype=dtype), device=device, requires_grad=requires_grad)


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    """A 64-image stand-in for Fashion-MNIST in IDX files (the real one is slow to train on)."""
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"), rng.integers(0, 256, (64, 28, 28), dtype=np.uint8))
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"), rng.integers(0, 10, 64, dtype=np.uint8))
    return str(folder)


@pytest.fixture
def small_fashion_split(monkeypatch):
    """The trainer asks for the official 60000 images; the stand-in has 64."""
    from ganforge.data import fashion_edges
    from ganforge.gan import trainer as trainer_module
    real = trainer_module.load_fashion_mnist
    for module in (trainer_module, fashion_edges):
        monkeypatch.setattr(module, "load_fashion_mnist", lambda root, split: real(root, split, expected_count=0))

"""gf.save / gf.load, and arrays shared with NumPy, PyTorch and CuPy through DLPack."""
import os

import numpy as np
import pytest

import ganforge as gf
from ganforge import io
from ganforge.gan import nets

from .conftest import import_reference


def trained_generator():
    """dcgan's generator after one optimizer step, so that every tensor, the batch-norm
    statistics and counts included, differs from its initial value."""
    gf.manual_seed(0)
    G = nets.dcgan_generator(100, 1, 28, init="default")
    opt = gf.optim.Adam(G.parameters(), lr=1e-3)
    (G(gf.randn(4, 100, 1, 1)) ** 2).mean().backward()
    opt.step()
    return G, opt


def test_save_and_load_give_back_the_object(tmp_path):
    G, opt = trained_generator()
    training = {"G": G.state_dict(), "opt": opt.state_dict(), "step": 7, "note": "x", "lrs": [1e-3, (2, None)],
                "flag": True, "scores": {3: np.float32(0.5)}}
    gf.save(training, tmp_path / "run.safetensors")
    loaded = gf.load(tmp_path / "run.safetensors")
    assert loaded["step"] == 7 and loaded["note"] == "x" and loaded["lrs"] == [1e-3, (2, None)]
    assert loaded["flag"] is True and loaded["scores"] == {3: 0.5}
    assert list(loaded["G"]) == list(G.state_dict())
    for key, value in G.state_dict().items():
        assert isinstance(loaded["G"][key], gf.Tensor)
        np.testing.assert_array_equal(loaded["G"][key].numpy(), value.numpy())
    again, again_opt = trained_generator()
    again.load_state_dict(loaded["G"])
    again_opt.load_state_dict(loaded["opt"])
    z = gf.randn(2, 100, 1, 1)
    np.testing.assert_array_equal(again.eval()(z).numpy(), G.eval()(z).numpy())
    gf.save({"scalar": gf.tensor(2.5)}, tmp_path / "scalar.safetensors")  # 0-d stays 0-d
    assert gf.load(tmp_path / "scalar.safetensors")["scalar"].shape == ()
    gf.save(gf.arange(3), tmp_path / "one.safetensors")
    np.testing.assert_array_equal(gf.load(tmp_path / "one.safetensors").numpy(), [0, 1, 2])


def test_saving_what_cannot_be_stored_is_a_one_line_error(tmp_path):
    G, _ = trained_generator()
    with pytest.raises(TypeError, match=r"cannot store a Sequential .*state_dict\(\)"):
        gf.save(G, tmp_path / "G.safetensors")
    with pytest.raises(TypeError, match="keys must be strings or ints"):
        gf.save({(1, 2): gf.ones(1)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="both be stored as 'a.b'"):
        gf.save({"a.b": gf.ones(1), "a": {"b": gf.ones(1)}}, tmp_path / "clash.safetensors")
    assert not os.listdir(tmp_path)  # nothing half-written is left behind


def test_a_corrupt_structure_is_refused_by_name(tmp_path):
    io.save_tensors(tmp_path / "bad.safetensors", {"t": np.ones(2)}, {"ganforge.structure": "{not json"})
    with pytest.raises(io.CheckpointError, match="metadata is corrupt"):
        gf.load(tmp_path / "bad.safetensors")
    with pytest.raises(io.CheckpointError, match="cannot be read"):
        gf.load(tmp_path / "missing.safetensors")


def test_weights_go_to_pytorch_and_back(tmp_path):
    """dcgan's G saved by gf.save loads into the same network in PyTorch (through the
    safetensors package and load_state_dict) and gives the same images; PyTorch's
    weights, saved by safetensors.torch, load back into ganforge."""
    torch = import_reference("torch", "pip install torch==2.13.0")
    safetensors_torch = import_reference("safetensors.torch", "pip install safetensors")
    from .test_torch_parity import _twin
    G, _ = trained_generator()
    gf.save(G.state_dict(), tmp_path / "G.safetensors")
    theirs = _twin("torch_steps").g28()
    theirs.load_state_dict(safetensors_torch.load_file(str(tmp_path / "G.safetensors")))
    z = np.random.default_rng(0).standard_normal((3, 100, 1, 1)).astype(np.float32)
    with torch.no_grad():
        expected = theirs.eval()(torch.tensor(z)).numpy()
    np.testing.assert_allclose(G.eval()(gf.tensor(z)).numpy(), expected, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for p in theirs.parameters():
            p.mul_(0.5)
    safetensors_torch.save_file(theirs.state_dict(), str(tmp_path / "theirs.safetensors"))
    G.load_state_dict(gf.load(tmp_path / "theirs.safetensors"))
    with torch.no_grad():
        expected = theirs(torch.tensor(z)).numpy()
    np.testing.assert_allclose(G(gf.tensor(z)).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_dlpack_shares_memory_with_numpy():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = gf.from_dlpack(array)
    array[0, 0] = 9
    assert t[0, 0].item() == 9 and t.dtype == np.float32
    back = np.from_dlpack(t)
    back[1, 2] = -1
    assert t[1, 2].item() == -1 and array[1, 2] == -1


def test_dlpack_shares_memory_with_pytorch():
    torch = import_reference("torch", "pip install torch==2.13.0")
    theirs = torch.arange(4, dtype=torch.float64)
    ours = gf.from_dlpack(theirs)
    theirs[0] = 5
    assert ours[0].item() == 5
    back = torch.from_dlpack(ours)
    back[3] = -2
    assert ours[3].item() == -2 and theirs[3].item() == -2


@pytest.mark.gpu
def test_dlpack_shares_memory_with_cupy():
    cupy = pytest.importorskip("cupy")
    array = cupy.arange(4, dtype=cupy.float32)
    t = gf.from_dlpack(array)
    assert t.device == "cuda"
    array[0] = 7
    assert t[0].item() == 7
    cupy.from_dlpack(t)[1] = -1
    assert array[1].item() == -1


def test_dlpack_refuses_a_tensor_in_the_graph_and_what_is_not_an_array():
    with pytest.raises(RuntimeError, match=r"pass x.detach\(\)"):
        np.from_dlpack(gf.ones(2, requires_grad=True))
    assert np.from_dlpack(gf.ones(2, requires_grad=True).detach()).shape == (2,)
    with pytest.raises(TypeError, match="needs an object with __dlpack__"):
        gf.from_dlpack([1, 2])

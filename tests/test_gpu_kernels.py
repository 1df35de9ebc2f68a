"""The Triton and CUDA kernels of ganforge/backends/gpu/ against their `ref` twins.

Without a GPU (CI), the Triton kernels run in Triton's interpreter on NumPy arrays
(tests/conftest.py sets TRITON_INTERPRET=1 before Triton is first imported); every CUDA
source is compiled with nvcc for sm_80 and sm_90, and run on the CPU through
tests/cuda_emulator with the same launch wrappers that CuPy uses. The `gpu` tests run
the kernels compiled, on CuPy arrays; they need a CUDA device (bench/gpu_check.py runs them).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ganforge as gf
from ganforge import backend, dispatch
from ganforge.backends.gpu import runtime as kernels
from ganforge import functional as F
from ganforge.ops import conv, penalty, spectral
from ganforge.testing import gradcheck, gradgradcheck

from .op_specs import window_case

IN_CI = bool(os.environ.get("CI"))


def _triton_reason():
    ok, why = kernels.triton_available()
    if not ok:
        return why
    if not kernels.interpreting():
        return "TRITON_INTERPRET=1 is not set (a GPU machine runs the compiled kernels in the gpu tests instead)"
    return ""


interpreted = pytest.mark.skipif(bool(_triton_reason()) and not IN_CI, reason=_triton_reason() or "runs")
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def test_ci_runs_the_triton_interpreter():
    """CI has no GPU: the interpreter is the only place the Triton kernels run there."""
    if not IN_CI or backend.gpu_available():
        pytest.skip("checks CI's set-up (no GPU, Triton interpreted); elsewhere `ganforge info` says what runs")
    assert _triton_reason() == ""


def test_kernel_sources_are_found():
    directory = kernels.source_dir()
    assert {p.stem for p in (directory / "triton").glob("*.py")} == {"conv", "spectral_norm"}
    assert {p.stem for p in kernels.cuda_sources()} == {"conv", "spectral_norm", "grad_penalty"}


def test_every_gpu_kernel_is_registered_for_cuda():
    both = ("conv2d", "conv_transpose2d", "conv2d_weight_grad", "spectral_norm")
    cuda_only = ("gradient_penalty", "gradient_penalty_backward", "gradient_penalty_interpolate")
    for op in both + cuda_only:
        impls = dispatch.implementations(op)
        assert "cuda" in impls["cuda"].devices and "ref" in impls, op
        assert ("triton" in impls) == (op in both), op
        if op in both:
            assert "cuda" in impls["triton"].devices, op


# --- convolution ---------------------------------------------------------------------------

@st.composite
def conv_geometry(draw):
    """A convolution (groups too) over an image it fits, with strides up to 3."""
    (n, c, h, w), geometry = draw(window_case(max_stride=3, max_padding=2, max_size=9))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    return dict(n=n, c=groups * c, o=groups * draw(st.integers(1, 3)), h=h, w=w, kernel=geometry["kernel_size"],
                stride=geometry["stride"], padding=geometry["padding"], dilation=geometry["dilation"], groups=groups,
                seed=draw(st.integers(0, 2**16)))


def conv_arrays(g, dtype, transposed=False):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c"], g["h"], g["w"])).astype(dtype)
    if transposed:
        w = rng.standard_normal((g["c"], g["o"] // g["groups"]) + g["kernel"]).astype(dtype)
    else:
        w = rng.standard_normal((g["o"], g["c"] // g["groups"]) + g["kernel"]).astype(dtype)
    return rng, x, w


# Small tiles, so that a handful of pixels already spans several programs and the masks
# at every edge of a tile are exercised; and the wrappers' own (GPU-sized) tiles.
BLOCKS = [(16, 16, 16), (64, 64, 32)]


@interpreted
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocks", BLOCKS, ids=["tiles16", "tiles64"])
@given(g=conv_geometry())
@settings(max_examples=8)
def test_triton_conv2d_matches_the_reference(dtype, blocks, g):
    _, x, w = conv_arrays(g, dtype)
    launch = kernels.TritonLaunch("conv", x)
    out_size = conv.output_size(x.shape[2:], g["kernel"], g["stride"], g["padding"], g["dilation"])
    ours = launch.module.conv2d(launch, x, w, out_size, g["stride"], g["padding"], g["dilation"], g["groups"],
                                precision="ieee", blocks=blocks)
    ref = conv.conv2d_ref(x, w, g["stride"], g["padding"], g["dilation"], g["groups"])
    np.testing.assert_allclose(ours, ref, **TOL[dtype])


@interpreted
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blocks", BLOCKS, ids=["tiles16", "tiles64"])
@given(g=conv_geometry(), extra=st.tuples(st.integers(0, 2), st.integers(0, 1)))
@settings(max_examples=8)
def test_triton_conv_transpose2d_matches_the_reference(dtype, blocks, g, extra):
    _, x, w = conv_arrays(g, dtype, transposed=True)
    output_padding = tuple(min(e, s - 1) for e, s in zip(extra, g["stride"]))
    out_size = conv.transposed_output_size(x.shape[2:], g["kernel"], g["stride"], g["padding"], g["dilation"],
                                           output_padding)
    assume(min(out_size) >= 1)  # hypothesis draws another geometry instead
    launch = kernels.TritonLaunch("conv", x)
    ours = launch.module.conv_transpose2d(launch, x, w, out_size, g["stride"], g["padding"], g["dilation"],
                                          g["groups"], precision="ieee", blocks=blocks)
    ref = conv.conv_transpose2d_ref(x, w, out_size, g["stride"], g["padding"], g["dilation"], g["groups"])
    np.testing.assert_allclose(ours, ref, **TOL[dtype])


@interpreted
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [1, 3, None], ids=["whole", "split3", "auto"])
@given(g=conv_geometry())
@settings(max_examples=8)
def test_triton_conv2d_weight_grad_matches_the_reference(dtype, split, g):
    rng, x, w = conv_arrays(g, dtype)
    out_size = conv.output_size(x.shape[2:], g["kernel"], g["stride"], g["padding"], g["dilation"])
    gy = rng.standard_normal((g["n"], g["o"]) + out_size).astype(dtype)
    launch = kernels.TritonLaunch("conv", x)
    ours = launch.module.conv2d_weight_grad(launch, x, gy, w.shape, g["stride"], g["padding"], g["dilation"],
                                            g["groups"], precision="ieee", blocks=(16, 16, 16), split=split)
    ref = conv.conv2d_weight_grad_ref(x, gy, w.shape, g["stride"], g["padding"], g["dilation"], g["groups"])
    np.testing.assert_allclose(ours, ref, **TOL[dtype])


@interpreted
def test_triton_tf32_products_stay_within_tf32_rounding():
    """With precision="tf32" the products round to TF32's 10-bit mantissa: a relative error
    of a few 2^-11 at most. Triton's interpreter computes tf32 dots in float32 (measured:
    the same 1e-7 error as "ieee"), so only on a GPU can the error also be told apart from
    float32's: there it must exceed 1e-5 (test_tf32_is_used_only_when_asked_for, too)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 8, 6, 6)).astype(np.float32), rng.standard_normal((8, 4, 4, 4)).astype(np.float32)
    launch = kernels.TritonLaunch("conv", x)
    ours = launch.module.conv_transpose2d(launch, x, w, (12, 12), (2, 2), (1, 1), (1, 1), 1, precision="tf32")
    ref = conv.conv_transpose2d_ref(x.astype(np.float64), w.astype(np.float64), (12, 12), (2, 2), (1, 1), (1, 1), 1)
    error = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert error < 2 * 2.0 ** -11, error
    if not kernels.interpreting():
        assert error > 1e-5, f"TF32 was asked for, but the error {error:.1e} is float32's"


@interpreted
def test_triton_convolutions_take_large_tiles_only_where_they_were_faster():
    """The tile rule, on layers measured on an H100: dcgan64's wide layers get 128x128
    tiles on 8 warps; 64 output channels, a 16-tap reduction, a 64-sample weight gradient
    or too few programs keep 64x64 tiles on 4."""
    tiles = kernels.triton_module("conv")._tiles
    large, small = ((128, 128, 32), 8), ((64, 64, 32), 4)
    assert tiles(128 * 8 * 8, 128, 256 * 4, 4) == large        # dcgan64 G3 forward (per phase)
    assert tiles(128 * 8 * 8, 256, 128 * 16, 1) == large       # dcgan64 G3 input gradient
    assert tiles(256, 128 * 16, 128 * 16 * 16, 264) == large   # dcgan64 G3 weight gradient
    assert tiles(128 * 16 * 16, 64, 128 * 4, 4) == small       # dcgan64 G4 forward: 64 channels
    assert tiles(64 * 14 * 14, 128, 16, 1) == small            # dcgan28 G3 input gradient: 16 taps
    assert tiles(100, 256 * 49, 64, 264) == small              # dcgan28 G1 weight gradient: 64 samples
    assert tiles(64 * 7 * 7, 256, 128 * 16, 1) == small        # dcgan28 G2 input gradient: 50 programs
    assert tiles(128 * 8 * 8, 128, 256 * 4, 4, blocks=(16, 16, 16)) == ((16, 16, 16), 4)


def test_gpu_float32_convolutions_are_plain_float32_unless_tf32_is_asked_for():
    from ganforge.backends.gpu import kernels as gpu_kernels
    assert not backend.tf32_enabled() and gpu_kernels._conv_precision() == "ieee"
    try:
        backend.set_tf32(True)
        assert gpu_kernels._conv_precision() == "tf32"
    finally:
        backend.set_tf32(False)


@interpreted
def test_triton_convolutions_through_the_registry_are_differentiable_twice(monkeypatch):
    """With every op on its Triton kernel, a conv net's first and second gradients still
    match finite differences: the kernels replace only the arrays inside forward."""
    monkeypatch.setenv("GANFORGE_KERNELS", "triton")
    rng = np.random.default_rng(1)
    x = gf.tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    w = gf.tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)

    def f(x, w):
        return F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    assert gradcheck(f, [x, w])
    assert gradgradcheck(f, [x, w])


# --- spectral norm -------------------------------------------------------------------------

@interpreted
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(rows=st.integers(1, 40), cols=st.integers(1, 70), iterations=st.integers(1, 3), seed=st.integers(0, 999))
@settings(max_examples=10)
def test_triton_spectral_norm_step_matches_the_reference(dtype, rows, cols, iterations, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(dtype)
    u = rng.standard_normal(rows).astype(dtype)
    u /= np.linalg.norm(u)
    launch = kernels.TritonLaunch("spectral_norm", w)
    ours = launch.module.power_iteration(launch, w, u, iterations, 1e-12, scale=True, blocks=(16, 32), block=64)
    ref = spectral.spectral_norm_with(spectral.power_iteration_ref)(w.astype(np.float64), u.astype(np.float64),
                                                                   iterations, 1e-12)
    for name, a, b in zip(("u", "v", "sigma", "W / sigma"), ours, ref):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == np.float32 else 1e-11, atol=1e-6, err_msg=name)


@interpreted
def test_triton_spectral_norm_is_what_the_layer_uses(monkeypatch):
    """sngan's layers with GANFORGE_KERNELS=triton: same weights, u, v and outputs as `ref`."""
    outputs = {}
    for impl in ("ref", "triton"):
        monkeypatch.setenv("GANFORGE_KERNELS", impl)
        gf.manual_seed(3)
        layer = gf.nn.spectral_norm(gf.nn.Conv2d(3, 5, 3))
        x = gf.randn(2, 3, 6, 6)
        y = layer(x)
        y.sum().backward()
        outputs[impl] = (y.numpy(), layer.weight_u.numpy(), layer.weight_v.numpy(), layer.weight_orig.grad.numpy())
    for a, b in zip(outputs["triton"], outputs["ref"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- gradient penalty ----------------------------------------------------------------------

@st.composite
def penalty_arrays(draw, dtype):
    n, features = draw(st.integers(1, 9)), draw(st.integers(1, 300))
    rng = np.random.default_rng(draw(st.integers(0, 999)))
    g = (rng.standard_normal((n, features)) * draw(st.sampled_from([0.01, 0.3, 1.0]))).astype(dtype)
    if draw(st.booleans()):
        g[0] = 0  # a zero gradient: its backward term must be 0, not NaN
    return g


@interpreted
def test_a_wgan_gp_critic_step_on_the_triton_kernels_matches_ref(monkeypatch):
    """Every Triton kernel a WGAN-GP critic step meets, through the registry: the conv,
    conv-transpose and weight-gradient kernels in the double backward (the penalty itself
    has no Triton kernel: it runs on `cpp` or `ref` here)."""
    from ganforge.gan.penalties import gradient_penalty
    results = {}
    for impl in ("ref", "triton"):
        monkeypatch.setenv("GANFORGE_KERNELS", impl)
        gf.manual_seed(0)
        critic = gf.nn.Sequential(gf.nn.Conv2d(1, 4, 4, 2, 1), gf.nn.LeakyReLU(0.2), gf.nn.Conv2d(4, 1, 3, 1, 0),
                                  gf.nn.Flatten())
        real, fake = gf.randn(3, 1, 7, 7), gf.randn(3, 1, 7, 7)
        loss = critic(fake).mean() - critic(real).mean() + gradient_penalty(critic, real, fake,
                                                                            generator=gf.Generator(1))
        loss.backward()
        results[impl] = [loss.numpy()] + [p.grad.numpy() for p in critic.parameters()]
    for a, b in zip(results["triton"], results["ref"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@interpreted
def test_impl_argument_picks_the_triton_kernel_for_one_op():
    rng = np.random.default_rng(4)
    x, w = gf.tensor(rng.standard_normal((2, 3, 5, 5))), gf.tensor(rng.standard_normal((3, 2, 4, 4)))
    ours = F.conv_transpose2d(x, w, stride=2, padding=1, impl="triton")
    np.testing.assert_allclose(ours.numpy(), F.conv_transpose2d(x, w, stride=2, padding=1, impl="ref").numpy(),
                               rtol=1e-12, atol=1e-12)
    assert dispatch.resolve("conv_transpose2d", "cpu", impl="triton").impl == "triton"


@interpreted
def test_the_triton_kernels_run_without_pytorch():
    """A fresh process runs both Triton kernel families; PyTorch is never imported."""
    script = (
        "import sys, numpy as np\n"
        "import ganforge as gf\n"
        "from ganforge import functional as F\n"
        "from ganforge.gan.penalties import gradient_penalty\n"
        "import os; os.environ['GANFORGE_KERNELS'] = 'triton'\n"
        "D = gf.nn.Sequential(gf.nn.spectral_norm(gf.nn.Conv2d(1, 2, 3)), gf.nn.Flatten())\n"
        "real, fake = gf.randn(2, 1, 5, 5), gf.randn(2, 1, 5, 5)\n"
        "loss = F.mean(D(fake)) + gradient_penalty(D, real, fake)\n"
        "loss.backward()\n"
        "y = F.conv_transpose2d(gf.randn(1, 2, 3, 3), gf.randn(2, 1, 2, 2), stride=2)\n"
        "from ganforge.backends.gpu import runtime as kernels\n"
        "assert set(kernels._triton_modules) == {'conv', 'spectral_norm'}, kernels._triton_modules\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
        "print('ok')\n")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr


def test_compiled_triton_launches_go_to_the_stream_ganforge_names():
    """During a launch Triton's driver reports the given stream; afterwards its own again."""
    class Driver:
        def get_current_stream(self, device=None):
            return "torch's stream"
    driver = Driver()
    with kernels.launching_on(driver, lambda: 1234):
        assert driver.get_current_stream(0) == 1234
    assert driver.get_current_stream(0) == "torch's stream" and "get_current_stream" not in vars(driver)
    driver.get_current_stream = lambda device=None: "set on the instance"  # how torch-free Triton sets it
    with kernels.launching_on(driver, lambda: 99):
        assert driver.get_current_stream() == 99
    assert driver.get_current_stream() == "set on the instance"


def test_triton_refuses_numpy_arrays_outside_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="only in Triton's interpreter"):
        kernels.TritonLaunch("conv", np.zeros(3))


# --- CUDA: compiled by nvcc here, run on a GPU --------------------------------------------

@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", ["conv", "spectral_norm", "grad_penalty"])
def test_cuda_source_compiles_with_nvcc(source, arch, tmp_path):
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        assert not IN_CI, "CI must compile the CUDA kernels: nvcc is missing"
        pytest.skip("nvcc is not installed")
    directory = kernels.source_dir() / "cuda"
    cubin = tmp_path / f"{source}.cubin"
    result = subprocess.run([nvcc, "-std=c++17", f"-arch={arch}", "-Werror", "all-warnings", "-cubin",
                             f"-I{directory}", "-o", str(cubin), str(directory / f"{source}.cu")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert cubin.stat().st_size > 0


def test_every_triton_kernel_compiles_for_sm80_and_sm90():
    """The interpreter is more lenient than Triton's compiler: compile each kernel, as the
    wrappers launch it, to a cubin for both architectures (no GPU needed)."""
    if not kernels.triton_available()[0] and not kernels.interpreting():
        pytest.skip("Triton is not installed")
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    repository = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "tests.triton_compile"], capture_output=True, text=True, env=env,
                          cwd=repository, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    compiled = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(c["cubin_bytes"] > 0 for c in compiled)
    kernels_seen = {c["kernel"] for c in compiled}
    assert kernels_seen == {"conv2d_kernel", "conv_transpose2d_kernel", "conv_transpose2d_phase_kernel",
                            "conv2d_weight_grad_kernel", "transposed_product_kernel", "product_kernel",
                            "normalize_kernel"}
    for name in kernels_seen:
        assert {(c["dtype"], c["arch"]) for c in compiled if c["kernel"] == name} == \
            {(d, a) for d in ("fp32", "fp64") for a in ("sm_80", "sm_90")}, name


def nvrtc_library():
    """NVRTC from the nvidia-cuda-nvrtc wheel (the test extra), or None."""
    import ctypes
    import glob
    import site
    for directory in site.getsitepackages() + [site.getusersitepackages()]:
        for path in sorted(glob.glob(os.path.join(directory, "nvidia", "*", "lib", "libnvrtc.so.*"))):
            for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so.*")):
                ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)  # NVRTC opens it by name
            return ctypes.CDLL(path)
    return None


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("source", ["conv", "spectral_norm", "grad_penalty"])
def test_cuda_source_compiles_with_nvrtc_as_cupy_compiles_it(source, arch):
    """CuPy compiles the kernels at run time with NVRTC, which has no host headers and its
    own builtins: compile each source that way, with the options ganforge gives RawModule."""
    import ctypes
    nvrtc = nvrtc_library()
    if nvrtc is None:
        assert not IN_CI, "CI must compile the CUDA kernels with NVRTC: the nvidia-cuda-nvrtc wheel is missing"
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
    program = ctypes.c_void_p()
    code = (kernels.source_dir() / "cuda" / f"{source}.cu").read_bytes()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), code, f"{source}.cu".encode(), 0, None, None) == 0
    options = [option.encode() for option in (*kernels.nvrtc_options(), f"-arch={arch}")]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    assert status == 0, log.value.decode()


def test_cuda_entry_points_exist_for_both_precisions():
    """Every name backends/gpu/kernels.py launches is an extern "C" kernel of its source."""
    import re
    wanted = {"conv": ["conv2d_forward", "conv_transpose2d_forward", "conv_transpose2d_phase", "conv2d_weight_grad"],
              "spectral_norm": ["transposed_product", "product", "normalize"],
              "grad_penalty": ["interpolate", "norms", "penalty", "backward"]}
    for source, names in wanted.items():
        text = (kernels.source_dir() / "cuda" / f"{source}.cu").read_text()
        macro = re.search(r'#define GANFORGE_\w+_ENTRY_POINTS\(T, SUFFIX\)(.*?)\n\n', text, re.S).group(1)
        for name in names:
            assert f"{name}_##SUFFIX(" in macro, (source, name)
        assert "(float, f32)" in text and "(double, f64)" in text


# --- CUDA on the CPU: the kernels' logic, emulated (tests/cuda_emulator) --------------------

@pytest.fixture(scope="module")
def emulated_libraries(tmp_path_factory):
    from . import cuda_emulator
    directory = tmp_path_factory.mktemp("cuda_emulator")
    return {name: cuda_emulator.compile_source(name, directory) for name in ("conv", "spectral_norm", "grad_penalty")}


@pytest.fixture(scope="module")
def emulated_cuda(emulated_libraries):
    """gpu_kernels' CUDA wrappers, unchanged, launching the emulated kernels on NumPy arrays."""
    from .cuda_emulator import EmulatedKernel

    def cuda_function(source, name, dtype):
        return EmulatedKernel(emulated_libraries[source], f"{name}_{kernels.CUDA_SUFFIX[np.dtype(dtype)]}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "cuda_function", cuda_function)
        yield


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(g=conv_geometry(), split_target=st.sampled_from([1, 264]))
@settings(max_examples=6)
def test_emulated_cuda_convolutions_match_the_reference(emulated_cuda, dtype, g, split_target):
    from ganforge.backends.gpu import kernels as gpu_kernels
    rng, x, w = conv_arrays(g, dtype)
    _, _, wt = conv_arrays(g, dtype, transposed=True)
    geometry = (g["stride"], g["padding"], g["dilation"], g["groups"])
    out_size = conv.output_size(x.shape[2:], g["kernel"], *geometry[:3])
    gy = rng.standard_normal((g["n"], g["o"]) + out_size).astype(dtype)
    np.testing.assert_allclose(gpu_kernels.conv2d_cuda(x, w, *geometry), conv.conv2d_ref(x, w, *geometry),
                               **TOL[dtype])
    np.testing.assert_allclose(gpu_kernels.conv2d_weight_grad_cuda(x, gy, w.shape, *geometry,
                                                                   target_blocks=split_target),
                               conv.conv2d_weight_grad_ref(x, gy, w.shape, *geometry), **TOL[dtype])
    t_size = conv.transposed_output_size(x.shape[2:], g["kernel"], *geometry[:3], (0, 0))
    if min(t_size) >= 1:
        np.testing.assert_allclose(gpu_kernels.conv_transpose2d_cuda(x, wt, t_size, *geometry),
                                   conv.conv_transpose2d_ref(x, wt, t_size, *geometry), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(rows=st.integers(1, 70), cols=st.integers(1, 300), iterations=st.integers(1, 2), seed=st.integers(0, 999))
@settings(max_examples=6)
def test_emulated_cuda_spectral_norm_matches_the_reference(emulated_cuda, dtype, rows, cols, iterations, seed):
    from ganforge.backends.gpu import kernels as gpu_kernels
    rng = np.random.default_rng(seed)
    w, u = rng.standard_normal((rows, cols)).astype(dtype), rng.standard_normal(rows).astype(dtype)
    u /= np.linalg.norm(u)
    ours = gpu_kernels.spectral_norm_cuda(w, u, iterations, 1e-12)
    ref = spectral.spectral_norm_with(spectral.power_iteration_ref)(w.astype(np.float64), u.astype(np.float64),
                                                                   iterations, 1e-12)
    for name, a, b in zip(("u", "v", "sigma", "W / sigma"), ours, ref):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == np.float32 else 1e-11, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), one_sided=st.booleans())
@settings(max_examples=6)
def test_emulated_cuda_gradient_penalty_matches_the_reference(emulated_cuda, dtype, data, one_sided):
    from ganforge.backends.gpu import kernels as gpu_kernels
    g = data.draw(penalty_arrays(dtype))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else TOL[dtype]
    value, norms = gpu_kernels.gradient_penalty_cuda(g, 0.5, one_sided)
    ref_value, ref_norms = penalty.penalty_ref(g.astype(np.float64), 0.5, one_sided)
    np.testing.assert_allclose(norms, ref_norms, **tol)
    np.testing.assert_allclose(value, ref_value, **tol)
    back = gpu_kernels.gradient_penalty_backward_cuda(g, norms, np.asarray(0.7, dtype), 0.5, one_sided)
    assert np.isfinite(back).all()
    np.testing.assert_allclose(back, penalty.penalty_backward_ref(g.astype(np.float64), ref_norms, 0.7, 0.5,
                                                                  one_sided), **tol)
    eps = np.linspace(0, 1, g.shape[0]).astype(dtype)
    fake = np.ascontiguousarray(g[::-1])
    np.testing.assert_allclose(gpu_kernels.gradient_penalty_interpolate_cuda(g, fake, eps),
                               penalty.interpolate_ref(g, fake, eps), **TOL[dtype])


def test_the_emulator_refuses_untyped_scalars(emulated_libraries):
    """A Python float would reach a real kernel as a double whatever the parameter's type."""
    from .cuda_emulator import EmulatedKernel
    kernel = EmulatedKernel(emulated_libraries["grad_penalty"], "penalty_f32")
    with pytest.raises(TypeError, match="sized NumPy scalar"):
        kernel((1,), (256,), (np.zeros(2, np.float32), np.zeros((), np.float32), np.int32(2), 1.0, np.int32(0)))


# --- on a GPU: the same kernels compiled, on CuPy arrays ----------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(g=conv_geometry())
@settings(max_examples=10)
def test_gpu_convolutions_match_the_reference(impl, dtype, g):
    cp = backend.cupy()
    rng, x, w = conv_arrays(g, dtype)
    _, _, wt = conv_arrays(g, dtype, transposed=True)
    geometry = (g["stride"], g["padding"], g["dilation"], g["groups"])
    out_size = conv.output_size(x.shape[2:], g["kernel"], *geometry[:3])
    gy = rng.standard_normal((g["n"], g["o"]) + out_size).astype(dtype)
    # float32 by default: TF32 only when asked for (backend.set_tf32)
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    run = dispatch.implementations("conv2d")[impl].fn
    np.testing.assert_allclose(cp.asnumpy(run(cp.asarray(x), cp.asarray(w), *geometry)),
                               conv.conv2d_ref(x, w, *geometry), **tol)
    run = dispatch.implementations("conv2d_weight_grad")[impl].fn
    np.testing.assert_allclose(cp.asnumpy(run(cp.asarray(x), cp.asarray(gy), w.shape, *geometry)),
                               conv.conv2d_weight_grad_ref(x, gy, w.shape, *geometry), **tol)
    t_size = conv.transposed_output_size(x.shape[2:], g["kernel"], *geometry[:3], (0, 0))
    if min(t_size) >= 1:
        run = dispatch.implementations("conv_transpose2d")[impl].fn
        np.testing.assert_allclose(cp.asnumpy(run(cp.asarray(x), cp.asarray(wt), t_size, *geometry)),
                                   conv.conv_transpose2d_ref(x, wt, t_size, *geometry), **tol)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(rows=st.integers(1, 300), cols=st.integers(1, 700), seed=st.integers(0, 999))
@settings(max_examples=10)
def test_gpu_spectral_norm_matches_the_reference(impl, dtype, rows, cols, seed):
    cp = backend.cupy()
    rng = np.random.default_rng(seed)
    w, u = rng.standard_normal((rows, cols)).astype(dtype), rng.standard_normal(rows).astype(dtype)
    u /= np.linalg.norm(u)
    ours = dispatch.implementations("spectral_norm")[impl].fn(cp.asarray(w), cp.asarray(u), 2, 1e-12)
    ref = spectral.spectral_norm_with(spectral.power_iteration_ref)(w, u, 2, 1e-12)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=1e-4 if dtype == np.float32 else 1e-11, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), one_sided=st.booleans())
@settings(max_examples=10)
def test_gpu_gradient_penalty_matches_the_reference(impl, dtype, data, one_sided):
    cp = backend.cupy()
    g = data.draw(penalty_arrays(dtype))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else TOL[dtype]
    value, norms = dispatch.implementations("gradient_penalty")[impl].fn(cp.asarray(g), 1.0, one_sided)
    ref_value, ref_norms = penalty.penalty_ref(g, 1.0, one_sided)
    np.testing.assert_allclose(cp.asnumpy(value), ref_value, **tol)
    back = dispatch.implementations("gradient_penalty_backward")[impl].fn(cp.asarray(g), norms,
                                                                          cp.asarray(0.7, dtype), 1.0, one_sided)
    np.testing.assert_allclose(cp.asnumpy(back), penalty.penalty_backward_ref(g, ref_norms, 0.7, 1.0, one_sided),
                               **tol)
    eps = np.linspace(0, 1, g.shape[0]).astype(dtype)
    x_hat = dispatch.implementations("gradient_penalty_interpolate")[impl].fn(cp.asarray(g), cp.asarray(g[::-1]),
                                                                              cp.asarray(eps))
    np.testing.assert_allclose(cp.asnumpy(x_hat), penalty.interpolate_ref(g, g[::-1], eps), **tol)


@pytest.mark.gpu
def test_tf32_is_used_only_when_asked_for():
    """Float32 convolutions on the GPU are plain float32 unless set_tf32(True): then their
    products round to TF32's 10-bit mantissa, close to float32 but measurably not equal."""
    cp = backend.cupy()
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((4, 32, 9, 9)).astype(np.float32), rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    expected = conv.conv2d_ref(x.astype(np.float64), w.astype(np.float64), *geometry)
    conv2d = dispatch.implementations("conv2d")["triton"].fn

    def error():
        got = cp.asnumpy(conv2d(cp.asarray(x), cp.asarray(w), *geometry)).astype(np.float64)
        return np.linalg.norm(got - expected) / np.linalg.norm(expected)
    try:
        assert not backend.tf32_enabled()
        assert error() < 1e-5
        backend.set_tf32(True)
        assert 1e-5 < error() < 3e-3
    finally:
        backend.set_tf32(False)


@pytest.mark.gpu
def test_the_gpu_picks_its_fastest_kernels(monkeypatch):
    """Triton for the convolutions, CUDA for spectral norm and the gradient penalty
    (docs/benchmarks.md, GPU kernels)."""
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    for op in ("conv2d", "conv_transpose2d", "conv2d_weight_grad"):
        assert dispatch.resolve(op, "cuda").impl == "triton", op
    for op in ("spectral_norm", "gradient_penalty", "gradient_penalty_backward", "gradient_penalty_interpolate"):
        assert dispatch.resolve(op, "cuda").impl == "cuda", op
    monkeypatch.setenv("GANFORGE_KERNELS", "cuda")
    assert dispatch.resolve("conv_transpose2d", "cuda").impl == "cuda"


# --- packaging -----------------------------------------------------------------------------

def test_a_wheel_carries_the_kernel_sources(tmp_path):
    """The GPU kernels' sources are package data: the wheel holds every one of them."""
    import zipfile
    if not IN_CI:
        pytest.skip("builds a wheel (about 20 s); CI runs it")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(root)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel, = tmp_path.glob("ganforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [s for s in kernels.source_dir().rglob("*") if s.suffix in (".py", ".cu", ".cuh")]
    assert len(sources) >= 7
    for source in sources:
        assert source.relative_to(root).as_posix() in names, source


# --- bench/gpu_check.py: what can be checked without a GPU ---------------------------------

def _gpu_check():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_times_every_transposed_convolution_of_the_benchmark_models():
    from ganforge import nn
    from ganforge.gan import benchmarks
    check = _gpu_check()
    listed = {(name.split()[0], batch, c, o, k, s, p, size) for name, batch, c, o, k, s, p, size in
              check.CONV_TRANSPOSE_LAYERS}
    for model in ("dcgan28", "dcgan64"):
        G, _, _, batch = benchmarks.build(model)
        size = 1
        for layer in G:
            if isinstance(layer, nn.ConvTranspose2d):
                k, s, p = layer.weight.shape[2], layer.stride[0], layer.padding[0]
                assert (model, batch, layer.weight.shape[0], layer.weight.shape[1], k, s, p, size) in listed
                size = (size - 1) * s - 2 * p + k


def test_gpu_check_prints_ratios_against_pytorch_at_the_same_precision():
    check = _gpu_check()
    conv_row = {"kernel": "conv_transpose2d", "shape": "s", "part": "forward",
                "torch_tf32_ms": 2.0, "torch_fp32_ms": 8.0, "torch_tf32_TFLOPs": 15.0, "torch_fp32_TFLOPs": 3.75,
                "baseline": {"triton": "torch_tf32", "triton_fp32": "torch_fp32", "cuda": "torch_fp32",
                             "ref": "torch_fp32"},
                "triton_ms": 1.0, "triton_fp32_ms": 6.0, "cuda_ms": 4.0, "ref_ms": 16.0, "triton_TFLOPs": 30.0,
                "triton_fp32_TFLOPs": 5.0, "cuda_TFLOPs": 7.5, "ref_TFLOPs": 1.9}
    norm_row = {"kernel": "spectral_norm step", "shape": "512x8192", "part": "all", "torch_ms": 0.5,
                "torch_TBps": 0.2, "triton_ms": 0.25, "cuda_ms": 0.5, "ref_ms": 1.0, "triton_TBps": 0.4,
                "cuda_TBps": 0.2, "ref_TBps": 0.1}
    step_row = {"kernel": "train step", "shape": "wgangp28", "part": "critic step", "ganforge_ms": 3.0,
                "torch_ms": 2.0, "tf32_ms": 2.5, "tf32_gpu_ms": 1.25, "tf32_launches": 400}
    text = check.table([conv_row, norm_row, step_row])
    conv_line, norm_line, step_line = text.splitlines()[2:]
    # Triton with TF32 against cuDNN's TF32; Triton in float32, CUDA and ref against cuDNN's float32
    assert "2.0000 tf32 / 8.0000 fp32" in conv_line
    assert "1.0000 (0.50)" in conv_line and "6.0000 (0.75)" in conv_line and "4.0000 (0.50)" in conv_line
    assert "16.0000 (2.00)" in conv_line
    assert "| 1.0000 (0.50) | 6.0000 (0.75) | 4.0000 (0.50) | 16.0000 (2.00) |" in conv_line
    assert "triton 30.00 TFLOPs (PyTorch 15.00)" in conv_line
    assert "| 0.2500 (0.50) |  | 0.5000 (1.00) |" in norm_line and "triton 0.40 TBps (PyTorch 0.20)" in norm_line
    assert "ganforge 3.000 (1.50)" in step_line and "tf32 2.50 (GPU busy 1.25, 400 launches)" in step_line

"""The profiler and the benchmark models it is pointed at."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import cli, nn
from ganforge.gan import benchmarks
from ganforge import functional as F
from ganforge.autograd import Function
from ganforge.nn.module import Module
from ganforge.profiler import Profile


def tiny_step():
    gf.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    x = gf.randn(5, 3, requires_grad=True)

    def step():
        (g,) = gf.grad(F.sum(net(x)), [x], create_graph=True)  # a double backward, as in a penalty
        loss = F.sum(g * g)
        loss.backward()
        return loss.item(), [p.grad.numpy().copy() for p in net.parameters() if p.grad is not None]
    return net, step


def test_profile_times_ops_and_layers_and_changes_nothing():
    originals = {name: (cls.__dict__.get("forward"), cls.__dict__.get("backward"))
                 for name, cls in Function.registry.items()}
    module_call = Module.__dict__["__call__"]
    net, step = tiny_step()
    plain = step()
    net, step = tiny_step()
    with Profile().name_layers(net=net) as prof:
        profiled = step()
    assert plain[0] == profiled[0] and len(plain[1]) == len(profiled[1]) == 3
    for a, b in zip(plain[1], profiled[1]):
        np.testing.assert_array_equal(a, b)
    calls, forward_s, backward_s = prof.ops["MatMul"]
    assert calls >= 2 and forward_s > 0 and backward_s > 0
    assert prof.ops["TanhGrad"][0] >= 1  # created by Tanh's backward under create_graph
    assert prof.layers["net.0(Linear)"][0] > 0 and prof.layers["net.1(Tanh)"][1] > 0
    exclusive = sum(f + b for _, f, b in prof.ops.values())
    assert 0 < exclusive <= prof.wall_s
    report = prof.report()
    assert "MatMul" in report and "net.2(Linear)" in report and "ms/step" in report
    # everything patched is put back, inherited methods included
    assert Module.__dict__["__call__"] is module_call
    for name, cls in Function.registry.items():
        assert (cls.__dict__.get("forward"), cls.__dict__.get("backward")) == originals[name], name


@pytest.mark.parametrize("model", ["dcgan28", "wgangp28", "sngan28"])
def test_benchmark_models_train(model):
    G, D, step, batch = benchmarks.build(model)
    before = [p.numpy().copy() for p in list(G.parameters()) + list(D.parameters())]
    losses = step()
    after = [p.numpy() for p in list(G.parameters()) + list(D.parameters())]
    assert batch == 64 and all(np.isfinite(losses))
    # every weight moves (a critic's last bias cancels out of the Wasserstein loss, so not biases)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after) if a.ndim > 1)
    with pytest.raises(ValueError, match="unknown benchmark model 'dcgan7'"):
        benchmarks.build("dcgan7")


@pytest.mark.parametrize("batch", [64, 256])
def test_mlp_gan_benchmark_runs_the_gan_variants_own_step(batch):
    model, step = benchmarks.mlp_gan(batch)
    G, D = model.nets["G"], model.nets["D"]
    assert G[0].in_features == 2 and D[0].in_features == 2 and G[2].out_features == 256  # z of 2, 256 wide
    before = [p.numpy().copy() for p in list(G.parameters()) + list(D.parameters())]
    losses = step()
    assert set(losses) == {"loss_d", "loss_g"} and all(np.isfinite(list(losses.values())))
    assert all(not np.array_equal(a, p.numpy()) for a, p in zip(before, list(G.parameters()) + list(D.parameters())))


def test_dcgan64_has_the_benchmark_shapes():
    G, D, _, batch = benchmarks.build("dcgan64")
    assert batch == 128
    assert sum(p.numel() for p in G.parameters()) == 3576704  # BENCH_MODELS.md's G, BN included
    assert sum(p.numel() for p in D.parameters()) == 2765568


def test_profile_command(capsys):
    assert cli.main(["profile", "gan", "--steps", "1", "--warmup", "0", "--top", "3", "--batch-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "profile of model gan on ring8 (batch 64)" in out and "Linear" in out


def test_flops_are_counted_from_the_operand_shapes():
    x, w = gf.randn(2, 3, 5, 5, requires_grad=True), gf.randn(4, 3, 3, 3, requires_grad=True)
    with Profile() as prof:
        y = gf.conv2d(x, w)                          # 2 * (2*4*3*3 outputs) * (3*3*3) products
        gf.grad(F.sum(y * y), [x, w])                 # conv_transpose2d + conv2d_weight_grad, the same size
        gf.randn(6, 7) @ gf.randn(7, 8)
        F.linear(gf.randn(2, 6, 7), gf.randn(8, 7), gf.randn(8))  # 2*6 rows of 8 outputs of 7 products
    assert prof.flops["Conv2d"] == 2 * 72 * 27
    assert prof.flops["ConvTranspose2d"] == 2 * 72 * 27 and prof.flops["Conv2dWeightGrad"] == 2 * 72 * 27
    assert prof.flops["MatMul"] == 2 * 6 * 7 * 8 and prof.flops["Linear"] == 2 * 12 * 8 * 7
    assert prof.total_flops() == 3 * 2 * 72 * 27 + 2 * 336 + 2 * 672


def test_the_blas_note_flags_narrow_kernels_on_a_wide_cpu(monkeypatch):
    from ganforge.backends.cpu import runtime as cpu
    monkeypatch.setattr(cpu, "openblas_core", lambda: "Haswell")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: cpu.AVX512_FLAGS | {"avx2"})
    assert "this CPU has AVX-512" in cpu.blas_kernel_note()
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2"})
    assert cpu.blas_kernel_note().startswith("OpenBLAS kernels: Haswell") and "AVX-512" not in cpu.blas_kernel_note()
    monkeypatch.setattr(cpu, "openblas_core", lambda: None)
    assert "unknown" in cpu.blas_kernel_note()


def test_hold_freed_memory_sets_glibcs_thresholds(monkeypatch):
    import ctypes

    from ganforge.backends.cpu import runtime as cpu
    calls = []

    class FakeLibc:
        def __init__(self, *args):
            self.mallopt = self._mallopt

        @staticmethod
        def _mallopt(parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", FakeLibc)
    assert cpu.hold_freed_memory() is True
    assert calls == [(-3, 32 << 20), (-1, 256 << 20), (-4, 0)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_MMAP_MAX

    class NoMallopt:  # a C library without mallopt (not glibc): nothing to do
        def __init__(self, *args):
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoMallopt)
    assert cpu.hold_freed_memory() is False


def _page_faults_with_memory_held(code):
    """The number that `code` prints last, run in a fresh process after hold_freed_memory(),
    with faults() counting its page faults so far."""
    import subprocess
    import sys
    prelude = ("import resource\nfrom ganforge.backends.cpu import runtime as cpu\n"
               "assert cpu.hold_freed_memory()\n"
               "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's allocator")
def test_arrays_over_the_mmap_threshold_reuse_freed_memory_once_it_is_held():
    """A 75 MB array (SRGAN's dense weight gradient) freed and made again lands on the
    same pages: 0 faults for the second one measured, where mmap hands it fresh pages every
    time (294 faults with glibc's mmap threshold held, 805 without, huge pages and 4 KB ones
    that the kernel zeroes)."""
    faults = _page_faults_with_memory_held(
        "import numpy as np\n"
        "a = np.ones(75 << 18, np.float32); del a\n"
        "before = faults(); a = np.ones(75 << 18, np.float32); print(faults() - before)\n")
    assert faults < 100


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's allocator")
def test_training_steps_reuse_freed_memory_once_it_is_held():
    """With the thresholds fixed, a dcgan28 step's arrays land on memory freed by the step
    before, instead of fresh pages for the kernel to fault in and zero. Measured over steps
    11-30: 0.2-35 page faults per step held, 1,400-2,570 with glibc's moving thresholds. The
    first ten steps are left out: the heap still grows while its layout settles (a few
    hundred faults in steps 4-6 either way, which made a shorter warm-up flaky on CI)."""
    faults = _page_faults_with_memory_held(
        "from ganforge.gan import benchmarks\n"
        "step = benchmarks.build('dcgan28')[2]\n"
        "for _ in range(10): step()\n"
        "before = faults()\n"
        "for _ in range(20): step()\n"
        "print((faults() - before) / 20)\n")
    assert faults < 300

"""The kernel registry and the compiled im2col/col2im: parity with the reference,
selection rules, and errors raised from C++."""
import math

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ganforge as gf
from ganforge import dispatch
from ganforge.backends.cpu import conv as cpu_conv
from ganforge.backends.cpu import kernels as cpp
from ganforge.backends.cpu import native
from ganforge.ops import conv

from .op_specs import window_case

needs_cpp = pytest.mark.skipif(not native.available()[0], reason=native.available()[1])


def test_the_compiled_module_is_built_in_ci():
    """CI installs with the C++ build; if it silently failed we would only test `ref`."""
    import os
    if not os.environ.get("CI"):
        pytest.skip("checks CI's build; elsewhere `ganforge info` says whether ganforge._C loaded")
    assert native.available() == (True, ""), native.available()[1]


@needs_cpp
def test_registry_picks_cpp_on_the_cpu_when_it_is_built(monkeypatch):
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    for op in ("im2col", "col2im", "conv2d", "conv_transpose2d", "conv2d_weight_grad", "spectral_norm",
               "gradient_penalty", "batch_norm", "batch_norm_backward", "leaky_relu", "leaky_relu_backward",
               "matmul", "linear", "add", "mul", "pad_reflect", "pad_reflect_backward", "sum_leading", "sum_trailing",
               "resample"):
        assert dispatch.resolve(op, "cpu").impl == "cpp", op
    assert dispatch.resolve("im2col", "cuda").impl == "ref"  # the GPU runs whole convolutions instead


@needs_cpp
def test_unfold_really_calls_the_chosen_kernel(monkeypatch):
    calls = []
    cpp = dispatch.implementations("im2col")["cpp"]
    monkeypatch.setattr(cpp, "fn", lambda *a: calls.append("cpp") or cpu_conv.im2col(*a))
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    gf.unfold(gf.randn(1, 1, 4, 4), 2)
    assert calls == ["cpp"]


@needs_cpp
@pytest.mark.parametrize("impl", ["cpp", "ref"])
def test_a_convolution_runs_the_unfold_kernels_of_its_implementation(impl, monkeypatch):
    """conv ops' `cpp` is im2col/col2im in C++ plus the GEMMs (float64: NumPy's), `ref`
    the same in NumPy."""
    calls = []
    for module, names in ((cpu_conv, ("im2col", "col2im")), (conv, ("im2col_ref", "col2im_ref"))):
        for name in names:
            fn = getattr(module, name)
            label = f"{name.removesuffix('_ref')}_{'ref' if module is conv else 'cpp'}"
            monkeypatch.setattr(module, name, lambda *a, fn=fn, label=label, **k: calls.append(label) or fn(*a, **k))
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    rng = np.random.default_rng(0)
    x, w = gf.tensor(rng.standard_normal((2, 3, 6, 6))), gf.tensor(rng.standard_normal((3, 4, 4, 4)))
    y = gf.conv_transpose2d(x, w, stride=2, padding=1, impl=impl)
    z = gf.conv2d(y, w, stride=2, padding=1, impl=impl)
    assert calls == [f"col2im_{impl}", f"im2col_{impl}"]
    reference = gf.conv2d(gf.conv_transpose2d(x, w, stride=2, padding=1, impl="ref"), w, stride=2, padding=1,
                          impl="ref")
    np.testing.assert_allclose(z.numpy(), reference.numpy(), rtol=1e-12)


def test_environment_variable_and_impl_argument_choose_the_implementation(monkeypatch):
    monkeypatch.setenv("GANFORGE_KERNELS", "ref")
    assert dispatch.resolve("im2col", "cpu").impl == "ref"
    monkeypatch.setenv("GANFORGE_KERNELS", "col2im=ref")
    assert dispatch.resolve("col2im", "cpu").impl == "ref"
    if native.available()[0]:
        assert dispatch.resolve("im2col", "cpu").impl == "cpp"
        assert dispatch.resolve("im2col", "cpu", impl="cpp").impl == "cpp"  # impl= wins over the variable


def test_unknown_or_misplaced_implementations_are_errors(monkeypatch):
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    with pytest.raises(ValueError, match="no implementation 'fortran'.*choose from cpp, ref"):
        dispatch.resolve("im2col", "cpu", impl="fortran")
    with pytest.raises(ValueError, match="does not run on 'cuda'"):
        dispatch.resolve("im2col", "cuda", impl="cpp")
    with pytest.raises(KeyError, match="no kernel named 'conv9d'"):
        dispatch.resolve("conv9d", "cpu")


def test_an_unavailable_fast_kernel_warns_once_and_falls_back(monkeypatch):
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    dispatch.register("demo_op", "ref", lambda: "ref", ("cpu",))
    dispatch.register("demo_op", "cpp", lambda: "cpp", ("cpu",), lambda: (False, "not built here"))
    try:
        with pytest.warns(RuntimeWarning, match="demo_op/cpp is unavailable \\(not built here\\)"):
            assert dispatch.call("demo_op") == "ref"
        with pytest.raises(RuntimeError, match="asked for but is unavailable: not built here"):
            dispatch.call("demo_op", impl="cpp")
    finally:
        dispatch._registry.pop("demo_op")


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_cpp_im2col_and_col2im_match_the_reference(dtype, data):
    shape, geometry = data.draw(window_case())
    # Larger channel counts and batches than the gradient tests, and non-contiguous inputs.
    shape = (shape[0] + data.draw(st.integers(0, 3)), shape[1] * 2) + shape[2:]
    g = tuple(geometry[k] for k in ("kernel_size", "stride", "padding", "dilation"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(shape).astype(dtype)
    if data.draw(st.booleans()):
        x = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)  # F-ordered spatial axes
    folded = data.draw(st.booleans(), label="batch_in_columns")
    cols = cpu_conv.im2col(x, *g, folded)
    np.testing.assert_array_equal(cols, conv.im2col_ref(x, *g, folded))
    assert cols.dtype == dtype
    if folded:  # the same columns as the per-sample layout, the samples side by side
        per_sample = conv.im2col_ref(x, *g)
        np.testing.assert_array_equal(cols, per_sample.transpose(1, 0, 2).reshape(cols.shape))
    back_cpp = cpu_conv.col2im(cols, shape[1], shape[2:], *g, folded)
    back_ref = conv.col2im_ref(cols, shape[1], shape[2:], *g, folded)
    np.testing.assert_allclose(back_cpp, back_ref, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)
    if folded:
        np.testing.assert_allclose(back_ref, conv.col2im_ref(per_sample, shape[1], shape[2:], *g), rtol=1e-6,
                                   atol=1e-6)


@needs_cpp
def test_cpp_checks_shapes_and_raises_python_errors():
    c = native.module()
    with pytest.raises(ValueError, match="x must be 4-D, got shape \\(2, 3, 4\\)"):
        c.im2col(np.zeros((2, 3, 4)), (1, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        c.im2col(np.zeros((2, 3, 4, 4))[..., ::2], (1, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="x must be float32 or float64, got int64"):
        c.im2col(np.zeros((1, 1, 2, 2), dtype=np.int64), (1, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="larger than the padded input"):
        c.im2col(np.zeros((1, 1, 4, 4)), (7, 1), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="stride must be positive"):
        c.im2col(np.zeros((1, 1, 4, 4)), (1, 1), (0, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="cols has shape \\(1, 4, 9\\) but this geometry needs \\(1, 8, 16\\)"):
        c.col2im(np.zeros((1, 4, 9)), 1, 2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="cols has shape \\(8, 16\\) but this geometry needs \\(8, 48\\)"):
        c.col2im(np.zeros((8, 16)), 3, 2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), True)
    with pytest.raises(ValueError, match="cols must be 2-D"):
        c.col2im(np.zeros((1, 8, 16)), 1, 2, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), True)


def test_unfold_and_fold_check_their_arguments():
    with pytest.raises(ValueError, match="unfold expects an \\(N, C, H, W\\) input, got shape \\(3, 4\\)"):
        gf.unfold(gf.randn(3, 4), 2)
    with pytest.raises(ValueError, match="kernel height 5 .* larger than the padded input height 4"):
        gf.unfold(gf.randn(1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match="fold expects \\(N, C\\*2\\*2, 9\\) columns"):
        gf.fold(gf.randn(1, 5, 9), (4, 4), 2)


def test_unfold_is_the_adjoint_of_fold():
    """<unfold(x), c> = <x, fold(c)>: the property that makes each the other's gradient."""
    rng = np.random.default_rng(0)
    x = gf.tensor(rng.standard_normal((2, 3, 7, 5)))
    cols = gf.unfold(x, (3, 2), stride=2, padding=1, dilation=(1, 2))
    c = gf.tensor(rng.standard_normal(cols.shape))
    back = gf.fold(c, (7, 5), (3, 2), stride=2, padding=1, dilation=(1, 2))
    assert float((cols * c).sum().item()) == pytest.approx(float((x * back).sum().item()), rel=1e-12)


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), iterations=st.integers(1, 3), seed=st.integers(0, 1000))
def test_cpp_power_iteration_matches_the_reference(dtype, rows, cols, iterations, seed):
    from ganforge.ops import spectral as sn
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(dtype)
    u = rng.standard_normal(rows).astype(dtype)
    u /= np.linalg.norm(u)
    for ours, ref in zip(cpp.power_iteration(w, u, iterations, 1e-12), sn.power_iteration_ref(w, u, iterations, 1e-12)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, ref, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-6)


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(batch=st.integers(1, 8), features=st.integers(1, 500), seed=st.integers(0, 1000))
def test_cpp_gradient_penalty_matches_the_reference(dtype, batch, features, seed):
    from ganforge.ops import penalty
    g = np.random.default_rng(seed).standard_normal((batch, features)).astype(dtype)
    for one_sided in (False, True):
        ours = cpp.gradient_penalty(g, 1.0, one_sided)
        ref = penalty.penalty_ref(g.astype(np.float64), 1.0, one_sided)
        for a, b in zip(ours, ref):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-13)


@needs_cpp
def test_gan_kernels_check_their_arguments():
    c = native.module()
    with pytest.raises(ValueError, match="u has 3 elements but weight_matrix has shape \\(4, 2\\)"):
        c.power_iteration(np.zeros((4, 2)), np.zeros(3), 1, 1e-12)
    with pytest.raises(ValueError, match="weight_matrix and u must have the same dtype"):
        c.power_iteration(np.zeros((4, 2)), np.zeros(4, dtype=np.float32), 1, 1e-12)
    with pytest.raises(ValueError, match="grad must be 2-D"):
        c.per_sample_norms(np.zeros(3))


@needs_cpp
def test_multithreaded_kernels_match_the_reference():
    """CI runs with one kernel thread (the default); this runs the threaded path too."""
    import subprocess
    import sys
    code = (
        "import numpy as np; from ganforge.backends.cpu import conv as cpu_conv, native; from ganforge.ops import conv\n"
        "assert native.module().num_threads() == 3\n"
        "x = np.random.default_rng(0).standard_normal((5, 7, 33, 30))\n"
        "g = ((3, 4), (2, 1), (1, 2), (1, 2))\n"
        "cols = cpu_conv.im2col(x, *g)\n"
        "assert np.array_equal(cols, conv.im2col_ref(x, *g))\n"
        "assert np.allclose(cpu_conv.col2im(cols, 7, (33, 30), *g), conv.col2im_ref(cols, 7, (33, 30), *g))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "GANFORGE_NUM_THREADS": "3"})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", [
    dict(x=(3, 4, 7, 6), w=(6, 4, 3, 3), stride=1, padding=1, dilation=1, groups=1),
    dict(x=(2, 6, 9, 8), w=(4, 3, 4, 2), stride=2, padding=(1, 0), dilation=1, groups=2),
    dict(x=(2, 4, 8, 8), w=(6, 2, 3, 3), stride=(1, 2), padding=2, dilation=2, groups=2),
])
@needs_cpp
def test_per_sample_and_batch_in_columns_gemms_agree(case, monkeypatch):
    """The CPU convolutions pick a GEMM layout by output size; both must give `ref`'s numbers."""
    rng = np.random.default_rng(0)
    x = gf.tensor(rng.standard_normal(case["x"]))
    w = gf.tensor(rng.standard_normal(case["w"]))
    options = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    results = []
    for threshold in (0, 10**9):  # never, always batch-in-columns
        monkeypatch.setattr(cpu_conv, "BATCH_IN_COLUMNS_BELOW", threshold)
        results.append(_three_convolutions(x, w, options, "cpp"))
    for per_sample, batched, ref in zip(*results, _three_convolutions(x, w, options, "ref")):
        np.testing.assert_allclose(per_sample, batched, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(per_sample, ref, rtol=1e-12, atol=1e-12)


def _three_convolutions(x, w, options, impl):
    y = gf.conv2d(x, w, **options, impl=impl)
    back = gf.conv_transpose2d(y, w, **options, impl=impl)
    gw = gf.conv2d_weight_grad(x, y, w.shape, **options, impl=impl)
    return [t.numpy() for t in (y, back, gw)]


@needs_cpp
@pytest.mark.parametrize("x_shape, w_shape", [((3, 4, 5, 5), (6, 4, 5, 5)), ((2, 3, 4, 6), (5, 3, 4, 6))])
def test_whole_image_windows_take_the_matrix_product_shortcut(x_shape, w_shape, monkeypatch):
    """A kernel as large as the unpadded image (DCGAN's first and last layers) is a plain
    matrix product; the CPU's shortcut must agree with its general im2col path and with
    `ref`, in all three ops."""
    rng = np.random.default_rng(1)
    x, w = gf.tensor(rng.standard_normal(x_shape)), gf.tensor(rng.standard_normal(w_shape))
    results = []
    for shortcut in (True, False):
        if not shortcut:
            monkeypatch.setattr(cpu_conv, "covers_whole_image", lambda *args: False)
        results.append(_three_convolutions(x, w, {}, "cpp"))
        assert results[-1][0].shape[2:] == (1, 1)
    for fast, general, ref in zip(*results, _three_convolutions(x, w, {}, "ref")):
        np.testing.assert_allclose(fast, general, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["ref", pytest.param("cpp", marks=needs_cpp)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transposed, x_shape, w_shape, stride", [
    (False, (2, 3, 5, 5), (4, 3, 5, 5), 1),     # the whole-image matrix product
    (False, (16, 32, 7, 7), (32, 32, 3, 3), 2),  # a gathered GEMM, batch innermost
    (False, (2, 3, 9, 9), (4, 3, 3, 3), 1),     # unfolded
    (True, (2, 4, 1, 1), (4, 3, 4, 4), 1),      # the 1x1-input matrix product
    (True, (16, 32, 7, 7), (32, 32, 4, 4), 2),
])
def test_the_bias_is_added_into_the_convolutions_own_output(impl, dtype, transposed, x_shape, w_shape, stride):
    """The convolution op adds its bias in place (ops/conv.py, plus_bias): into an array
    that every kernel path makes new, never into one of the op's inputs."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in (x_shape, w_shape, (w_shape[transposed],))]
    x, w, b = (gf.tensor(a.copy()) for a in arrays)
    op = gf.conv_transpose2d if transposed else gf.conv2d
    with_bias, without = op(x, w, b, stride=stride, impl=impl), op(x, w, stride=stride, impl=impl)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(with_bias.numpy(), without.numpy() + arrays[2].reshape(1, -1, 1, 1),
                               rtol=tolerance, atol=tolerance)
    for tensor, original in zip((x, w, b), arrays):
        np.testing.assert_array_equal(tensor.numpy(), original)


# --- ganforge's own float32 GEMM (csrc/gemm.cpp, backends/cpu/gemm.py) ----------------------------

needs_gemm = pytest.mark.skipif(not (native.available()[0] and native.module().gemm_supported()),
                                reason="ganforge's GEMM kernel needs the compiled module and an AVX-512 CPU")


def _strided(rng, shape, transposed):
    """A float32 array of `shape`, stored transposed (column-major in its last two axes) or
    as every other element of a wider one, so that the GEMM sees several stride patterns."""
    if transposed == "columns":
        return np.swapaxes(rng.standard_normal(shape[:-2] + shape[::-1][:2], dtype=np.float32), -1, -2)
    if transposed == "gapped":
        return rng.standard_normal(shape[:-1] + (2 * shape[-1],), dtype=np.float32)[..., ::2]
    return rng.standard_normal(shape, dtype=np.float32)


def _assert_close_to_exact(got, a, b, accumulate_onto=None):
    exact = np.matmul(a.astype(np.float64), b.astype(np.float64))
    if accumulate_onto is not None:
        exact = exact + accumulate_onto
    # float32 products summed over k: error bound proportional to sum |a||b|
    scale = np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64)) + 1.0
    assert np.all(np.abs(got - exact) <= 1e-5 * scale * max(1, np.sqrt(a.shape[-1]) / 8)), \
        np.max(np.abs(got - exact) / scale)


@needs_gemm
@settings(max_examples=40)
@given(m=st.integers(1, 300), n=st.integers(1, 140), k=st.integers(1, 600),
       layout=st.tuples(*[st.sampled_from(["rows", "columns", "gapped"])] * 3), seed=st.integers(0, 2**31))
def test_gemm_matches_numpy_for_any_sizes_and_strides(m, n, k, layout, seed):
    """Sizes that leave partial register tiles and cross the packed-block sizes (MR 8, NR 32,
    KC 256, MC 128), operands in three stride patterns, and out in any of them too."""
    rng = np.random.default_rng(seed)
    a, b = _strided(rng, (1, m, k), layout[0]), _strided(rng, (1, k, n), layout[1])
    out = _strided(rng, (1, m, n), layout[2])
    native.module().gemm(a, b, out)
    _assert_close_to_exact(out, a, b)
    before = out.astype(np.float64)
    native.module().gemm(a, b, out, accumulate=True)
    _assert_close_to_exact(out, a, b, accumulate_onto=before)


@needs_gemm
@pytest.mark.parametrize("m", [8, 37, 128])
def test_gemm_reads_b_in_place_or_packed_to_the_same_bits(m):
    """A row-major B under a short A is read where it lies, unless its rows lie a multiple
    of 4 KB apart (then packed): the same values at both strides give the same bits."""
    rng = np.random.default_rng(m)
    a = rng.standard_normal((1, m, 300)).astype(np.float32)
    aliased = rng.standard_normal((1, 300, 1024)).astype(np.float32)  # rows 4 KB apart
    roomy = np.zeros((1, 300, 1040), dtype=np.float32)[:, :, :1024]
    roomy[...] = aliased
    out_aliased, out_roomy = (np.empty((1, m, 1024), dtype=np.float32) for _ in range(2))
    native.module().gemm(a, aliased, out_aliased)
    native.module().gemm(a, roomy, out_roomy)
    assert np.array_equal(out_aliased, out_roomy)
    _assert_close_to_exact(out_aliased, a, aliased)


def _run_on_1_2_and_3_gemm_threads(code):
    """Runs code in a fresh process for each GEMM thread count (read once, at start-up)."""
    import os
    import subprocess
    import sys
    for threads in ("1", "2", "3"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GANFORGE_GEMM_THREADS": threads})
        assert done.returncode == 0, (threads, done.stderr)


@needs_gemm
@pytest.mark.parametrize("m, n, k", [(64, 12544, 100), (64, 100, 12544), (2048, 40, 300), (40, 3100, 70),
                                     (40, 1060, 70), (130, 3300, 520), (3, 5, 70000), (1030, 2100, 16),
                                     (300, 140, 48)])
def test_gemm_every_thread_split_matches_numpy(m, n, k):
    """Shapes that take each way of sharing the work between threads (C's columns, C's rows,
    the depth k), including more columns than one packed block (NC 1024: blocks as even as
    whole 32-column panels allow, the last one shorter), B read in place, and depths of 48
    or less, whose tiles go along C's rows (part tiles at the ends of both)."""
    code = (
        "import numpy as np; from ganforge.backends.cpu import native\n"
        f"m, n, k = {m}, {n}, {k}\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.standard_normal((1, m, k), dtype=np.float32); b = rng.standard_normal((1, k, n), dtype=np.float32)\n"
        "for a_, b_ in ((a, b), (np.swapaxes(np.swapaxes(a, 1, 2).copy(), 1, 2), np.swapaxes(np.swapaxes(b, 1, 2).copy(), 1, 2))):\n"
        "    out = np.empty((1, m, n), np.float32); native.module().gemm(a_, b_, out)\n"
        "    exact = a.astype(np.float64) @ b.astype(np.float64)\n"
        "    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)\n"
        "    assert np.all(np.abs(out - exact) <= 1e-5 * scale * max(1, np.sqrt(k) / 8)), np.max(np.abs(out - exact) / scale)\n")
    _run_on_1_2_and_3_gemm_threads(code)


_POOL_CHECK = (
    "import numpy as np; from ganforge.backends.cpu import native\n"
    "def check(seed, m=300, n=200, k=500):\n"
    "    rng = np.random.default_rng(seed)\n"
    "    a = rng.standard_normal((1, m, k), dtype=np.float32); b = rng.standard_normal((1, k, n), dtype=np.float32)\n"
    "    out = np.empty((1, m, n), np.float32); native.module().gemm(a, b, out)\n"
    "    assert np.allclose(out, a.astype(np.float64) @ b, atol=1e-3), seed\n")


@needs_gemm
def test_parallel_kernels_called_from_several_python_threads_at_once():
    """The worker pool runs one call at a time; the others (the GIL is released in the
    kernels) must get threads of their own and still be right. Also with 3 GEMM threads,
    so that calls of different widths share the pool."""
    code = _POOL_CHECK + (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    list(pool.map(check, range(40)))\n")
    _run_on_1_2_and_3_gemm_threads(code)


@needs_gemm
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_parallel_kernels_work_in_a_forked_child():
    """A child forked after the pool started (a data loader's worker, say) has none of its
    threads, and must start its own instead of waiting on them forever."""
    code = _POOL_CHECK + (
        "import os\n"
        "check(0)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    try:\n"
        "        check(1); os._exit(0)\n"
        "    except BaseException:\n"
        "        os._exit(1)\n"
        "_, status = os.waitpid(child, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0\n"
        "check(2)\n")
    _run_on_1_2_and_3_gemm_threads(code)


@needs_gemm
def test_native_matmul_broadcasts_like_numpy_and_sums_over_a_batch():
    from ganforge.backends.cpu.gemm import NativeGemm
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2, 6, 9), dtype=np.float32)
    x = rng.standard_normal((5, 2, 9, 7), dtype=np.float32)
    np.testing.assert_allclose(NativeGemm.matmul(w, x), np.matmul(w, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(NativeGemm.matmul(w[0], x[:, 1]), np.matmul(w[0], x[:, 1]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(NativeGemm.matmul(w[0], x[0, 0]), w[0] @ x[0, 0], rtol=1e-5, atol=1e-5)
    a, b = rng.standard_normal((4, 6, 9), dtype=np.float32), rng.standard_normal((4, 9, 5), dtype=np.float32)
    np.testing.assert_allclose(NativeGemm.sum_of_products(a, b), np.matmul(a, b).sum(0), rtol=1e-5, atol=1e-5)
    # float64 (the gradchecks' dtype) goes to NumPy, exactly
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    np.testing.assert_array_equal(NativeGemm.matmul(a64, b64), np.matmul(a64, b64))


@needs_gemm
def test_a_product_thin_only_one_way_runs_transposed_on_ganforge_gemm(monkeypatch):
    # 512 x 81 times 81 x 16 (a one-output 4x4 layer's weight gradient) is too narrow for
    # the GEMM's 32-column tile, but its transpose is not; on NumPy it would wake BLAS threads.
    from ganforge.backends.cpu import gemm
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((512, 81), dtype=np.float32), rng.standard_normal((81, 16), dtype=np.float32)
    batched = rng.standard_normal((3, 512, 81), dtype=np.float32)
    expected, expected_batched = a @ b, np.matmul(batched, b)
    monkeypatch.setattr(gemm, "np", SimpleNamespace(**{**vars(np), "matmul": None}))  # any NumPy product fails
    np.testing.assert_allclose(gemm.NativeGemm.matmul(a, b), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gemm.NativeGemm.matmul(batched, b), expected_batched, rtol=1e-4, atol=1e-4)


@needs_gemm
def test_gemm_rejects_bad_operands_with_the_shapes_in_the_message():
    gemm = native.module().gemm
    a, b, out = (np.zeros(s, np.float32) for s in ((1, 4, 3), (1, 3, 5), (1, 4, 5)))
    with pytest.raises(ValueError, match=r"\(1, 4, 3\) @ \(1, 4, 5\) -> \(1, 4, 5\)"):
        gemm(a, np.zeros((1, 4, 5), np.float32), out)
    with pytest.raises(ValueError, match="b must be float32, got float64"):
        gemm(a, b.astype(np.float64), out)
    with pytest.raises(ValueError, match="out must be 3-D, got shape"):
        gemm(a, b, out[0])
    read_only = out.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        gemm(a, b, read_only)


def count_kernel_calls(monkeypatch):
    """The list that each call of the compiled GEMMs, convolution kernels, transposes and
    binary_rows (add, mul) is noted in, by name, while the CPU backend's module is wrapped
    to note them."""
    import ganforge.backends.cpu.gemm as gemm_module
    calls = []
    compiled = native.module()
    counted_names = {"gemm", "gemm_gathered", "conv_direct", "conv_direct_weight_grad", "transpose", "binary_rows"}

    class Counting:
        def __getattr__(self, name):
            kernel = getattr(compiled, name)
            if name not in counted_names:
                return kernel

            def counted(*args, **kwargs):
                calls.append(name)
                return kernel(*args, **kwargs)
            return counted

    monkeypatch.setattr(gemm_module.native, "module", lambda: Counting())  # the same module object as gathered.py's
    return calls


@needs_gemm
def test_float32_cpp_convolutions_run_on_the_native_kernels(monkeypatch):
    """The registry's `cpp` convolutions run in float32 on ganforge's own kernels, with no
    unfold: a convolution or transposed convolution with 8 or more channels on both sides
    and a batch that fills 32-sample tiles pixel by pixel (conv_direct, the batch moved
    innermost and back), and so the weight gradient with 8 or more inputs, outputs that
    fill 32-channel tiles and a batch of 16 or more; the others as one gathered
    GEMM, except where the GEMM has fewer rows than a register tile (a transposed
    convolution to one channel with a 2x2 kernel), which unfolds; all agree with `ref`
    (NumPy's matmul over the NumPy unfold)."""
    calls = count_kernel_calls(monkeypatch)
    rng = np.random.default_rng(0)
    direct = ["transpose", "conv_direct", "transpose"]
    direct_weight_grad = ["transpose", "transpose", "conv_direct_weight_grad", "transpose"]
    for batch, channels, kernel in ((32, 32, 4), (40, 32, 4), (3, 1, 4), (3, 1, 2)):
        # 32 channels: pixel by pixel, with a batch that fills 32-sample tiles (40 leaves
        # 24 of 64 lanes idle: gathered); one image channel: the conv2d's depth and the weight gradient's width
        # are 16 taps, gathered, and so is the transposed convolution with 16 rows (one
        # channel's taps), but not with 4
        x = rng.standard_normal((batch, 32, 9, 9), dtype=np.float32)
        w = rng.standard_normal((32, channels, kernel, kernel), dtype=np.float32)
        gy = rng.standard_normal((batch, channels, 18, 18), dtype=np.float32)
        padding = (kernel - 2) // 2
        # a batch of 16 or more on a map under 16 wide goes batch innermost for the GEMM too
        gathered = ["transpose", "gemm_gathered", "transpose"] if batch >= 16 else ["gemm_gathered"]
        for op, args, expected in (
                ("conv_transpose2d", (x, w, (18, 18), (2, 2), (padding,) * 2, (1, 1), 1),
                 direct if batch == 32 else gathered if kernel == 4 else None),
                ("conv2d", (gy, w, (2, 2), (padding,) * 2, (1, 1), 1), direct if batch == 32 else gathered),
                ("conv2d_weight_grad", (gy, x, w.shape, (2, 2), (padding,) * 2, (1, 1), 1),
                 direct_weight_grad if channels == 32 else ["gemm_gathered"])):
            calls.clear()
            got = dispatch.call(op, *args, device="cpu", impl="cpp")
            if expected is None:
                assert "gemm_gathered" not in calls and "conv_direct" not in calls, f"{op} to one channel: {calls}"
            else:
                assert calls == expected, f"{op} called {calls}, not {expected}"
            np.testing.assert_allclose(got, dispatch.call(op, *args, device="cpu", impl="ref"), rtol=1e-4, atol=1e-3)
    # A batch of 16 on a 9-pixel-wide image: moved batch innermost for the gathered GEMM
    # (a transpose there and back) with 32 channels' 512 taps, left in NCHW with one
    # channel's 16
    # (a weight gradient with 16 outputs, too few for conv_direct_weight_grad)
    for channels, moved in ((32, True), (1, False)):
        x = rng.standard_normal((16, channels, 18, 18), dtype=np.float32)
        gy = rng.standard_normal((16, 16, 9, 9), dtype=np.float32)
        calls.clear()
        got = dispatch.call("conv2d_weight_grad", x, gy, (16, channels, 4, 4), (2, 2), (1, 1), (1, 1), 1,
                            device="cpu", impl="cpp")
        assert ("transpose" in calls) == moved and calls.count("gemm_gathered") == 1, (channels, calls)
        np.testing.assert_allclose(got, dispatch.call("conv2d_weight_grad", x, gy, (16, channels, 4, 4), (2, 2),
                                                      (1, 1), (1, 1), 1, device="cpu", impl="ref"),
                                   rtol=1e-4, atol=1e-3)


@st.composite
def _float32_conv_case(draw, channels=(1, 5), batch=(1, 4)):
    """A convolution of any geometry, its transposed twin's output size and an output
    gradient; sizes up to where full 8 x 32 register tiles and several packed blocks occur.
    `channels` and `batch` bound the channels per group and the batch."""
    groups = draw(st.integers(1, 3))
    c_per_group, o_per_group = draw(st.integers(*channels)), draw(st.integers(*channels))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    n = draw(st.integers(*batch))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 12))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 12))
    output_padding = tuple(draw(st.integers(0, s - 1)) for s in stride)
    return dict(x=(n, groups * c_per_group, h, w), w=(groups * o_per_group, c_per_group, kh, kw), stride=stride,
                padding=padding, dilation=dilation, groups=groups, output_padding=output_padding,
                seed=draw(st.integers(0, 2**31)))


@needs_gemm
@settings(max_examples=40)
@given(case=_float32_conv_case(), batch_innermost=st.booleans())
def test_gathered_convolutions_match_the_reference(case, batch_innermost):
    """conv2d, conv_transpose2d and conv2d_weight_grad as one gathered GEMM each (the float32
    `cpp` path) against `ref`'s unfold and NumPy matmul, over strides, padding, dilation,
    groups and output_padding, in float32 against float64, in both batch layouts."""
    from unittest import mock

    from ganforge.backends.cpu import gathered as conv_gathered
    rng = np.random.default_rng(case["seed"])
    if batch_innermost:  # a batch of 16 or more, any image width and taps: the (C, H, W, N) layout
        case = {**case, "x": (16 + case["x"][0],) + case["x"][1:]}
        layout = mock.patch.multiple(conv_gathered, BATCH_INNERMOST_BELOW=10**9, BATCH_INNERMOST_TAPS=0)
    else:
        layout = mock.patch.object(conv_gathered, "BATCH_INNERMOST_BELOW", 0)
    with layout, mock.patch.object(conv_gathered, "DIRECT", False):
        _check_gathered_convolutions(case, rng)


@needs_gemm
@settings(max_examples=25, deadline=None)
@given(width=st.integers(29, 70), kernel=st.integers(1, 4), padding=st.integers(0, 2), stride_y=st.integers(1, 2),
       seed=st.integers(0, 2**31))
def test_stride_two_convolutions_on_wide_rows_match_the_reference(width, kernel, padding, stride_y, seed):
    """A stride-2 convolution of an image 29-70 pixels wide (NCHW) reads runs of 16 inputs
    two apart along an output row: packed as two loads and a pick of the even lanes, with
    the lanes on the padding (both ends of a row) left zero."""
    from unittest import mock

    from ganforge.backends.cpu import gathered as conv_gathered
    assume(width + 2 * padding >= kernel)
    case = dict(x=(2, 3, 5 + kernel, width), w=(9, 3, kernel, kernel), stride=(stride_y, 2), padding=(padding, padding),
                dilation=(1, 1), groups=1, output_padding=(0, 1), seed=seed)
    with mock.patch.object(conv_gathered, "BATCH_INNERMOST_BELOW", 0), mock.patch.object(conv_gathered, "DIRECT", False):
        _check_gathered_convolutions(case, np.random.default_rng(seed))


@needs_gemm
@settings(max_examples=30, deadline=None)
@given(case=_float32_conv_case(channels=(8, 40), batch=(1, 70)))
def test_direct_convolutions_match_the_reference(case):
    """conv2d and conv_transpose2d pixel by pixel (conv_direct, with 8 or more channels per
    group on both sides), and without groups the weight gradient too where it has 32 or
    more outputs (conv_direct_weight_grad), against `ref`, over the same geometries,
    groups, channels that leave the 8-row register tile (16 rows for a batch of 16 or
    fewer) part empty, and batches (outputs, in the weight gradient) that leave its 32
    columns (16) part empty (masked) or are shorter than one vector."""
    from unittest import mock

    from ganforge.backends.cpu import gathered as conv_gathered
    # every batch and number of outputs, not only the whole tiles that the registry sends there
    with mock.patch.object(conv_gathered, "_fills_tiles", lambda count, tile=32: True), \
            mock.patch.object(conv_gathered, "NARROW_UP_TO_PIXELS", 10**9), \
            mock.patch.object(conv_gathered, "NARROW_TRANSPOSED_UP_TO_PIXELS", 10**9), \
            mock.patch.object(conv_gathered, "DIRECT_WEIGHT_GRAD_FROM_BATCH", 1):
        assert conv_gathered._direct(case["x"][0], case["x"][1] // case["groups"], case["w"][0] // case["groups"],
                                     transposed=False, pixels=case["x"][2] * case["x"][3])
        _check_gathered_convolutions(case, np.random.default_rng(case["seed"]))


def _check_gathered_convolutions(case, rng):
    from ganforge.backends.cpu import gathered as conv_gathered
    x = rng.standard_normal(case["x"], dtype=np.float32)
    w = rng.standard_normal(case["w"], dtype=np.float32)
    geometry = (case["stride"], case["padding"], case["dilation"], case["groups"])
    exact = [a.astype(np.float64) for a in (x, w)]

    def check(got, op, *args):
        want = dispatch.call(op, *args, *geometry, device="cpu", impl="ref")
        scale = dispatch.call(op, *[np.abs(a) if isinstance(a, np.ndarray) else a for a in args], *geometry,
                              device="cpu", impl="ref")
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.all(np.abs(got - want) <= 1e-5 * (scale + 1)), np.max(np.abs(got - want))

    y = conv_gathered.conv2d(x, w, *geometry)
    check(y, "conv2d", *exact)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    check(conv_gathered.conv2d_weight_grad(x, gy, w.shape, *geometry), "conv2d_weight_grad", exact[0],
          gy.astype(np.float64), w.shape)
    # the transposed convolution of gy, with output_padding extending its output
    out = conv.transposed_output_size(gy.shape[2:], w.shape[2:], case["stride"], case["padding"], case["dilation"],
                                      case["output_padding"])
    assume(min(out) >= 1)  # padding may crop it away entirely (the op refuses that, with a message)
    check(conv_gathered.conv_transpose2d(gy, w, out, *geometry), "conv_transpose2d", gy.astype(np.float64),
          exact[1], out)


@needs_gemm
def test_gathered_convolutions_split_between_threads_like_one_thread():
    """Layer sizes of the benchmark models, where the GEMMs split between threads by
    columns, by rows (the transposed convolution's output: whole output channels per
    thread, or whole samples in NCHW) and by depth, and the pixel-by-pixel kernel by
    output pixels (with a batch of 16, in runs of pixels, a thread's first and last pixel
    shared with its neighbours); 1, 2 and 3 threads must agree with `ref` (races would not)."""
    code = (
        "import numpy as np; from ganforge import dispatch; from ganforge.backends.cpu import gathered as G\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((32, 96, 7, 7), dtype=np.float32)\n"
        "w = rng.standard_normal((96, 40, 4, 4), dtype=np.float32)\n"
        "gy = rng.standard_normal((32, 40, 14, 14), dtype=np.float32)\n"
        "g = ((2, 2), (1, 1), (1, 1), 1)\n"
        "for G.DIRECT in (True, False):\n"
        "  for got, op, args in ((G.conv_transpose2d(x, w, (14, 14), *g), 'conv_transpose2d', (x, w, (14, 14))),\n"
        "                      (G.conv2d(gy, w, *g), 'conv2d', (gy, w)),\n"
        "                      (G.conv2d_weight_grad(gy, x, w.shape, *g), 'conv2d_weight_grad', (gy, x, w.shape))):\n"
        "    want = dispatch.call(op, *[a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in args], *g,\n"
        "                         device='cpu', impl='ref')\n"
        "    assert np.allclose(got, want, rtol=1e-4, atol=1e-3), (op, np.abs(got - want).max())\n"
        # a batch of 16: runs of 16 pixels, threads parting mid-pixel (63 pixels x 3 blocks of 16 outputs)
        "xn = rng.standard_normal((16, 48, 7, 9), dtype=np.float32)\n"
        "wn = rng.standard_normal((40, 48, 3, 3), dtype=np.float32)\n"
        "gn = ((1, 1), (1, 1), (1, 1), 1)\n"
        "want = dispatch.call('conv2d', xn.astype(np.float64), wn.astype(np.float64), *gn, device='cpu', impl='ref')\n"
        "assert np.allclose(G.conv2d(xn, wn, *gn), want, rtol=1e-4, atol=1e-3)\n"
        "image = rng.standard_normal((16, 1, 28, 28), dtype=np.float32)\n"  # few rows and columns: a depth split
        "gy = rng.standard_normal((16, 8, 14, 14), dtype=np.float32)\n"
        "want = dispatch.call('conv2d_weight_grad', image.astype(np.float64), gy.astype(np.float64), (8, 1, 4, 4), *g,\n"
        "                     device='cpu', impl='ref')\n"
        "assert np.allclose(G.conv2d_weight_grad(image, gy, (8, 1, 4, 4), *g), want, rtol=1e-4, atol=1e-3)\n"
        # to one channel in NCHW: 16 rows, one row group, so the columns split by whole samples
        "x = rng.standard_normal((15, 256, 14, 14), dtype=np.float32)\n"
        "w = rng.standard_normal((256, 1, 4, 4), dtype=np.float32)\n"
        "want = dispatch.call('conv_transpose2d', x.astype(np.float64), w.astype(np.float64), (28, 28), *g,\n"
        "                     device='cpu', impl='ref')\n"
        "assert np.allclose(G.conv_transpose2d(x, w, (28, 28), *g), want, rtol=1e-4, atol=1e-3)\n")
    _run_on_1_2_and_3_gemm_threads(code)


def _materialize(data, rows, cols, image):
    """The matrix a gathered operand stands for, built with NumPy: pixel (y, x) of the
    image at base_row + base_column + y * width + x, zero off the image."""
    y, x = rows[:, 1:2] + cols[:, 1], rows[:, 2:3] + cols[:, 2]
    inside = (y >= 0) & (y < image[0]) & (x >= 0) & (x < image[1])
    place = np.where(inside, rows[:, :1] + cols[:, :1].T + y * image[1] + x, 0)
    return np.where(inside, data[place], 0).astype(np.float64)


@needs_gemm
@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 70), k=st.integers(1, 40), contiguous_rows=st.booleans(),
       consecutive_columns=st.booleans(), accumulate=st.booleans(), seed=st.integers(0, 2**31))
def test_gemm_gathered_matches_the_matrices_its_tables_describe(m, n, k, contiguous_rows, consecutive_columns,
                                                                accumulate, seed):
    """Random tables over small images, with pixels off the edge: A's rows at consecutive
    offsets and one pixel per panel of 8 (W^T in a transposed convolution: one load per
    depth) or anywhere, and C's columns in runs of 16 or scattered, with bounds."""
    rng = np.random.default_rng(seed)
    height, width = 3, 4

    def axis(bases, y=None, x=None):
        """A (base, y, x) table, the bases past a margin for pixels at -1."""
        count = len(bases)
        y = rng.integers(-1, 3, count) if y is None else y
        x = rng.integers(-1, 3, count) if x is None else x
        return np.stack([bases + width + 1, y, x], axis=1)

    if contiguous_rows:  # one pixel per panel of 8 rows, the offsets counting up from it
        pixel = np.repeat(rng.integers(-1, 3, ((m + 7) // 8, 2)), 8, axis=0)[:m]
        a_rows = np.stack([np.arange(m) + 4 * width, pixel[:, 0], pixel[:, 1]], axis=1)
    else:
        a_rows = axis(rng.integers(0, 40, m))
    a_cols = axis(rng.integers(0, 40, k) * m)
    b_rows, b_cols = axis(rng.integers(0, 30, k)), axis(rng.integers(0, 30, n))
    # C: every (row, column) at a place of its own, so that the result is well defined
    image = height * width
    c_rows = axis(np.arange(m) * (n + 2) * image)
    if consecutive_columns:
        c_cols = np.stack([np.arange(n), np.zeros(n, int), np.zeros(n, int)], axis=1)
    else:
        c_cols = axis(rng.permutation(n) * image, rng.integers(0, 2, n), rng.integers(0, 2, n))
    a_data = rng.standard_normal(40 * m * k + 40 * m + 10 * image, dtype=np.float32)
    b_data = rng.standard_normal(80 + 4 * image, dtype=np.float32)
    out = rng.standard_normal(m * (n + 2) * image + 4 * image, dtype=np.float32)
    before = out.astype(np.float64)
    native.module().gemm_gathered((a_data, a_rows, a_cols, (height, width)), (b_data, b_rows, b_cols, (height, width)),
                                  (out, c_rows, c_cols, (height, width), 0), accumulate=accumulate)
    product = _materialize(a_data, a_rows, a_cols, (height, width)) @ _materialize(b_data, b_rows, b_cols,
                                                                                   (height, width))
    y, x = c_rows[:, 1:2] + c_cols[:, 1], c_rows[:, 2:3] + c_cols[:, 2]
    kept = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    place = c_rows[:, :1] + c_cols[:, 0] + y * width + x
    expected = before.copy()
    expected[place[kept]] = product[kept] + (before[place[kept]] if accumulate else 0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


@needs_gemm
def test_gemm_gathered_rejects_tables_that_would_read_or_write_outside_the_data():
    gemm_gathered = native.module().gemm_gathered
    data = np.zeros(12, np.float32)
    rows, cols = np.array([[0, 0, 0], [4, 0, 0], [8, 0, 0]]), np.array([[0, 0, 0], [1, 0, 0]])
    good_a = (data, rows, cols, (1, 1))
    good_b = (np.zeros(6, np.float32), np.array([[0, 0, 0], [3, 0, 0]]), np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]]),
              (1, 1))
    out = (np.zeros(9, np.float32), np.array([[0, 0, 0], [3, 0, 0], [6, 0, 0]]),
           np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]]), (1, 1), 0)
    gemm_gathered(good_a, good_b, out)  # 3 x 2 times 2 x 3: fine
    with pytest.raises(ValueError, match="a's tables reach outside its data"):
        gemm_gathered((data, rows + 4, cols, (1, 1)), good_b, out)
    with pytest.raises(ValueError, match="a's tables reach outside its data"):
        gemm_gathered((data, rows - 1, cols, (1, 1)), good_b, out)
    with pytest.raises(ValueError, match="out's tables reach outside its data"):
        gemm_gathered(good_a, good_b, (out[0][:8],) + out[1:])
    with pytest.raises(ValueError, match="a has 2 columns but b has 3 rows"):
        gemm_gathered(good_a, (good_b[0], np.zeros((3, 3), np.int64)) + good_b[2:], out)
    with pytest.raises(ValueError, match=r"must be an \(n, 3\) table"):
        gemm_gathered((data, rows[:, :2], cols, (1, 1)), good_b, out)
    with pytest.raises(ValueError, match="row_group must be 0 or divide its 3 rows"):
        gemm_gathered(good_a, good_b, out[:4] + (2,))
    with pytest.raises(ValueError, match="col_group must be 0 or divide its 3 columns, got 2"):
        gemm_gathered(good_a, good_b, out[:4] + (3, 2))
    with pytest.raises(ValueError, match=r"out must be \(data, rows, cols, \(height, width\), row_group\[, col_group\]\)"):
        gemm_gathered(good_a, good_b, out + (1, 1))
    with pytest.raises(ValueError, match="data must be a C-contiguous float32"):
        gemm_gathered((data.astype(np.float64),) + good_a[1:], good_b, out)
    # an image operand: pixels past the image's edge read as zero, and the bound check
    # covers the whole image, not only the table entries
    image = np.arange(1, 10, dtype=np.float32)  # a 3 x 3 image
    taps = np.array([[0, -1, 0], [0, 0, 0], [0, 1, 0]])  # one column of a 3-tap vertical window
    positions = np.array([[0, 0, 1], [0, 2, 1]])  # its centre at (0, 1) and (2, 1)
    out = np.zeros(6, np.float32)
    gemm_gathered((np.ones(1, np.float32), np.zeros((1, 3), np.int64), np.zeros((3, 3), np.int64), (1, 1)),
                  (image, taps, positions, (3, 3)),
                  (out, np.zeros((1, 3), np.int64), np.array([[0, 0, 0], [1, 0, 0]]), (1, 1), 0))
    np.testing.assert_array_equal(out[:2], [2 + 5, 5 + 8])  # the window's top and bottom taps fall off
    with pytest.raises(ValueError, match="b's tables reach outside its data"):
        gemm_gathered((np.ones(1, np.float32), np.zeros((1, 3), np.int64), np.zeros((3, 3), np.int64), (1, 1)),
                      (image, taps, positions, (4, 3)),
                      (out, np.zeros((1, 3), np.int64), np.array([[0, 0, 0], [1, 0, 0]]), (1, 1), 0))


@needs_cpp
@pytest.mark.parametrize("shape", [(64, 12544), (12544, 64), (17, 33), (16, 16), (1, 5), (40, 1),
                                   (64, 128, 49), (49, 128, 64), (17, 3, 33), (2, 1, 16)])
def test_transpose_matches_numpy(shape):
    """The batch-innermost layouts' transpose, a.T for 2-D and 3-D arrays: 16 x 16
    register tiles, scalar edges, threads."""
    a = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    t = native.module().transpose(a)
    assert t.flags.c_contiguous
    np.testing.assert_array_equal(t, a.T)


@needs_cpp
def test_transpose_rejects_what_it_cannot_take():
    with pytest.raises(ValueError, match="must be 2-D or 3-D, got shape"):
        native.module().transpose(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="float32"):
        native.module().transpose(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="C-contiguous"):
        native.module().transpose(np.zeros((4, 6), np.float32)[:, ::2])


def test_pixel_by_pixel_needs_a_batch_that_fills_its_tiles():
    """At most a quarter of the 32-sample tiles' lanes idle: the last tile costs as much
    whether its lanes are busy or not. A batch of 16 or fewer has tiles of 16 samples,
    on maps of up to 16 x 16 pixels (24 x 24 transposed)."""
    from ganforge.backends.cpu import gathered as conv_gathered
    assert [n for n in (1, 8, 16, 24, 32, 40, 48, 64, 96, 100, 128) if conv_gathered._fills_tiles(n)] == \
        [24, 32, 48, 64, 96, 100, 128]
    assert not conv_gathered._fills_tiles(0)
    assert conv_gathered._direct(64, 64, 128, transposed=False, pixels=7 * 7)
    assert not conv_gathered._direct(40, 64, 128, transposed=False, pixels=7 * 7)
    assert [n for n in (1, 8, 11, 12, 16, 20) if conv_gathered._direct(n, 64, 64, False, pixels=14 * 14)] == [12, 16]
    assert not conv_gathered._direct(16, 64, 64, False, pixels=24 * 24)  # SRGAN's residual layers at 96 px: the GEMM,
    assert conv_gathered._direct(16, 64, 64, True, pixels=24 * 24)       # their input gradients pixel by pixel
    assert not conv_gathered._direct(16, 64, 64, True, pixels=48 * 48)
    assert conv_gathered._direct_weight_grad(32, 64, 128) and not conv_gathered._direct_weight_grad(16, 64, 128)


@needs_gemm
@pytest.mark.parametrize("batch", [12, 16])
def test_a_batch_of_16_or_fewer_runs_pixel_by_pixel_in_narrow_tiles(monkeypatch, batch):
    """SRGAN's batch of 16 (and down to 12) runs conv_direct's 16 x 16 tiles: 20 output
    channels leave the second block of 16 rows part empty, 12 samples a quarter of the
    lanes masked off; the convolution and its transposed twin (its input gradient) agree
    with `ref`."""
    from ganforge.backends.cpu import gathered as conv_gathered
    calls = count_kernel_calls(monkeypatch)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 24, 10, 10), dtype=np.float32)
    w = rng.standard_normal((20, 24, 3, 3), dtype=np.float32)
    y = conv_gathered.conv2d(x, w, (1, 1), (1, 1), (1, 1), 1)
    want = dispatch.call("conv2d", x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1), (1, 1), 1,
                         device="cpu", impl="ref")
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    gx = conv_gathered.conv_transpose2d(y, w, (10, 10), (1, 1), (1, 1), (1, 1), 1)
    want = dispatch.call("conv_transpose2d", y.astype(np.float64), w.astype(np.float64), (10, 10), (1, 1), (1, 1),
                         (1, 1), 1, device="cpu", impl="ref")
    np.testing.assert_allclose(gx, want, rtol=1e-4, atol=1e-3)
    assert calls.count("conv_direct") == 2 and "gemm_gathered" not in calls


@needs_gemm
def test_conv_direct_weight_grad_rejects_what_it_cannot_take():
    grad = native.module().conv_direct_weight_grad
    x = np.zeros((9, 16, 4), np.float32)          # 3x3 pixels, 16 channels, batch 4
    gy = np.zeros((4, 4, 32), np.float32)         # 2x2 pixels, batch 4, 32 outputs
    out = np.zeros((4, 16, 32), np.float32)       # 2x2 taps
    pairs = tuple(np.asarray(a, np.int32) for a in ([0, 1, 2, 3, 4], [0, 1, 2, 3], [0, 1, 3, 4]))
    grad(x, gy, pairs, out)
    with pytest.raises(ValueError, match=r"gy must be a C-contiguous float32 array of shape \(4, 4, 32\), got"):
        grad(x, gy[:, :3].copy(), pairs, out)
    with pytest.raises(ValueError, match=r"out must be a writable C-contiguous float32 array of shape \(4, 16, 32\)"):
        grad(x, gy, pairs, out[:, :8].copy())
    with pytest.raises(ValueError, match=r"pair 3 \(out_pixel 4, in_pixel 4\) is outside gy's 4 pixels or x's 9"):
        grad(x, gy, (pairs[0], np.array([0, 1, 2, 4], np.int32), pairs[2]), out)
    with pytest.raises(ValueError, match="run_start must not decrease"):
        grad(x, gy, (np.array([0, 2, 1, 3, 4], np.int32),) + pairs[1:], out)
    with pytest.raises(ValueError, match="a run per tap and chunk"):
        grad(x, gy, (np.array([0, 4], np.int32),) + pairs[1:], out)


@needs_gemm
def test_conv_direct_rejects_what_it_cannot_take():
    """The pixel-by-pixel kernel checks every array and every pair before it reads memory."""
    conv_direct = native.module().conv_direct
    x = np.zeros((9, 16, 4), np.float32)          # 3x3 pixels, 16 channels, batch 4
    w = np.zeros((8, 16, 2, 2), np.float32)
    out = np.zeros((4, 8, 4), np.float32)         # 2x2 pixels
    pairs = tuple(np.asarray(a, np.int32) for a in ([0, 1, 2, 3, 4], [0, 1, 3, 4], [0, 1, 2, 3]))
    conv_direct(x, w, False, 1, pairs, out)
    with pytest.raises(ValueError, match=r"w \(8, 15, 2, 2\) does not take x's 16 channels"):
        conv_direct(x, w[:, :15].copy(), False, 1, pairs, out)
    with pytest.raises(ValueError, match=r"out must be a writable C-contiguous float32 array of shape \(4, 8, 4\), "
                                         r"got \(4, 8, 3\)"):
        conv_direct(x, w, False, 1, pairs, out[:, :, :3].copy())
    with pytest.raises(ValueError, match="groups must be positive and divide"):
        conv_direct(x, w, False, 3, pairs, out)
    with pytest.raises(ValueError, match="x must be a C-contiguous float32"):
        conv_direct(x.astype(np.float64), w, False, 1, pairs, out)
    with pytest.raises(ValueError, match=r"pair 2 \(in_pixel 9, tap 2\) is outside x's 9 pixels or w's 4 taps"):
        conv_direct(x, w, False, 1, (pairs[0], np.array([0, 1, 9, 4], np.int32), pairs[2]), out)
    with pytest.raises(ValueError, match="pair_start must not decrease"):
        conv_direct(x, w, False, 1, (np.array([0, 2, 1, 3, 4], np.int32),) + pairs[1:], out)
    with pytest.raises(ValueError, match="pair_start must run from 0 to the 4 pairs"):
        conv_direct(x, w, False, 1, (np.array([0, 1, 2, 3, 3], np.int32),) + pairs[1:], out)
    with pytest.raises(ValueError, match="pairs must be 1-D"):
        conv_direct(x, w, False, 1, (pairs[0][:4],) + pairs[1:], out)


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 128, 7, 7), (5, 3), (3, 4, 2, 5, 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_cpp_batch_norm_matches_the_reference(dtype, shape, affine):
    """The fused C++ batch norm, forward and backward, against the NumPy kernels; the mean
    is large against the spread, where centring in the wrong order would lose digits."""
    from ganforge.ops import norm
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 0.5 + 30).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    weight, bias = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2)) if affine else (None, None)
    tolerance = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    got, want = cpp.batch_norm(x, weight, bias, 1e-5), norm.batch_norm_ref(x, weight, bias, 1e-5)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, **tolerance)
    mean, inv_std = want[1], want[3]
    for g, w in zip(cpp.batch_norm_backward(x, gy, weight, mean, inv_std),
                    norm.batch_norm_backward_ref(x, gy, weight, mean, inv_std)):
        np.testing.assert_allclose(g, w, **tolerance)


@needs_cpp
def test_cpp_batch_norm_checks_its_arguments():
    c = native.module()
    x = np.zeros((4, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"weight must be a contiguous \(3,\) vector"):
        c.batch_norm_forward(x, np.ones(2, np.float32), None, 1e-5)
    with pytest.raises(ValueError, match="gy must be a C-contiguous array of x's shape"):
        c.batch_norm_backward(x, np.zeros((4, 3), np.float32), None, np.zeros(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="must be \\(N, C, ...\\)"):
        c.batch_norm_forward(np.zeros(3, np.float32), None, None, 1e-5)


@pytest.mark.parametrize("source", ["gemm.cpp", "conv_direct.cpp"])
def test_the_avx512_sources_compile_for_cpus_without_their_kernels(source):
    """csrc/gemm.cpp and conv_direct.cpp as a CPU other than x86-64 builds them: the stubs
    and the portable transpose, no intrinsics (GANFORGE_PORTABLE_ONLY selects that branch
    on this one)."""
    import shutil
    import subprocess
    from pathlib import Path
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    csrc = Path(__file__).resolve().parents[1] / "csrc"
    done = subprocess.run([compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-DGANFORGE_PORTABLE_ONLY",
                           "-fsyntax-only", f"-I{csrc}", str(csrc / source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@needs_cpp
def test_float32_convolutions_without_avx512_unfold_on_numpy(monkeypatch):
    """On a CPU without AVX-512 the `cpp` convolutions take the C++ unfold and NumPy's
    matmul, never ganforge's GEMM, and agree with `ref`."""
    import ganforge.backends.cpu.gemm as gemm_module
    compiled = native.module()
    calls = []

    class WithoutAvx512:
        def __getattr__(self, name):
            return getattr(compiled, name)

        def gemm_supported(self):
            return False

        def gemm(self, *args, **kwargs):
            calls.append("gemm")

        def gemm_gathered(self, *args, **kwargs):
            calls.append("gemm_gathered")

    monkeypatch.setattr(gemm_module.native, "module", lambda: WithoutAvx512())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 32, 9, 9), dtype=np.float32)
    w = rng.standard_normal((32, 32, 4, 4), dtype=np.float32)
    gy = rng.standard_normal((3, 32, 18, 18), dtype=np.float32)
    for op, args in (("conv_transpose2d", (x, w, (18, 18), (2, 2), (1, 1), (1, 1), 1)),
                     ("conv2d", (gy, w, (2, 2), (1, 1), (1, 1), 1)),
                     ("conv2d_weight_grad", (gy, x, w.shape, (2, 2), (1, 1), (1, 1), 1))):
        got = dispatch.call(op, *args, device="cpu", impl="cpp")
        np.testing.assert_allclose(got, dispatch.call(op, *args, device="cpu", impl="ref"), rtol=1e-4, atol=1e-4)
    assert calls == []


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0, 1.5, -0.3])
@pytest.mark.parametrize("size", [1, 17, 70001])
@pytest.mark.parametrize("gain", [1.0, 2 ** 0.5])
def test_cpp_leaky_relu_matches_the_reference(dtype, slope, size, gain):
    """The one-pass ReLU/LeakyReLU kernels (AVX-512 for float32) against NumPy, including a
    tail shorter than a vector, NaN, infinities and signed zeros; with a gain, bit for bit
    the activation and then the product (and their gradients, one after the other)."""
    from ganforge.ops import activation
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(dtype)
    gy = rng.standard_normal(size).astype(dtype)
    x[:4] = [np.nan, np.inf, -np.inf, -0.0][:size] if size >= 4 else x[:4]
    np.testing.assert_array_equal(cpp.leaky_relu(x, slope, gain), activation.leaky_relu_ref(x, slope, gain))
    np.testing.assert_array_equal(cpp.leaky_relu_backward(x, gy, slope, gain),
                                  activation.leaky_relu_backward_ref(x, gy, slope, gain))
    g = dtype(gain)
    np.testing.assert_array_equal(cpp.leaky_relu(x, slope, gain), cpp.leaky_relu(x, slope) * g)
    np.testing.assert_array_equal(cpp.leaky_relu_backward(x, gy, slope, gain), cpp.leaky_relu_backward(x, gy * g, slope))
    shaped = x.reshape(1, -1, 1)
    assert cpp.leaky_relu(shaped, slope).shape == shaped.shape


@needs_cpp
@pytest.mark.parametrize("shapes", [((256, 1), (1, 256)), ((64, 2), (2, 256)), ((40, 33), (33, 50)),
                                    ((256, 256), (256, 1)), ((3, 8, 5), (5, 7)), ((300, 300), (300, 300)),
                                    ((16, 2048), (2048, 1024)), ((1024, 16), (16, 2048)), ((256, 256), (256, 256)),
                                    ((64, 256), (256, 256))])
@pytest.mark.parametrize("layout", ["C", "transposed"])
def test_cpp_matmul_matches_numpy_on_every_route(monkeypatch, shapes, layout):
    """2-D float32 products (an MLP's outer products, SRGAN's dense layer at batch 16 and its
    weight gradient, an MLP's 256 x 256 layers at a batch of 64 or 256) run on ganforge's
    GEMM, except the thin ones that it hands back to NumPy, as it does batched operands:
    both routes give NumPy's product, for transposed operands too."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(shape).astype(np.float32) for shape in shapes)
    if layout == "transposed" and a.ndim == 2:
        a, b = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T
    calls = []
    monkeypatch.setattr(native.module(), "gemm", lambda *args, gemm=native.module().gemm: calls.append(1) or gemm(*args))
    got = cpp.matmul(a, b)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    assert got.shape == np.matmul(a, b).shape and got.dtype == np.float32
    assert bool(calls) == (a.ndim == 2 and a.shape[0] >= 8 and b.shape[1] >= 32), shapes
    np.testing.assert_array_equal(cpp.matmul(a.astype(np.float64), b), np.matmul(a.astype(np.float64), b))


@needs_cpp
@pytest.mark.parametrize("shapes,compiled", [
    (((32, 64, 8, 8), (32, 64, 1, 1)), True),    # StyleGAN2's styles and demodulation, per sample and channel
    (((32, 64, 8, 8), (1, 64, 1, 1)), True),     # a bias, per channel
    (((64, 1, 1), (32, 64, 8, 8)), True),        # the same, smaller operand first
    (((32, 64, 8, 8), ()), True),                # a gain
    (((32, 64, 8, 8), (32, 64, 8, 8)), True),
    (((32, 64, 8, 8), (32, 1, 8, 8)), True),     # StyleGAN2's noise, one image per sample over every channel
    (((8, 8, 16, 64), (8, 1, 1, 64)), True),     # a row shared along two axes
    (((32, 64, 8, 8), (1, 1, 8, 8)), True),      # one image over every sample and channel
    (((32, 64, 8, 8), (32, 1, 8, 1)), False),    # spread along two runs of axes: NumPy's broadcasting
    (((32, 64, 8, 8), (32, 64, 1, 8)), False),   # shared rows of 8, too short: NumPy's
    (((256, 256), (256,)), True),                # a bias over the last axis: one row shared by all
    (((256, 256), (256, 1)), True),              # one value per row of 256
    (((8192, 8), (8,)), False),                  # one shared row of 8, too short: NumPy's
    (((16, 8, 8), (16, 8, 8)), False),           # too small to wake a thread
])
def test_cpp_add_and_mul_match_numpy_bit_for_bit(monkeypatch, shapes, compiled):
    """Large float32 sums and products whose smaller operand is one value per row (a
    channel's or a sample's), a scalar, of the same shape, or rows shared by neighbouring
    rows (a sample's image over its channels) run compiled on both cores; the rest on NumPy. Both give NumPy's result to the bit, NaN and infinities included."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(shape).astype(np.float32) for shape in shapes)
    a.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    b = np.float32(b) if b.ndim == 0 else b
    calls = count_kernel_calls(monkeypatch)
    for kernel, expected in ((cpp.add, a + b), (cpp.mul, a * b)):
        got = kernel(a, b)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    big, small = (a, b) if a.size >= np.size(b) else (b, a)
    in_place = big.copy()
    assert cpp.add(in_place, small, out=in_place) is in_place  # a convolution's bias, added into its output
    np.testing.assert_array_equal(in_place, a + b)
    assert calls == (["binary_rows"] * 3 if compiled else []), shapes


@needs_cpp
def test_cpp_add_and_mul_leave_other_layouts_to_numpy(monkeypatch):
    """A transposed view, float64 and mixed dtypes take NumPy's route, with NumPy's result."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 32, 8, 8)).astype(np.float32)
    calls = count_kernel_calls(monkeypatch)
    for x, y in ((a.transpose(1, 0, 2, 3), a[:, 0, :1, :1].copy()), (a.astype(np.float64), a), (a, np.float64(2.0))):
        np.testing.assert_array_equal(cpp.mul(x, y), x * y)
        assert cpp.add(x, y).dtype == (x + y).dtype
    assert calls == []


@needs_cpp
def test_binary_rows_rejects_what_it_cannot_take():
    binary_rows = native.module().binary_rows
    a = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match=r"b's 5 values are neither a \(4, 6\)'s nor rows of 1 shared"):
        binary_rows(a, np.zeros(5, np.float32), True, 1, False)
    with pytest.raises(ValueError, match=r"b's 8 values are neither a \(4, 6\)'s nor rows of 6 shared"):
        binary_rows(a, np.zeros(8, np.float32), True, 6, False)
    with pytest.raises(ValueError, match="b's 3 values do not repeat evenly over the 4 rows of 6 values of a"):
        binary_rows(a, np.zeros(3, np.float32), True, 6, True)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        binary_rows(a, np.zeros(4, np.float64), False, 6, True)
    b = np.zeros(4, np.float32)
    for out in (np.zeros((6, 4), np.float32), np.zeros((4, 6)), a.T, b):
        with pytest.raises(ValueError, match=r"out must be a writeable C-contiguous float32 array of a's shape \(4, 6\)"):
            binary_rows(a, b, False, 6, True, out)


@needs_cpp
def test_cpp_leaky_relu_checks_its_gradient_argument():
    with pytest.raises(ValueError, match="gy must be a C-contiguous array of x's shape and dtype"):
        native.module().leaky_relu(np.zeros(4, np.float32), 0.2, np.zeros(5, np.float32))


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 17, 200_003])  # a vector's tail; enough to split between threads
def test_cpp_adam_step_matches_the_papers_update(dtype, size):
    """The one-pass Adam kernel computes the paper's update (the `ref`) in another order:
    five steps of it leave the parameters and both moments within a few ulps of it."""
    from ganforge.backends.cpu.kernels import adam_step
    from ganforge.optim import adam_step_ref
    rng = np.random.default_rng(size)
    param = rng.standard_normal(size).astype(dtype)
    states = {impl: [param.copy(), np.zeros_like(param), np.zeros_like(param)] for impl in ("ref", "cpp")}
    for step in range(1, 6):
        grad = (rng.standard_normal(size) * 10.0 ** rng.integers(-6, 3, size)).astype(dtype)
        hyper = (2e-4, 0.5, 0.999, 1e-8, step)
        adam_step_ref(*states["ref"][:1], grad, *states["ref"][1:], *hyper)
        adam_step(*states["cpp"][:1], grad, *states["cpp"][1:], *hyper)
        for got, expected in zip(states["cpp"], states["ref"]):
            # a few roundings apart, of the array's largest values (a parameter near 0 is
            # the difference of two numbers near 1)
            ulps = 8 * np.finfo(dtype).eps
            np.testing.assert_allclose(got, expected, rtol=ulps, atol=ulps * np.abs(expected).max())
    assert not np.array_equal(states["cpp"][0], param)  # it did move


@needs_cpp
def test_adam_runs_the_cpp_step_and_falls_back_for_what_it_cannot_take(monkeypatch):
    calls = []
    monkeypatch.setattr(native.module(), "adam_step", lambda *args: calls.append(args), raising=False)
    from ganforge.backends.cpu.kernels import adam_step
    p = gf.Tensor(np.ones((3, 4), np.float32), requires_grad=True)
    p.grad = gf.Tensor(np.ones((3, 4), np.float32))
    gf.optim.Adam([p]).step()
    assert len(calls) == 1
    # non-contiguous moments (or a dtype the kernel lacks) take the reference, still right
    param, grad = np.ones((4, 3), np.float32), np.arange(12, dtype=np.float32).reshape(3, 4).T
    m, v = np.zeros((3, 4), np.float32).T, np.zeros((3, 4), np.float32).T
    adam_step(param, grad, m, v, 0.01, 0.9, 0.999, 1e-8, 1)
    assert len(calls) == 1
    np.testing.assert_allclose(m, 0.1 * grad, rtol=1e-6)
    # a transposed gradient (a Linear weight's) is only read: the kernel takes a copy
    adam_step(param, grad, np.zeros_like(param, order="C"), np.zeros_like(param, order="C"),
              0.01, 0.9, 0.999, 1e-8, 1)
    assert len(calls) == 2


@needs_cpp
def test_adam_steps_a_scalar_parameter_as_pytorch_does():
    """A 0-d parameter (StyleGAN2's noise strength): its gradient must reach the kernel as
    shape (), not as the (1,) that np.ascontiguousarray would make of it."""
    p = gf.nn.Parameter(np.array(0.5, dtype=np.float32))
    p.grad = gf.Tensor(np.array(2.0, dtype=np.float32))
    gf.optim.Adam([p], lr=0.1).step()
    assert p.shape == () and p.item() == pytest.approx(0.4, abs=1e-6)  # Adam's first step: lr x sign


@needs_cpp
def test_cpp_adam_step_checks_its_arrays():
    adam_step = native.module().adam_step
    ok = [np.zeros(4, np.float32) for _ in range(4)]
    scalars = (0.9, 0.1, 0.999, 0.001, 0.03, 1e-8, 1e-3)
    adam_step(*ok, scalars)
    with pytest.raises(ValueError, match=r"exp_avg must be a C-contiguous array of param's shape \(4,\)"):
        adam_step(ok[0], ok[1], np.zeros(5, np.float32), ok[3], scalars)
    with pytest.raises(ValueError, match="grad must be a C-contiguous array of param's shape"):
        adam_step(ok[0], np.zeros(4, np.float64), ok[2], ok[3], scalars)
    with pytest.raises(ValueError, match="exp_avg_sq must be a C-contiguous"):
        adam_step(ok[0], ok[1], ok[2], np.zeros(8, np.float32)[::2], scalars)
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="param must be writable"):
        adam_step(frozen, ok[1], ok[2], ok[3], scalars)
    with pytest.raises(ValueError, match="param must be float32 or float64"):
        adam_step(*[np.zeros(4, np.float16)] * 4, scalars)


@needs_gemm
def test_ab_builds_loads_two_copies_that_share_no_state(tmp_path):
    """bench/ab_builds.py times two builds in one process: each copy must really be a
    module of its own (importlib alone hands back the first), with its own settings."""
    import subprocess
    import sys
    from pathlib import Path
    script = (
        "import sys, tempfile, numpy as np\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent.parent / 'bench')!r})\n"
        "from ab_builds import load_build\n"
        "from ganforge.backends.cpu import native\n"
        "path = native.module().__file__\n"
        "with tempfile.TemporaryDirectory() as folder:\n"
        "    a = load_build(path, 'A', folder)\n"
        "    b = load_build(path + ':GANFORGE_NUM_THREADS=3', 'B', folder)\n"
        "    assert a is not b and a is not native.module() and a.gemm is not b.gemm\n"
        "    assert (a.num_threads(), b.num_threads()) == (1, 3), (a.num_threads(), b.num_threads())\n"
        "    x, y = np.ones((1, 40, 50), np.float32), np.ones((1, 50, 60), np.float32)\n"
        "    for m in (a, b):\n"
        "        out = np.empty((1, 40, 60), np.float32)\n"
        "        m.gemm(x, y, out, accumulate=False)\n"
        "        assert (out == 50).all()\n"
        "print('ok')\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "GANFORGE_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@needs_cpp
def test_ab_builds_runs_each_side_with_its_own_kernel_choice(monkeypatch):
    """--a-kernels / --b-kernels: a side runs with GANFORGE_KERNELS as given (the registry
    reads it on every call), the other with it unset."""
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "bench"))
    monkeypatch.setenv("GANFORGE_KERNELS", "")  # restored after the test, whatever the runs leave
    from ab_builds import with_build
    chosen = []
    probe = lambda: chosen.append(dispatch.resolve("mul", "cpu").impl)  # noqa: E731
    with_build(native.module(), probe, "add=ref,mul=ref")()
    with_build(native.module(), probe)()
    assert chosen == ["ref", "cpp"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_output_channels_run_without_unfolding(dtype, monkeypatch):
    """An image generator's last layer (many channels -> 3 through a 7x7 window) and its two
    gradients agree with the references, odd sizes, padding (wider than the window too)
    and a batch included. float32 on AVX-512 takes the gathered GEMM's routes (the
    transposed convolution of the flipped window, gy unfolded for the weight gradient),
    anything else backends/cpu/few_outputs.py's."""
    from ganforge.backends.cpu import few_outputs, gathered
    from ganforge.backends.cpu.gemm import NativeGemm
    taken = []
    for module, name in ((few_outputs, "conv2d"), (few_outputs, "conv2d_weight_grad"),
                         (gathered, "conv_transpose2d"), (gathered, "few_outputs_weight_grad")):
        monkeypatch.setattr(module, name, (lambda fn, name: lambda *a: taken.append(name) or fn(*a))(
            getattr(module, name), name))
    gathers = NativeGemm.usable(np.zeros(1, dtype=dtype))
    route = ["conv_transpose2d", "few_outputs_weight_grad"] if gathers else ["conv2d", "conv2d_weight_grad"]
    rng = np.random.default_rng(3)
    cases = ((1, 64, 3, (7, 7), (22, 20), (0, 0)), (2, 12, 3, (3, 5), (7, 9), (1, 2)), (3, 8, 1, (2, 2), (5, 4), (1, 0)),
             (2, 8, 2, (2, 3), (4, 5), (2, 3)))
    # and with the NumPy forward's tap planes taken a sample at a time, then two at a time
    for chunk_bytes, (n, c, o, kernel, size, padding) in [(few_outputs.TAPS_CHUNK_BYTES, case) for case in cases] + [
            (1, cases[2]), (2 * 4 * 7 * 4 * np.dtype(dtype).itemsize, cases[2])]:  # 4 taps of 7 x 4 padded pixels
        monkeypatch.setattr(few_outputs, "TAPS_CHUNK_BYTES", chunk_bytes)
        x = rng.standard_normal((n, c) + size).astype(dtype)
        w = rng.standard_normal((o, c) + kernel).astype(dtype)
        geometry = ((1, 1), padding, (1, 1), 1)
        taken.clear()
        y = dispatch.call("conv2d", x, w, *geometry, impl="cpp")
        gy = rng.standard_normal(y.shape).astype(dtype)
        results = {"conv2d": (y, dispatch.call("conv2d", x, w, *geometry, impl="ref")),
                   "weight": (dispatch.call("conv2d_weight_grad", x, gy, w.shape, *geometry, impl="cpp"),
                              dispatch.call("conv2d_weight_grad", x, gy, w.shape, *geometry, impl="ref"))}
        assert taken == route, taken
        results["input"] = (dispatch.call("conv_transpose2d", gy, w, size, *geometry, impl="cpp"),
                            dispatch.call("conv_transpose2d", gy, w, size, *geometry, impl="ref"))
        for what, (got, expected) in results.items():
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=what)
    assert not few_outputs.applies(3, 64, (7, 7), (2, 2), (1, 1), 1)  # strided: the other routes
    assert not few_outputs.applies(3, 8, (3, 3), (1, 1), (1, 1), 1)  # not few enough
    assert not few_outputs.applies(1, 8, (3, 3), (1, 1), (1, 1), 1, padding=(3, 0))  # no full convolution


@pytest.mark.skipif(not native.available()[0], reason="the compiled module is not built")
def test_flushing_denormals_zeroes_them_on_every_kernel_thread():
    """gf.set_flush_denormal (torch's name): a product of a denormal (1e-39 in float32) and
    a normal number is 0 with the flush on, on the calling thread and on the GEMM's
    workers (a product big enough to be split over them), and is not with it off."""
    import ganforge as gf
    from ganforge.backends.cpu.gemm import NativeGemm
    rng = np.random.default_rng(0)
    tiny = (np.abs(rng.standard_normal((512, 512))) * 1e-39 + 1e-40).astype(np.float32)
    ones = np.ones((512, 512), dtype=np.float32)
    assert (tiny > 0).all() and (tiny < np.finfo(np.float32).tiny).all()
    try:
        assert gf.set_flush_denormal(True)
        assert not NativeGemm.matmul(tiny, ones).any() and not np.matmul(tiny[:4], ones[:, :4]).any()
        assert not (gf.tensor(tiny) * 1.0).numpy().any()
    finally:
        gf.set_flush_denormal(False)
    assert NativeGemm.matmul(tiny, ones).all()


@needs_gemm
@pytest.mark.parametrize("m, k, n", [
    (256, 256, 256),  # whole register tiles, split between the threads
    (37, 300, 45),    # edge tiles, and a second block of depth (KC = 256)
    (8, 16384, 40),   # too few rows and columns to split: split over the depth, then the epilogue
    (9, 0, 33),       # no depth: the bias alone
])
@pytest.mark.parametrize("slope", [None, 0.0, 0.2, 1.0])
def test_gemm_epilogue_matches_separate_passes_bit_for_bit(m, k, n, slope):
    """A linear layer's bias and activation applied by the GEMM as it stores C give what
    the product, NumPy's + bias and the leaky_relu kernel give one after the other, to the
    bit (NaN and infinities included), into a row-major or a transposed C."""
    rng = np.random.default_rng(m + k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    if k:
        x[0, 0], x[1, 0] = np.nan, np.inf
    gemm = native.module().gemm
    for with_bias in (bias, None):
        expected = np.empty((1, m, n), np.float32)
        gemm(x[None], w.T[None], expected)
        expected = expected[0]
        if with_bias is not None:
            expected += with_bias
        if slope is not None:
            expected = native.module().leaky_relu(expected, slope)
        for out in (np.empty((1, m, n), np.float32), np.empty((1, n, m), np.float32).transpose(0, 2, 1)):
            gemm(x[None], w.T[None], out, bias=with_bias, slope=slope)
            np.testing.assert_array_equal(out[0], expected)


@needs_gemm
def test_gemm_epilogue_rejects_what_it_cannot_take():
    gemm = native.module().gemm
    a, b, out = np.zeros((1, 4, 3), np.float32), np.zeros((1, 3, 5), np.float32), np.zeros((1, 4, 5), np.float32)
    with pytest.raises(ValueError, match=r"bias must be a 1-D float32 array of 5 values, got shape \(4,\) float32"):
        gemm(a, b, out, bias=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"got shape \(5,\) float64"):
        gemm(a, b, out, bias=np.zeros(5))
    with pytest.raises(ValueError, match="got list"):
        gemm(a, b, out, bias=[0.0] * 5)
    with pytest.raises(ValueError, match="not with accumulate or a summed batch"):
        gemm(a, b, out, accumulate=True, slope=0.2)


@needs_gemm
@pytest.mark.parametrize("slope", [None, 0.2])
def test_cpp_linear_runs_the_epilogue_where_the_gemm_takes_the_product(monkeypatch, slope):
    """The `linear` op's C++ route gives its separate passes' result bit for bit, through
    one GEMM call with the epilogue for a float32 batch; a thin product (a batch under one
    register tile), float64 or a float64 bias take the separate passes."""
    from ganforge.ops.linalg import linear_ref
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    cases = [(rng.standard_normal((40, 48)).astype(np.float32), bias, ["gemm"]),  # with its epilogue
             (rng.standard_normal((4, 48)).astype(np.float32), bias, []),  # NumPy's matmul
             (rng.standard_normal((40, 48)), bias, []),
             (rng.standard_normal((40, 48)).astype(np.float32), bias.astype(np.float64), ["gemm"])]  # then + bias
    for x, b, kernels in cases:
        separate = cpp.leaky_relu(cpp.matmul(x, w.T) + b, slope) if slope is not None else cpp.matmul(x, w.T) + b
        calls = count_kernel_calls(monkeypatch)
        got = cpp.linear(x, w, b, slope)
        assert got.dtype == separate.dtype and calls == kernels, (x.shape, x.dtype, b.dtype)
        np.testing.assert_array_equal(got, separate)
        np.testing.assert_allclose(got, linear_ref(x, w, b, slope), rtol=1e-5, atol=1e-5)
        monkeypatch.undo()


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, pad", [
    ((4, 64, 16, 16), (3, 3, 3, 3)),  # CycleGAN's first and last layers' padding
    ((2, 3, 5, 7), (1, 2, 3, 0)),     # uneven, one side not padded
    ((3, 4), (2, 1, 1, 3)),           # a single image of two axes
    ((2, 2, 3, 3), (2, 2, 2, 2)),     # the two borders' folds land on one entry
])
def test_cpp_reflect_padding_matches_the_reference_bit_for_bit(dtype, shape, pad):
    """Reflection padding as np.pad does it, and its adjoint with the ref's sums bit for
    bit (rows folded before columns); padding of other axes takes the ref's route."""
    from ganforge.ops.shape import pad_reflect_backward_ref, pad_reflect_ref
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    width = ((0, 0),) * (len(shape) - 2) + ((pad[0], pad[1]), (pad[2], pad[3]))
    y = cpp.pad_reflect(x, width)
    np.testing.assert_array_equal(y, pad_reflect_ref(x, width))
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = cpp.pad_reflect_backward(gy, width)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gx, pad_reflect_backward_ref(gy, width))
    if len(shape) == 4:  # the channel axis padded too: NumPy's route
        width = ((0, 0), (1, 1)) + width[2:]
        np.testing.assert_array_equal(cpp.pad_reflect(x, width), pad_reflect_ref(x, width))
        gy = rng.standard_normal(pad_reflect_ref(x, width).shape).astype(dtype)
        np.testing.assert_array_equal(cpp.pad_reflect_backward(gy, width), pad_reflect_backward_ref(gy, width))


@needs_cpp
def test_reflect_pad_rejects_what_it_cannot_take():
    reflect_pad = native.module().reflect_pad
    with pytest.raises(ValueError, match=r"smaller than its side \(3 x 3\), got \(3, 0, 0, 0\)"):
        reflect_pad(np.zeros((2, 3, 3), np.float32), (3, 0, 0, 0))
    with pytest.raises(ValueError, match="float32 or float64, got int64"):
        reflect_pad(np.zeros((3, 3), np.int64), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="C-contiguous array of 2 or more axes"):
        reflect_pad(np.zeros((3, 3), np.float32).T, (1, 1, 1, 1))


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, slopes", [
    ((16, 64, 24, 24), 64),  # SRGAN's generator
    ((3, 5, 7), 1),          # one slope for all channels
    ((4, 3), 3),             # (N, C): planes of one value
    ((6,), 1),
])
def test_cpp_prelu_matches_the_reference(dtype, shape, slopes):
    """PReLU and its gradient in one pass each: the ref's output and input gradient bit for
    bit (zeros, on the kink, take the slope), the slopes' gradient summed in double (in
    float32 the ref's own sum is off by up to 1e-5)."""
    from ganforge.ops.activation import prelu_backward_ref, prelu_ref
    rng = np.random.default_rng(slopes)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[::7] = 0
    weight = rng.uniform(0.05, 0.5, slopes).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(cpp.prelu(x, weight), prelu_ref(x, weight))
    (gx, gweight), (ref_gx, ref_gweight) = cpp.prelu_backward(x, gy, weight), prelu_backward_ref(x, gy, weight)
    np.testing.assert_array_equal(gx, ref_gx)
    assert gweight.shape == weight.shape and gweight.dtype == dtype
    exact = prelu_backward_ref(*(a.astype(np.float64) for a in (x, gy, weight)))[1]  # the kernel sums in double
    np.testing.assert_allclose(gweight, exact, rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(ref_gweight, exact, rtol=1e-4)


@needs_cpp
def test_prelu_kernel_rejects_what_it_cannot_take():
    prelu = native.module().prelu
    with pytest.raises(ValueError, match=r"1 slope or one per channel \(3\), got shape \(2,\)"):
        prelu(np.zeros((2, 3, 4), np.float32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="slopes must be x's dtype, float32, got float64"):
        prelu(np.zeros((2, 3), np.float32), np.ones(3))
    with pytest.raises(ValueError, match="gy must be a C-contiguous array of x's shape"):
        prelu(np.zeros((2, 3), np.float32), np.ones(3, np.float32), np.zeros((3, 2), np.float32))


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, r", [
    ((16, 256, 24, 24), 2),  # SRGAN's first upsampling
    ((2, 18, 3, 5), 3),      # uneven sides, r = 3
    ((1, 16, 1, 1), 4),
    ((3, 5, 4, 2), 1),       # r = 1: a copy
])
def test_cpp_pixel_shuffle_matches_the_reference(dtype, shape, r):
    """PixelShuffle and PixelUnshuffle on both cores: the ref's copies exactly, the two
    each other's inverse, and a non-contiguous input taken through a copy."""
    from ganforge.ops.shape import pixel_shuffle_ref, pixel_unshuffle_ref
    x = np.random.default_rng(r).standard_normal(shape).astype(dtype)
    y = cpp.pixel_shuffle(x, r)
    assert y.dtype == dtype and y.shape == (shape[0], shape[1] // r**2, shape[2] * r, shape[3] * r)
    np.testing.assert_array_equal(y, pixel_shuffle_ref(x, r))
    back = cpp.pixel_unshuffle(y, r)
    np.testing.assert_array_equal(back, pixel_unshuffle_ref(y, r))
    np.testing.assert_array_equal(back, x)
    swapped = np.swapaxes(np.swapaxes(y, 2, 3).copy(), 2, 3)  # the same values, column-major planes
    np.testing.assert_array_equal(cpp.pixel_unshuffle(swapped, r), x)


@needs_cpp
def test_shuffle_taps_rejects_what_it_cannot_take():
    shuffle_taps = native.module().shuffle_taps
    with pytest.raises(ValueError, match=r"C must be divisible by r\^2 \(r = 2\), got shape \(1, 6, 2, 2\)"):
        shuffle_taps(np.zeros((1, 6, 2, 2), np.float32), 2)
    with pytest.raises(ValueError, match=r"H and W must be divisible by r \(r = 2\)"):
        shuffle_taps(np.zeros((1, 1, 3, 4), np.float32), 2, to_taps=True)
    with pytest.raises(ValueError, match="float32 or float64, got int64"):
        shuffle_taps(np.zeros((1, 4, 2, 2), np.int64), 2)
    with pytest.raises(ValueError, match="r must be at least 1, got 0"):
        shuffle_taps(np.zeros((1, 4, 2, 2), np.float32), 0)
    with pytest.raises(ValueError, match=r"C-contiguous \(N, C, H, W\) array"):
        shuffle_taps(np.zeros((4, 2, 2), np.float32), 2)


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(256, 256), (32, 64, 16, 16), (3, 70001), (4096, 17)])
def test_cpp_sum_over_the_first_axis_is_numpys_bit_for_bit(monkeypatch, dtype, shape):
    """A bias's gradient over a batch: the rows added in order on both cores, NumPy's sum to
    the bit (values of very different sizes, NaN and infinities included); a strided or a
    small array takes NumPy's route."""
    rng = np.random.default_rng(shape[0])
    x = (rng.standard_normal(shape) * np.exp(3 * rng.standard_normal(shape))).astype(dtype)
    x.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    calls = []
    compiled = native.module()
    monkeypatch.setattr(native, "module", lambda: type("Counting", (), {
        "sum_leading": lambda self, a: calls.append(a.shape) or compiled.sum_leading(a)})())
    np.testing.assert_array_equal(cpp.sum_leading(x), x.sum(axis=0))
    np.testing.assert_array_equal(cpp.sum_leading(x[:, ::2]), x[:, ::2].sum(axis=0))
    np.testing.assert_array_equal(cpp.sum_leading(x[:2, :4]), x[:2, :4].sum(axis=0))
    assert calls == [shape]
    # through the ops: a Linear's bias gradient and a conv bias's (SumTo)
    t = gf.tensor(x)
    np.testing.assert_array_equal(gf.sum(t, axis=0, keepdims=True).numpy(), x.sum(axis=0, keepdims=True))


@needs_gemm
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the first row's inf - inf
@pytest.mark.parametrize("shape, count", [
    ((32, 32, 32, 32), 2),   # StyleGAN2's style gradients: a row of 1024 per (sample, channel)
    ((16, 64, 24, 24), 2),   # 576: two halves of 288, each two of 144 (neither a multiple of 8)
    ((300, 3, 75), 1),       # rows of 75: eight partial sums, then the last 3 one by one
    ((80, 3, 300), 1),       # 300: halves of 144 and 156 (150 is no multiple of 8)
    ((4096, 5, 4), 2),       # rows of 20
    ((2, 70000, 3), 1),      # rows shorter than 8
])
def test_cpp_sums_over_the_last_axes_are_numpys_bit_for_bit(monkeypatch, shape, count):
    """Each row summed in NumPy's pairwise order on both cores: its result bit for bit,
    values of very different sizes, NaN and infinities included; a strided or a small array,
    or float64, takes NumPy's route."""
    rng = np.random.default_rng(shape[-1])
    x = (rng.standard_normal(shape) * np.exp(3 * rng.standard_normal(shape))).astype(np.float32)
    x.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    x.reshape(-1)[-2:] = [np.inf, -np.inf]
    axes = tuple(range(len(shape) - count, len(shape)))
    calls = []
    compiled = native.module()
    monkeypatch.setattr(native, "module", lambda: type("Counting", (), {
        "__getattr__": lambda self, name: getattr(compiled, name),
        "sum_rows": lambda self, a: calls.append(a.shape) or compiled.sum_rows(a)})())
    np.testing.assert_array_equal(cpp.sum_trailing(x, count), x.sum(axis=axes))
    assert calls == [(x.size // math.prod(shape[-count:]), math.prod(shape[-count:]))]
    strided = x[..., ::2]
    np.testing.assert_array_equal(cpp.sum_trailing(strided, count), strided.sum(axis=axes))
    np.testing.assert_array_equal(cpp.sum_trailing(x[:1, :2], count), x[:1, :2].sum(axis=axes))
    np.testing.assert_array_equal(cpp.sum_trailing(x.astype(np.float64), count), x.astype(np.float64).sum(axis=axes))
    assert len(calls) == 1
    # through the ops: a sum over the last axes, and the gradient of a per-row scale (SumTo)
    t = gf.tensor(x)
    np.testing.assert_array_equal(gf.sum(t, axis=axes).numpy(), x.sum(axis=axes))
    assert len(calls) == 2
    if len(shape) == 4:
        scale = gf.tensor(np.ones(shape[:2] + (1, 1), np.float32), requires_grad=True)
        (gf.tensor(x) * scale).sum().backward()
        np.testing.assert_array_equal(scale.grad.numpy(), x.sum(axis=(2, 3), keepdims=True))
        assert len(calls) == 3


@needs_gemm
def test_sum_rows_rejects_what_it_cannot_take():
    sum_rows = native.module().sum_rows
    np.testing.assert_array_equal(sum_rows(np.ones((3, 0), np.float32)), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"C-contiguous float32 array of 2 axes, got \(3, 4\) float64"):
        sum_rows(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        sum_rows(np.zeros((4, 3), np.float32).T)
    with pytest.raises(ValueError, match=r"got \(2, 3, 4\)"):
        sum_rows(np.zeros((2, 3, 4), np.float32))


def _resampling_matrices(kind, size, out_size):
    from ganforge import functional as F
    from ganforge.data.resize import resize_weights
    if kind == "pool":
        return F._bin_averages(size, out_size)
    if kind == "bicubic":
        return resize_weights(size, out_size)
    return F._interpolation_matrix(size, out_size, kind, False)


@needs_gemm
@pytest.mark.parametrize("kind, shape, out_size", [
    ("bilinear", (32, 64, 16, 16), (32, 32)),  # StyleGAN2's upsampling: columns first
    ("pool", (32, 64, 32, 32), (16, 16)),      # its discriminator's pooling: rows first
    ("bilinear", (3, 5, 4, 4), (8, 8)),
    ("nearest", (2, 3, 7, 9), (5, 13)),         # rows not a multiple of the four summed at once
    ("bicubic", (4, 37, 23), (11, 50)),        # a 4-vector row, three axes
    ("bicubic", (2, 3, 20, 45), (30, 64)),     # the widest output the kernel takes
    ("bilinear", (6, 9), (1, 1)),              # a single image of two axes, to one pixel
])
def test_cpp_resampling_matches_the_reference(monkeypatch, kind, shape, out_size):
    """R x C^T over the last two axes with only R's and C's nonzero entries multiplied, and
    so its gradient (the transposed matrices, as views): float32 agrees with the float64
    product to rounding; float64 and outputs over 64 wide take NumPy's products."""
    from ganforge.ops.resample import resample_ref
    rng = np.random.default_rng(shape[-1])
    rows, cols = (_resampling_matrices(kind, n, m).astype(np.float32) for n, m in zip(shape[-2:], out_size))
    x = rng.standard_normal(shape, dtype=np.float32)
    calls = []
    compiled = native.module()
    monkeypatch.setattr(native, "module", lambda: type("Counting", (), {
        "resample_supported": lambda self, width: compiled.resample_supported(width),
        "resample": lambda self, *a: calls.append(a[0].shape) or compiled.resample(*a)})())
    y = cpp.resample(x, rows, cols)
    want = resample_ref(x.astype(np.float64), rows.astype(np.float64), cols.astype(np.float64))
    assert y.shape == want.shape == shape[:-2] + out_size
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    np.testing.assert_allclose(cpp.resample(gy, rows.T, cols.T),
                               resample_ref(gy.astype(np.float64), rows.T.astype(np.float64), cols.T.astype(np.float64)),
                               rtol=1e-6, atol=1e-5)
    assert calls == [shape, y.shape]
    np.testing.assert_array_equal(cpp.resample(x.astype(np.float64), rows.astype(np.float64), cols.astype(np.float64)),
                                  resample_ref(x.astype(np.float64), rows.astype(np.float64), cols.astype(np.float64)))
    wide = _resampling_matrices(kind, shape[-1], 65).astype(np.float32)
    np.testing.assert_array_equal(cpp.resample(x, rows, wide), resample_ref(x, rows, wide))
    assert len(calls) == 2


@needs_gemm
def test_resample_rejects_what_it_cannot_take():
    resample = native.module().resample
    x, rows, cols = np.zeros((2, 4, 6), np.float32), np.zeros((8, 4), np.float32), np.zeros((3, 6), np.float32)
    assert resample(x, rows, cols).shape == (2, 8, 3)
    with pytest.raises(ValueError, match=r"rows \(8, 5\) and cols \(3, 6\) must take x's last two axes"):
        resample(x, np.zeros((8, 5), np.float32), cols)
    with pytest.raises(ValueError, match="C-contiguous float32 arrays, got float64"):
        resample(x.astype(np.float64), rows, cols)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        resample(x, rows.T.copy().T, cols)
    with pytest.raises(ValueError, match="at most 64 wide, got 65"):
        resample(x, rows, np.zeros((65, 6), np.float32))
    with pytest.raises(ValueError, match="2 or more axes"):
        resample(np.zeros(6, np.float32), rows, cols)


@needs_cpp
def test_sum_leading_rejects_what_it_cannot_take():
    sum_leading = native.module().sum_leading
    with pytest.raises(ValueError, match="float32 or float64, got int32"):
        sum_leading(np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        sum_leading(np.zeros((3, 4), np.float32).T)
    with pytest.raises(ValueError, match=r"no rows to sum \(shape \(0, 4\)\)"):
        sum_leading(np.zeros((0, 4), np.float32))

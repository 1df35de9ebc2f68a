"""The kernel registry and the compiled im2col/col2im: parity with the reference,
selection rules, and errors raised from C++."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ganforge as gf
from ganforge import dispatch, native
from ganforge.ops import conv

from .op_specs import window_case

needs_cpp = pytest.mark.skipif(not native.available()[0], reason=native.available()[1])


def test_the_compiled_module_is_built_in_ci():
    """CI installs with the C++ build; if it silently failed we would only test `ref`."""
    import os
    if os.environ.get("CI"):
        assert native.available() == (True, ""), native.available()[1]


@needs_cpp
def test_registry_picks_cpp_on_the_cpu_when_it_is_built(monkeypatch):
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    for op in ("im2col", "col2im", "conv2d", "conv_transpose2d", "conv2d_weight_grad", "spectral_norm",
               "gradient_penalty"):
        assert dispatch.resolve(op, "cpu").impl == "cpp", op
    assert dispatch.resolve("im2col", "cuda").impl == "ref"  # the GPU runs whole convolutions instead


@needs_cpp
def test_unfold_really_calls_the_chosen_kernel(monkeypatch):
    calls = []
    cpp = dispatch.implementations("im2col")["cpp"]
    monkeypatch.setattr(cpp, "fn", lambda *a: calls.append("cpp") or conv.im2col_cpp(*a))
    monkeypatch.delenv("GANFORGE_KERNELS", raising=False)
    gf.unfold(gf.randn(1, 1, 4, 4), 2)
    assert calls == ["cpp"]


@needs_cpp
@pytest.mark.parametrize("impl", ["cpp", "ref"])
def test_a_convolution_runs_the_unfold_kernels_of_its_implementation(impl, monkeypatch):
    """conv ops' `cpp` is im2col/col2im in C++ plus the GEMMs, `ref` the same in NumPy."""
    calls = []
    for op, fn in (("im2col", conv.im2col_cpp), ("col2im", conv.col2im_cpp),
                   ("im2col", conv.im2col_ref), ("col2im", conv.col2im_ref)):
        kernel = dispatch.implementations(op)["cpp" if fn.__name__.endswith("cpp") else "ref"]
        monkeypatch.setattr(kernel, "fn", lambda *a, fn=fn, **k: calls.append(fn.__name__) or fn(*a, **k))
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
    cols = conv.im2col_cpp(x, *g, folded)
    np.testing.assert_array_equal(cols, conv.im2col_ref(x, *g, folded))
    assert cols.dtype == dtype
    if folded:  # the same columns as the per-sample layout, the samples side by side
        per_sample = conv.im2col_ref(x, *g)
        np.testing.assert_array_equal(cols, per_sample.transpose(1, 0, 2).reshape(cols.shape))
    back_cpp = conv.col2im_cpp(cols, shape[1], shape[2:], *g, folded)
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
    for ours, ref in zip(sn.power_iteration_cpp(w, u, iterations, 1e-12), sn.power_iteration_ref(w, u, iterations, 1e-12)):
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, ref, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-6)


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(batch=st.integers(1, 8), features=st.integers(1, 500), seed=st.integers(0, 1000))
def test_cpp_gradient_penalty_matches_the_reference(dtype, batch, features, seed):
    from ganforge.ops import penalty
    g = np.random.default_rng(seed).standard_normal((batch, features)).astype(dtype)
    for one_sided in (False, True):
        ours = penalty.penalty_cpp(g, 1.0, one_sided)
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
        "import numpy as np; from ganforge import native; from ganforge.ops import conv\n"
        "assert native.module().num_threads() == 3\n"
        "x = np.random.default_rng(0).standard_normal((5, 7, 33, 30))\n"
        "g = ((3, 4), (2, 1), (1, 2), (1, 2))\n"
        "cols = conv.im2col_cpp(x, *g)\n"
        "assert np.array_equal(cols, conv.im2col_ref(x, *g))\n"
        "assert np.allclose(conv.col2im_cpp(cols, 7, (33, 30), *g), conv.col2im_ref(cols, 7, (33, 30), *g))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "GANFORGE_NUM_THREADS": "3"})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", [
    dict(x=(3, 4, 7, 6), w=(6, 4, 3, 3), stride=1, padding=1, dilation=1, groups=1),
    dict(x=(2, 6, 9, 8), w=(4, 3, 4, 2), stride=2, padding=(1, 0), dilation=1, groups=2),
    dict(x=(2, 4, 8, 8), w=(6, 2, 3, 3), stride=(1, 2), padding=2, dilation=2, groups=2),
])
def test_per_sample_and_batch_in_columns_gemms_agree(case, monkeypatch):
    """The convolutions pick a GEMM layout by output size; both must give the same numbers."""
    rng = np.random.default_rng(0)
    x = gf.tensor(rng.standard_normal(case["x"]))
    w = gf.tensor(rng.standard_normal(case["w"]))
    options = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    results = []
    for threshold in (0, 10**9):  # never, always batch-in-columns
        monkeypatch.setattr(conv, "BATCH_IN_COLUMNS_BELOW", threshold)
        y = gf.conv2d(x, w, **options)
        back = gf.conv_transpose2d(y, w, **options)
        gw = gf.conv2d_weight_grad(x, y, w.shape, **options)
        results.append([t.numpy() for t in (y, back, gw)])
    for per_sample, batched in zip(*results):
        np.testing.assert_allclose(per_sample, batched, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape", [((3, 4, 5, 5), (6, 4, 5, 5)), ((2, 3, 4, 6), (5, 3, 4, 6))])
def test_whole_image_windows_take_the_matrix_product_shortcut(x_shape, w_shape, monkeypatch):
    """A kernel as large as the unpadded image (DCGAN's first and last layers) is a plain
    matrix product; the shortcut must agree with the general im2col path, in all three ops."""
    rng = np.random.default_rng(1)
    x, w = gf.tensor(rng.standard_normal(x_shape)), gf.tensor(rng.standard_normal(w_shape))
    results = []
    for shortcut in (True, False):
        if not shortcut:
            monkeypatch.setattr(conv, "covers_whole_image", lambda *args: False)
        y = gf.conv2d(x, w)
        assert y.shape[2:] == (1, 1)
        results.append([t.numpy() for t in (y, gf.conv_transpose2d(y, w), gf.conv2d_weight_grad(x, y, w.shape))])
    for fast, general in zip(*results):
        np.testing.assert_allclose(fast, general, rtol=1e-12, atol=1e-12)


# --- ganforge's own float32 GEMM (csrc/gemm.cpp, ops/gemm.py) ----------------------------

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
@pytest.mark.parametrize("m, n, k", [(64, 12544, 100), (64, 100, 12544), (2048, 40, 300), (40, 3100, 70),
                                     (130, 3300, 520), (3, 5, 70000)])
def test_gemm_every_thread_split_matches_numpy(m, n, k):
    """Shapes that take each way of sharing the work between threads (C's columns, C's rows,
    the depth k), including more columns than one packed block (NC 3072) and B read in place."""
    import subprocess
    import sys
    code = (
        "import numpy as np; from ganforge import native\n"
        f"m, n, k = {m}, {n}, {k}\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.standard_normal((1, m, k), dtype=np.float32); b = rng.standard_normal((1, k, n), dtype=np.float32)\n"
        "for a_, b_ in ((a, b), (np.swapaxes(np.swapaxes(a, 1, 2).copy(), 1, 2), np.swapaxes(np.swapaxes(b, 1, 2).copy(), 1, 2))):\n"
        "    out = np.empty((1, m, n), np.float32); native.module().gemm(a_, b_, out)\n"
        "    exact = a.astype(np.float64) @ b.astype(np.float64)\n"
        "    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)\n"
        "    assert np.all(np.abs(out - exact) <= 1e-5 * scale * max(1, np.sqrt(k) / 8)), np.max(np.abs(out - exact) / scale)\n")
    for threads in ("1", "2", "3"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**__import__("os").environ, "GANFORGE_GEMM_THREADS": threads})
        assert done.returncode == 0, (threads, done.stderr)


@needs_gemm
def test_native_matmul_broadcasts_like_numpy_and_sums_over_a_batch():
    from ganforge.ops.gemm import NativeGemm
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


@needs_gemm
def test_float32_cpp_convolutions_run_on_the_native_gemm(monkeypatch):
    """The registry's `cpp` convolutions run in float32 as one gathered GEMM each (no unfold)
    and agree with `ref` (NumPy's matmul over the NumPy unfold)."""
    import ganforge.ops.gemm as gemm_module
    calls = []
    compiled = native.module()

    class Counting:
        def __getattr__(self, name):
            return getattr(compiled, name)

        def gemm(self, *args, **kwargs):
            calls.append("gemm")
            return compiled.gemm(*args, **kwargs)

        def gemm_gathered(self, *args, **kwargs):
            calls.append("gemm_gathered")
            return compiled.gemm_gathered(*args, **kwargs)

    monkeypatch.setattr(gemm_module.native, "module", lambda: Counting())  # the same module object as conv_gathered's
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 9, 9), dtype=np.float32)
    w = rng.standard_normal((8, 4, 4, 4), dtype=np.float32)
    gy = rng.standard_normal((3, 4, 18, 18), dtype=np.float32)
    for op, args in (("conv_transpose2d", (x, w, (18, 18), (2, 2), (1, 1), (1, 1), 1)),
                     ("conv2d", (gy, w, (2, 2), (1, 1), (1, 1), 1)),
                     ("conv2d_weight_grad", (gy, x, w.shape, (2, 2), (1, 1), (1, 1), 1))):
        calls.clear()
        got = dispatch.call(op, *args, device="cpu", impl="cpp")
        assert calls == ["gemm_gathered"], f"{op} called {calls}, not one gathered GEMM"
        np.testing.assert_allclose(got, dispatch.call(op, *args, device="cpu", impl="ref"), rtol=1e-4, atol=1e-4)

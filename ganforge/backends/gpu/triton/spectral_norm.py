"""One step of spectral normalization's power iteration, fused, in Triton.

For a weight matrix W (R, C) and the running vector u (R,):

    t = W^T u            v = t / max(|t|, eps)
    s = W v              u = s / max(|s|, eps)
    sigma = u^T W v = |s|^2 / max(|s|, eps)        (W v is s: no third pass over W)
    W_sn = W / sigma

Eager code reads W three times (two matrix-vector products and u^T W v) and launches
about ten kernels; here W is read twice for the iteration and once for W / sigma, in
three launches. Nothing goes back to the host between them. Each program that needs a
norm sums the squares of the (short) vector itself instead of adding partial sums
atomically: the result is then the same on every run, which a resumed run relies on.
"""
import triton
import triton.language as tl


@triton.jit
def transposed_product_kernel(
    w_ptr,        # W, (R, C)
    u_ptr,        # u, (R,)
    t_ptr,        # out: t = W^T u, (C,)
    R, C,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # Each program owns BLOCK_C columns and walks down all rows of W.
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < C
    t = tl.zeros((BLOCK_C,), dtype=t_ptr.dtype.element_ty)
    for r0 in range(0, R, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        row_ok = rows < R
        w = tl.load(w_ptr + rows[:, None] * C + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        u = tl.load(u_ptr + rows, mask=row_ok, other=0.0)
        t += tl.sum(w * u[:, None], axis=0)
    tl.store(t_ptr + cols, t, mask=col_ok)


@triton.jit
def _norm(x_ptr, n, eps, BLOCK: tl.constexpr):
    """max(|x|, eps) and |x|^2 of a vector of n values, summed in a fixed order."""
    squares = tl.zeros((BLOCK,), dtype=x_ptr.dtype.element_ty)
    for i0 in range(0, n, BLOCK):
        i = i0 + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + i, mask=i < n, other=0.0)
        squares += x * x
    squared = tl.sum(squares, axis=0)
    return tl.maximum(tl.sqrt(squared), eps), squared


@triton.jit
def product_kernel(
    w_ptr,        # W, (R, C)
    t_ptr,        # t from the first pass, (C,)
    v_ptr,        # out: v = t / max(|t|, eps), (C,)
    s_ptr,        # out: s = W v, (R,)
    R, C, eps,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    # Each program owns BLOCK_R rows and walks along all columns of W.
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    t_norm, _ = _norm(t_ptr, C, eps, BLOCK_C)
    s = tl.zeros((BLOCK_R,), dtype=s_ptr.dtype.element_ty)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        col_ok = cols < C
        v = tl.load(t_ptr + cols, mask=col_ok, other=0.0) / t_norm
        if pid == 0:  # v is the same for every program; one of them writes it
            tl.store(v_ptr + cols, v, mask=col_ok)
        w = tl.load(w_ptr + rows[:, None] * C + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        s += tl.sum(w * v[None, :], axis=1)
    tl.store(s_ptr + rows, s, mask=row_ok)


@triton.jit
def normalize_kernel(
    w_ptr,        # W, (R, C), as R*C values
    s_ptr,        # s = W v, (R,)
    u_ptr,        # out: u = s / max(|s|, eps), (R,)
    sigma_ptr,    # out: sigma, one value
    w_sn_ptr,     # out: W / sigma; not written when SCALE is False
    R, C, eps,
    SCALE: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    s_norm, s_squared = _norm(s_ptr, R, eps, BLOCK)
    sigma = s_squared / s_norm
    # The first programs also cover u's R values (R <= R*C).
    tl.store(u_ptr + offsets, tl.load(s_ptr + offsets, mask=offsets < R, other=0.0) / s_norm, mask=offsets < R)
    if pid == 0:
        tl.store(sigma_ptr, sigma)
    if SCALE:
        ok = offsets < R * C
        tl.store(w_sn_ptr + offsets, tl.load(w_ptr + offsets, mask=ok, other=0.0) / sigma, mask=ok)


def power_iteration(launch, w, u, n_iterations, eps, scale=False, blocks=(32, 128), block=1024):
    """n_iterations steps from u; returns (u, v, sigma) and, with scale, W / sigma too."""
    xp = launch.xp
    rows, cols = w.shape
    block_r, block_c = blocks
    t, v = xp.empty(cols, dtype=w.dtype), xp.empty(cols, dtype=w.dtype)
    s, sigma = xp.empty(rows, dtype=w.dtype), xp.empty((), dtype=w.dtype)
    w_sn = xp.empty_like(w) if scale else w
    u = u.copy()
    for i in range(n_iterations):
        launch(launch.module.transposed_product_kernel, (triton.cdiv(cols, block_c),), w, u, t, rows, cols,
               BLOCK_R=block_r, BLOCK_C=block_c)
        launch(launch.module.product_kernel, (triton.cdiv(rows, block_r),), w, t, v, s, rows, cols, eps,
               BLOCK_R=block_r, BLOCK_C=block_c)
        last = i == n_iterations - 1
        programs = triton.cdiv(rows * cols if (scale and last) else rows, block)
        launch(launch.module.normalize_kernel, (programs,), w, s, u, sigma, w_sn, rows, cols, eps,
               SCALE=scale and last, BLOCK=block)
    return (u, v, sigma, w_sn) if scale else (u, v, sigma)

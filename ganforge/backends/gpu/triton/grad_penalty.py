"""WGAN-GP's gradient penalty, fused, in Triton.

    x_hat   = eps_i real + (1 - eps_i) fake                    one pass: interpolate_kernel
    |g_i|   = sqrt(sum_f g[i, f]^2)                            one pass: norms_kernel
    penalty = mean_i (|g_i| - target)^2                        one small program: penalty_kernel
    dP/dg   = gy 2 (|g_i| - target) / (N |g_i|) g[i, f]       one pass: backward_kernel

(one-sided: the excess |g_i| - target is clipped at 0). Eager code spends about six
kernels and three passes over g on the forward and as many on the backward; here g is
read once each way. Sums run in a fixed order (no atomics), so results repeat exactly.
The incoming gradient gy stays on the device: the backward never waits for the host.
"""
import triton
import triton.language as tl


@triton.jit
def interpolate_kernel(
    real_ptr, fake_ptr,  # (N, F) each
    eps_ptr,             # (N,): one mixing weight per sample
    out_ptr,             # out: (N, F)
    N, F,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offsets < N * F
    eps = tl.load(eps_ptr + offsets // F, mask=ok, other=0.0)
    real = tl.load(real_ptr + offsets, mask=ok, other=0.0)
    fake = tl.load(fake_ptr + offsets, mask=ok, other=0.0)
    tl.store(out_ptr + offsets, fake + eps * (real - fake), mask=ok)


@triton.jit
def norms_kernel(
    g_ptr,      # gradient, (N, F)
    norms_ptr,  # out: |g_i|, (N,)
    F,
    BLOCK: tl.constexpr,
):
    # One program per sample, walking its row.
    row = tl.program_id(0)
    squares = tl.zeros((BLOCK,), dtype=norms_ptr.dtype.element_ty)
    for f0 in range(0, F, BLOCK):
        f = f0 + tl.arange(0, BLOCK)
        g = tl.load(g_ptr + row * F + f, mask=f < F, other=0.0).to(norms_ptr.dtype.element_ty)
        squares += g * g
    tl.store(norms_ptr + row, tl.sqrt(tl.sum(squares, axis=0)))


@triton.jit
def _excess(norms, target, ONE_SIDED: tl.constexpr):
    excess = norms - target
    if ONE_SIDED:
        excess = tl.maximum(excess, 0.0)
    return excess


@triton.jit
def penalty_kernel(
    norms_ptr,    # |g_i|, (N,)
    penalty_ptr,  # out: one value
    N, target,
    ONE_SIDED: tl.constexpr, BLOCK: tl.constexpr,
):
    total = tl.zeros((BLOCK,), dtype=norms_ptr.dtype.element_ty)
    for i0 in range(0, N, BLOCK):
        i = i0 + tl.arange(0, BLOCK)
        excess = _excess(tl.load(norms_ptr + i, mask=i < N, other=target), target, ONE_SIDED)
        total += excess * excess
    tl.store(penalty_ptr, tl.sum(total, axis=0) / N)


@triton.jit
def backward_kernel(
    g_ptr,      # gradient, (N, F)
    norms_ptr,  # |g_i|, (N,)
    gy_ptr,     # the penalty's incoming gradient, one value
    out_ptr,    # out: dP/dg, (N, F)
    N, F, target,
    ONE_SIDED: tl.constexpr, BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offsets < N * F
    norms = tl.load(norms_ptr + offsets // F, mask=ok, other=1.0)
    # A zero gradient has no direction; its term is 0, as the limit along any direction.
    safe_norms = tl.where(norms == 0, 1.0, norms)
    scale = tl.load(gy_ptr) * 2.0 * _excess(norms, target, ONE_SIDED) / (N * safe_norms)
    g = tl.load(g_ptr + offsets, mask=ok, other=0.0)
    tl.store(out_ptr + offsets, (scale * g).to(out_ptr.dtype.element_ty), mask=ok)


def interpolate(launch, real, fake, eps, block=1024):
    n, features = real.shape[0], real.size // real.shape[0]
    out = launch.xp.empty_like(real)
    launch(launch.module.interpolate_kernel, (triton.cdiv(n * features, block),), real, fake, eps, out, n, features,
           BLOCK=block)
    return out


def penalty(launch, g, target, one_sided, block=1024):
    """(mean_i excess_i^2, |g_i|) for a (N, F) gradient; both in g's dtype."""
    n, features = g.shape
    norms = launch.xp.empty(n, dtype=g.dtype)
    value = launch.xp.empty((), dtype=g.dtype)
    launch(launch.module.norms_kernel, (n,), g, norms, features, BLOCK=block)
    launch(launch.module.penalty_kernel, (1,), norms, value, n, target, ONE_SIDED=one_sided, BLOCK=block)
    return value, norms


def backward(launch, g, norms, gy, target, one_sided, block=1024):
    n, features = g.shape
    out = launch.xp.empty_like(g)
    launch(launch.module.backward_kernel, (triton.cdiv(n * features, block),), g, norms, gy, out, n, features,
           target, ONE_SIDED=one_sided, BLOCK=block)
    return out

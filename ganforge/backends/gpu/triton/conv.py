"""Convolution as an implicit GEMM, in Triton: conv2d, conv_transpose2d and the weight
gradient, the three primitives every convolution's gradient is written with
(ganforge/ops/conv.py). A transposed convolution's backward is conv2d (input gradient)
and conv2d_weight_grad (weight gradient), so these three kernels serve it whole.

No column matrix is built: each program gathers its tile of the virtual im2col matrix
straight from the image and masks what falls into the padding. With k = (c, ky, kx) a
tap of the kernel and p = (oy, ox) an output position:

    conv2d              y[n, o, p]   = sum_k  x[n, c, oy*S - P + ky*D, ...]        * W[o, k]
    conv_transpose2d    y[n, o, p]   = sum_k  x[n, c, (oy + P - ky*D) / S, ...]    * W[c, o, ky, kx]
                                       (only taps where the division is exact and in range)
    conv2d_weight_grad  gW[o, k]     = sum_{n,p} gy[n, o, p] * x[n, c, oy*S - P + ky*D, ...]

All arrays are contiguous NCHW. Groups are the grid's third axis. Accumulation is in the
output's precision (float32 or float64); float32 products use TF32 tensor cores unless
`precision="ieee"` is asked for, which ganforge's registry does unless TF32 is turned on
(backend.set_tf32, GANFORGE_TF32=1).
"""
import triton
import triton.language as tl


@triton.jit
def _tap(k, KH: tl.constexpr, KW: tl.constexpr):
    """A flat index into (c, ky, kx), the layout of a weight's trailing three axes."""
    return k // (KH * KW), (k // KW) % KH, k % KW


@triton.jit
def _output_pixels(pid_m, N, OH, OW, BLOCK_M: tl.constexpr):
    """This program's rows of the GEMM: output pixels (n, oy, ox), and which exist."""
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n, position = rows // (OH * OW), rows % (OH * OW)
    return n, position, position // OW, position % OW, rows < N * OH * OW


@triton.jit
def _image_tile(x_ptr, n, channel, iy, ix, C, H, W, mask):
    """x[n, channel, iy, ix] for broadcast index tiles; 0 outside the image or the mask."""
    inside = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    return tl.load(x_ptr + ((n * C + channel) * H + iy) * W + ix, mask=mask & inside, other=0.0)


@triton.jit
def conv2d_kernel(
    x_ptr,  # input, (N, C, H, W)
    w_ptr,  # weight, (O, C/G, KH, KW)
    y_ptr,  # output, (N, O, OH, OW)
    N, C, H, W, O, OH, OW,
    SH, SW, PH, PW, DH, DW, GROUPS,
    KH: tl.constexpr, KW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_m, pid_n, group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    c_per_group, o_per_group = C // GROUPS, O // GROUPS
    taps = c_per_group * KH * KW
    # Rows of the GEMM are output pixels (n, oy, ox); columns are output channels.
    n, position, oy, ox, row_ok = _output_pixels(pid_m, N, OH, OW, BLOCK_M)
    outs = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    out_ok = outs < o_per_group
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=y_ptr.dtype.element_ty)
    for k0 in range(0, taps, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        c, ky, kx = _tap(k, KH, KW)
        k_ok = k < taps
        a = _image_tile(x_ptr, n[:, None], group * c_per_group + c[None, :], oy[:, None] * SH - PH + ky[None, :] * DH,
                        ox[:, None] * SW - PW + kx[None, :] * DW, C, H, W, row_ok[:, None] & k_ok[None, :])
        b = tl.load(w_ptr + (group * o_per_group + outs[None, :]) * taps + k[:, None],
                    mask=k_ok[:, None] & out_ok[None, :], other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION)
    y = y_ptr + (n[:, None] * O + group * o_per_group + outs[None, :]) * (OH * OW) + position[:, None]
    tl.store(y, acc, mask=row_ok[:, None] & out_ok[None, :])


@triton.jit
def conv_transpose2d_kernel(
    x_ptr,  # input, (N, C, H, W)
    w_ptr,  # weight, (C, O/G, KH, KW)
    y_ptr,  # output, (N, O, OH, OW)
    N, C, H, W, O, OH, OW,
    SH, SW, PH, PW, DH, DW, GROUPS,
    KH: tl.constexpr, KW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    pid_m, pid_n, group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    c_per_group, o_per_group = C // GROUPS, O // GROUPS
    taps = c_per_group * KH * KW
    n, position, oy, ox, row_ok = _output_pixels(pid_m, N, OH, OW, BLOCK_M)
    outs = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    out_ok = outs < o_per_group
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=y_ptr.dtype.element_ty)
    for k0 in range(0, taps, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        c, ky, kx = _tap(k, KH, KW)
        # Output pixel oy receives tap ky from input row iy when oy = iy*S - P + ky*D.
        ny = oy[:, None] + PH - ky[None, :] * DH
        nx = ox[:, None] + PW - kx[None, :] * DW
        exact = (ny >= 0) & (nx >= 0) & (ny % SH == 0) & (nx % SW == 0)
        k_ok = k < taps
        a = _image_tile(x_ptr, n[:, None], group * c_per_group + c[None, :], ny // SH, nx // SW, C, H, W,
                        row_ok[:, None] & k_ok[None, :] & exact)
        b = tl.load(w_ptr + ((group * c_per_group + c[:, None]) * o_per_group + outs[None, :]) * (KH * KW)
                    + (ky * KW + kx)[:, None],
                    mask=k_ok[:, None] & out_ok[None, :], other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION)
    y = y_ptr + (n[:, None] * O + group * o_per_group + outs[None, :]) * (OH * OW) + position[:, None]
    tl.store(y, acc, mask=row_ok[:, None] & out_ok[None, :])


@triton.jit
def conv_transpose2d_phase_kernel(
    x_ptr,  # input, (N, C, H, W)
    w_ptr,  # weight, (C, O/G, KH, KW)
    y_ptr,  # output, (N, O, OH, OW)
    N, C, H, W, O, OH, OW,
    SH, SW, PH, PW, GROUPS,
    KH: tl.constexpr, KW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    # Without dilation, output row oy takes only the taps ky = (oy + P) mod S + j*S: the
    # kernel above masks the other taps away and so multiplies S_h*S_w times too much (4x
    # at stride 2). Here each program works on one phase (fy, fx) = ((oy + P) mod S, ...)
    # of the output, whose rows all share the same taps: a dense GEMM with nothing masked
    # but the image's edges.
    pid_m, pid_n, pid_z = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    group, phase = pid_z // (SH * SW), pid_z % (SH * SW)
    fy, fx = phase // SW, phase % SW
    c_per_group, o_per_group = C // GROUPS, O // GROUPS
    # This phase's output rows oy = oy0 + a*S (a < rows_y), and its taps ky = fy + j*S (j < taps_y).
    oy0, ox0 = ((fy - PH) % SH + SH) % SH, ((fx - PW) % SW + SW) % SW
    rows_y, rows_x = tl.maximum(OH - oy0 + SH - 1, 0) // SH, tl.maximum(OW - ox0 + SW - 1, 0) // SW
    taps_y, taps_x = tl.maximum(KH - fy + SH - 1, 0) // SH, tl.maximum(KW - fx + SW - 1, 0) // SW
    taps = c_per_group * taps_y * taps_x
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    outs = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    per_sample = tl.maximum(rows_y * rows_x, 1)
    n, cell = rows // per_sample, rows % per_sample
    oy = oy0 + (cell // tl.maximum(rows_x, 1)) * SH
    ox = ox0 + (cell % tl.maximum(rows_x, 1)) * SW
    row_ok, out_ok = rows < N * rows_y * rows_x, outs < o_per_group
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=y_ptr.dtype.element_ty)
    for k0 in range(0, taps, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        c, jy, jx = k // (taps_y * taps_x), (k // taps_x) % taps_y, k % taps_x
        # oy + P - ky is a multiple of S by construction: the input row is that over S.
        k_ok = k < taps
        iy = (oy[:, None] + PH - fy) // SH - jy[None, :]
        ix = (ox[:, None] + PW - fx) // SW - jx[None, :]
        a = _image_tile(x_ptr, n[:, None], group * c_per_group + c[None, :], iy, ix, C, H, W,
                        row_ok[:, None] & k_ok[None, :])
        b = tl.load(w_ptr + ((group * c_per_group + c[:, None]) * o_per_group + outs[None, :]) * (KH * KW)
                    + ((fy + jy * SH) * KW + fx + jx * SW)[:, None],
                    mask=k_ok[:, None] & out_ok[None, :], other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION)
    y = y_ptr + ((n[:, None] * O + group * o_per_group + outs[None, :]) * OH + oy[:, None]) * OW + ox[:, None]
    tl.store(y, acc, mask=row_ok[:, None] & out_ok[None, :])


@triton.jit
def conv2d_weight_grad_kernel(
    x_ptr,   # conv2d's input, (N, C, H, W)
    gy_ptr,  # gradient of conv2d's output, (N, O, OH, OW)
    gw_ptr,  # weight gradient, (O, C/G, KH, KW); zeroed beforehand when SPLIT > 1
    N, C, H, W, O, OH, OW,
    SH, SW, PH, PW, DH, DW, GROUPS, SPLIT,
    KH: tl.constexpr, KW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    # The reduction runs over every (sample, position): long and thin. SPLIT programs
    # share it, each adding its part into gW, so that a small weight still fills the GPU.
    pid_m, pid_n, pid_z = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    group, part = pid_z // SPLIT, pid_z % SPLIT
    c_per_group, o_per_group = C // GROUPS, O // GROUPS
    taps = c_per_group * KH * KW
    reduction = N * OH * OW
    outs = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    k = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c, ky, kx = _tap(k, KH, KW)
    out_ok, k_ok = outs < o_per_group, k < taps
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=gw_ptr.dtype.element_ty)
    chunks = tl.cdiv(reduction, BLOCK_K)
    for chunk in range(part * chunks // SPLIT, (part + 1) * chunks // SPLIT):
        r = chunk * BLOCK_K + tl.arange(0, BLOCK_K)
        n, position = r // (OH * OW), r % (OH * OW)
        oy, ox = position // OW, position % OW
        r_ok = r < reduction
        a = tl.load(gy_ptr + (n[None, :] * O + group * o_per_group + outs[:, None]) * (OH * OW) + position[None, :],
                    mask=out_ok[:, None] & r_ok[None, :], other=0.0)
        b = _image_tile(x_ptr, n[:, None], group * c_per_group + c[None, :], oy[:, None] * SH - PH + ky[None, :] * DH,
                        ox[:, None] * SW - PW + kx[None, :] * DW, C, H, W, r_ok[:, None] & k_ok[None, :])
        acc += tl.dot(a, b, input_precision=PRECISION)
    gw = gw_ptr + (group * o_per_group + outs[:, None]) * taps + k[None, :]
    if SPLIT > 1:
        tl.atomic_add(gw, acc, mask=out_ok[:, None] & k_ok[None, :])
    else:
        tl.store(gw, acc, mask=out_ok[:, None] & k_ok[None, :])


# --- the wrappers: check, allocate, launch --------------------------------------------

def _precision(dtype, precision):
    return "ieee" if dtype.itemsize == 8 else precision


def _geometry_args(stride, padding, dilation, groups):
    return (*stride, *padding, *dilation, groups)


# (BLOCK_M, BLOCK_N, BLOCK_K) tiles and the warps that run one. Measured on an H100 at the
# ConvT layers of dcgan28/dcgan64 (docs/benchmarks.md): 128x128 tiles on 8 warps ran those
# layers' GEMMs 1.3-1.7x faster than 64x64 tiles on 4, once both sides of the GEMM are
# wider than 64, the reduction is at least 4 steps of BLOCK_K and the large tiles still
# make about a wave of programs (132 SMs). Otherwise the small tiles were as fast or faster
# (64 output channels, a 1-channel image's 16 taps, dcgan28 G1's 64-sample weight gradient).
SMALL_TILES = ((64, 64, 32), 4)
LARGE_TILES = ((128, 128, 32), 8)
WAVE = 96


def _tiles(rows, cols, reduction, parallel=1, blocks=None):
    """The tile shape and warps for a (rows x cols) output GEMM summing over `reduction`,
    run `parallel` times side by side (groups, phases, split-reduction parts); `blocks`
    forces a tile shape."""
    if blocks is not None:
        return tuple(blocks), SMALL_TILES[1]
    (bm, bn, bk), _ = LARGE_TILES
    programs = triton.cdiv(rows, bm) * triton.cdiv(cols, bn) * parallel
    wide = rows > 64 and cols > 64 and reduction >= 4 * bk
    return LARGE_TILES if wide and programs >= WAVE else SMALL_TILES


def conv2d(launch, x, w, out_size, stride, padding, dilation, groups, precision="tf32", blocks=None):
    """y = conv2d(x, w) for contiguous x (N, C, H, W) and w (O, C/G, KH, KW)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = out_size
    y = launch.xp.empty((n, o, oh, ow), dtype=x.dtype)
    (bm, bn, bk), warps = _tiles(n * oh * ow, o // groups, c // groups * kh * kw, groups, blocks)
    grid = (triton.cdiv(n * oh * ow, bm), triton.cdiv(o // groups, bn), groups)
    launch(launch.module.conv2d_kernel, grid, x, w, y, n, c, h, wd, o, oh, ow,
           *_geometry_args(stride, padding, dilation, groups), KH=kh, KW=kw,
           BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRECISION=_precision(x.dtype, precision), num_warps=warps)
    return y


def conv_transpose2d(launch, x, w, out_size, stride, padding, dilation, groups, precision="tf32", blocks=None):
    """y = conv_transpose2d(x, w) for contiguous x (N, C, H, W) and w (C, O/G, KH, KW).
    Without dilation, one dense GEMM per output phase; with it, the masked kernel."""
    n, c, h, wd = x.shape
    _, o_per_group, kh, kw = w.shape
    oh, ow = out_size
    o = o_per_group * groups
    y = launch.xp.empty((n, o, oh, ow), dtype=x.dtype)
    if tuple(dilation) == (1, 1):
        (sh, sw), phases = stride, stride[0] * stride[1]
        rows = n * triton.cdiv(oh, sh) * triton.cdiv(ow, sw)
        taps = c // groups * triton.cdiv(kh, sh) * triton.cdiv(kw, sw)
        (bm, bn, bk), warps = _tiles(rows, o_per_group, taps, groups * phases, blocks)
        grid = (triton.cdiv(rows, bm), triton.cdiv(o_per_group, bn), groups * phases)
        launch(launch.module.conv_transpose2d_phase_kernel, grid, x, w, y, n, c, h, wd, o, oh, ow, *stride, *padding,
               groups, KH=kh, KW=kw, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRECISION=_precision(x.dtype, precision),
               num_warps=warps)
        return y
    (bm, bn, bk), warps = _tiles(n * oh * ow, o_per_group, c // groups * kh * kw, groups, blocks)
    grid = (triton.cdiv(n * oh * ow, bm), triton.cdiv(o_per_group, bn), groups)
    launch(launch.module.conv_transpose2d_kernel, grid, x, w, y, n, c, h, wd, o, oh, ow,
           *_geometry_args(stride, padding, dilation, groups), KH=kh, KW=kw,
           BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRECISION=_precision(x.dtype, precision), num_warps=warps)
    return y


def conv2d_weight_grad(launch, x, gy, weight_shape, stride, padding, dilation, groups, precision="tf32",
                       blocks=None, split=None, target_programs=264):
    """gW of conv2d for contiguous x (N, C, H, W) and gy (N, O, OH, OW)."""
    n, c, h, wd = x.shape
    o, c_per_group, kh, kw = weight_shape
    oh, ow = gy.shape[2:]
    # The reduction is split until the GPU is full, so the programs are always about a wave.
    (bm, bn, bk), warps = _tiles(o // groups, c_per_group * kh * kw, n * oh * ow, target_programs, blocks)
    tiles = triton.cdiv(o // groups, bm) * triton.cdiv(c_per_group * kh * kw, bn) * groups
    chunks = triton.cdiv(n * oh * ow, bk)
    if split is None:  # enough programs to fill the GPU (2 per SM on an H100), at least 4 chunks each
        split = max(1, min(target_programs // tiles, chunks // 4))
    gw = (launch.xp.zeros if split > 1 else launch.xp.empty)(weight_shape, dtype=x.dtype)
    grid = (triton.cdiv(o // groups, bm), triton.cdiv(c_per_group * kh * kw, bn), groups * split)
    launch(launch.module.conv2d_weight_grad_kernel, grid, x, gy, gw, n, c, h, wd, o, oh, ow,
           *_geometry_args(stride, padding, dilation, groups), split, KH=kh, KW=kw,
           BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRECISION=_precision(x.dtype, precision), num_warps=warps)
    return gw

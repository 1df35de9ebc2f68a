"""Stride-1 convolutions with far fewer output channels than input channels: the last
layer of an image generator (64 channels -> RGB through a 7x7 window, CycleGAN's and
pix2pix's), and its input gradient, on NumPy's BLAS (float64, or a CPU without AVX-512).
float32 on AVX-512 runs the forward as the transposed convolution of the flipped window
and the weight gradient with gy unfolded, both on the gathered GEMM (gathered.py), which
reads the shifted pixels in place: SRGAN's 9x9 layer at 96 px, batch 16, 29 ms forward
and 29 for the weight gradient, against 80 and 95 here.

Unfolding the input (im2col) would copy each input pixel KH*KW times, 49 times for a 7x7
window, to feed a GEMM with only O rows. Here nothing is unfolded:
- forward: one GEMM gives every tap's contribution at every input pixel, T = W_taps @ x
  with W_taps (O*KH*KW, C), and the output is the sum of the KH*KW tap planes, each
  shifted by its tap's offset (O*KH*KW planes of the image's size instead of C*KH*KW);
- weight gradient: flattening the padded image row by row, tap (i, j) reads the input
  s = i*Wp + j pixels after the output pixel it serves, so gW[o, c, i, j] = sum over q of
  x_flat[c, q] gy_frame[o, q - s] (gy laid in rows of the padded width, zero in the
  columns the output does not reach). Laying gy shifted by every tap side by side,
  (Wp*Hp, O*KH*KW) per sample (a copy of only O planes per tap), makes that one GEMM of
  C rows per sample (one product per tap and sample, O rows each, took 7x as long on
  SRGAN's 64 -> RGB 9x9 layer);
- input gradient: a stride-1 transposed convolution is the convolution of its input,
  padded by KH-1-P, with the window flipped and the channel axes swapped; that one has
  few input channels, which the other routes handle well.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

FEW = 4  # at most 1/FEW as many output channels as input channels


def applies(out_channels, in_channels, kernel_size, stride, dilation, groups, padding=(0, 0)):
    return (groups == 1 and stride == (1, 1) and dilation == (1, 1) and kernel_size != (1, 1)
            and out_channels * FEW <= in_channels and all(p < k for p, k in zip(padding, kernel_size)))


def _padded(x, padding):
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x


# The tap planes of a few samples at a time, at most this many bytes of them: the whole
# batch's are 49-81 planes per output channel and sample (SRGAN's 9x9 layer at 96 px,
# batch 16: 143 MB a call, above any threshold of glibc's heap, so fresh pages from the
# system every time). In chunks SRGAN's float32 step at 96 px, when it ran here, took 0.94
# of its time with glibc's default thresholds (a library user's) and 1.009 with
# `hold_freed_memory`'s (the command line's and the benchmarks'): medians of six blocks.
TAPS_CHUNK_BYTES = 8 << 20


def conv2d(x, w, padding):
    o, c, kh, kw = w.shape
    x = _padded(x, padding)
    n, _, hp, wp = x.shape
    oh, ow = hp - kh + 1, wp - kw + 1
    w_taps = np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(o * kh * kw, c)
    y = np.zeros((n, o, oh, ow), dtype=np.result_type(x, w))
    per_chunk = max(1, TAPS_CHUNK_BYTES // (w_taps.shape[0] * hp * wp * y.itemsize))
    for start in range(0, n, per_chunk):
        samples = x[start:start + per_chunk]
        taps = w_taps @ samples.reshape(len(samples), c, hp * wp)
        taps = taps.reshape(len(samples), o, kh, kw, hp, wp)
        out = y[start:start + per_chunk]
        for i in range(kh):
            for j in range(kw):
                out += taps[:, :, i, j, i:i + oh, j:j + ow]
    return y


def conv2d_weight_grad(x, gy, kernel_size, padding):
    kh, kw = kernel_size
    x = _padded(x, padding)
    n, c, hp, wp = x.shape
    o, oh, ow = gy.shape[1:]
    plane = hp * wp
    reach = (kh - 1) * wp + kw - 1  # the largest tap offset, in the padded image's rows
    # gy in rows as wide as the padded image, with `reach` zeros ahead of each plane
    frames = np.zeros((n, o, reach + plane), dtype=gy.dtype)
    frames[:, :, reach:reach + oh * wp].reshape(n, o, oh, wp)[..., :ow] = gy
    x_flat = np.ascontiguousarray(x).reshape(n, c, plane)
    gw = np.zeros((c, o * kh * kw), dtype=np.result_type(x, gy))
    step = frames.itemsize
    for sample in range(n):
        frame = frames[sample]
        # shifted[q, o, i, j] = frame[o, q - (i Wp + j)]: gy moved by every tap, side by side
        shifted = as_strided(frame[:, reach:], (plane, o, kh, kw), (step, frame.strides[0], -wp * step, -step))
        gw += x_flat[sample] @ np.ascontiguousarray(shifted).reshape(plane, o * kh * kw)
    return np.ascontiguousarray(gw.reshape(c, o, kh, kw).transpose(1, 0, 2, 3))


def as_convolution(w):
    """(C, O, KH, KW) weights of a transposed convolution as (O, C, KH, KW) weights of the
    equivalent stride-1 convolution: flipped and the channel axes swapped."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def full_padding(kernel_size, padding):
    return tuple(k - 1 - p for k, p in zip(kernel_size, padding))

"""Stride-1 convolutions with far fewer output channels than input channels: the last
layer of an image generator (64 channels -> RGB through a 7x7 window, CycleGAN's and
pix2pix's), and its input gradient.

Unfolding the input (im2col) would copy each input pixel KH*KW times, 49 times for a 7x7
window, to feed a GEMM with only O rows. Here nothing is unfolded:
- forward: one GEMM gives every tap's contribution at every input pixel, T = W_taps @ x
  with W_taps (O*KH*KW, C), and the output is the sum of the KH*KW tap planes, each
  shifted by its tap's offset (O*KH*KW planes of the image's size instead of C*KH*KW);
- weight gradient: flattening the padded image row by row, the window at tap (i, j) is
  x_flat[:, s:s+L] with s = i*Wp + j (the rows in between hold the columns the output
  does not reach, where gy is zero), so gW[:, :, i, j] = gy_frame @ x_flat[:, s:s+L]^T is
  one GEMM on a strided view, per tap;
- input gradient: a stride-1 transposed convolution is the convolution of its input,
  padded by KH-1-P, with the window flipped and the channel axes swapped; that one has
  few input channels, which the other routes handle well.
"""
import numpy as np

FEW = 4  # at most 1/FEW as many output channels as input channels


def applies(out_channels, in_channels, kernel_size, stride, dilation, groups, padding=(0, 0)):
    return (groups == 1 and stride == (1, 1) and dilation == (1, 1) and kernel_size != (1, 1)
            and out_channels * FEW <= in_channels and all(p < k for p, k in zip(padding, kernel_size)))


def _padded(x, padding):
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x


def conv2d(x, w, padding):
    o, c, kh, kw = w.shape
    x = _padded(x, padding)
    n, _, hp, wp = x.shape
    oh, ow = hp - kh + 1, wp - kw + 1
    w_taps = np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(o * kh * kw, c)
    taps = np.matmul(w_taps, x.reshape(n, c, hp * wp)).reshape(n, o, kh, kw, hp, wp)
    y = np.zeros((n, o, oh, ow), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            y += taps[:, :, i, j, i:i + oh, j:j + ow]
    return y


def conv2d_weight_grad(x, gy, kernel_size, padding):
    kh, kw = kernel_size
    x = _padded(x, padding)
    n, c, hp, wp = x.shape
    o, oh, ow = gy.shape[1:]
    length = (oh - 1) * wp + ow  # from the first output pixel to the last, in the padded image's rows
    frame = np.zeros((n, o, oh, wp), dtype=gy.dtype)  # gy in rows as wide as the padded image
    frame[..., :ow] = gy
    frame = frame.reshape(n, o, oh * wp)[..., :length]
    x_flat = np.ascontiguousarray(x).reshape(n, c, hp * wp)
    gw = np.zeros((o, c, kh, kw), dtype=np.result_type(x, gy))
    for i in range(kh):
        for j in range(kw):
            start = i * wp + j
            for sample in range(n):  # the window is a strided view, which BLAS reads as it is
                gw[:, :, i, j] += frame[sample] @ x_flat[sample, :, start:start + length].T
    return gw


def as_convolution(w):
    """(C, O, KH, KW) weights of a transposed convolution as (O, C, KH, KW) weights of the
    equivalent stride-1 convolution: flipped and the channel axes swapped."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def full_padding(kernel_size, padding):
    return tuple(k - 1 - p for k, p in zip(kernel_size, padding))

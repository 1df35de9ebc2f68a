"""The checklist: what a PyTorch GAN script writes, as ganforge must take it. Each line is
an idiom from a real script; a regression that breaks one fails here by name. Values are
checked against NumPy (PyTorch itself is compared in test_torch_parity.py)."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F
from ganforge import nn

A = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7 - 1.5


def x():
    return gf.tensor(A, requires_grad=True)


IDIOMS = {
    # reductions, with PyTorch's names
    "x.mean(dim=1)": (lambda: x().mean(dim=1), A.mean(axis=1)),
    "x.sum(1, keepdim=True)": (lambda: x().sum(1, keepdim=True), A.sum(1, keepdims=True)),
    "x.std(dim=2)  (unbiased, as PyTorch)": (lambda: x().std(dim=2), A.std(axis=2, ddof=1)),
    "x.var(dim=2, unbiased=False)": (lambda: x().var(dim=2, unbiased=False), A.var(axis=2)),
    "x.max(dim=1).values": (lambda: x().max(dim=1).values, A.max(axis=1)),
    "x.max(dim=1)[1]": (lambda: x().max(dim=1)[1], A.argmax(axis=1)),
    "values, indices = x.min(2)": (lambda: x().min(2)[0], A.min(axis=2)),
    "x.max()": (lambda: x().max(), A.max()),
    "gf.max(x, y)": (lambda: gf.max(x(), gf.zeros(2, 3, 4)), np.maximum(A, 0)),
    "x.amax(dim=(1, 2))": (lambda: x().amax(dim=(1, 2)), A.max(axis=(1, 2))),
    "x.argmax(dim=1, keepdim=True)": (lambda: x().argmax(dim=1, keepdim=True), A.argmax(1)[:, None]),
    "x.norm(dim=1)": (lambda: x().norm(dim=1), np.linalg.norm(A, axis=1)),
    "x.logsumexp(dim=1)": (lambda: x().logsumexp(dim=1), np.log(np.exp(A).sum(1))),
    "F.softmax(x, dim=1)": (lambda: F.softmax(x(), dim=1), np.exp(A) / np.exp(A).sum(1, keepdims=True)),
    "x.log_softmax(1)": (lambda: x().log_softmax(1), A - np.log(np.exp(A).sum(1, keepdims=True))),
    "F.normalize(x, dim=1)": (lambda: F.normalize(x(), dim=1), A / np.linalg.norm(A, axis=1, keepdims=True)),
    # sizes
    "x.size(0)": (lambda: x().size(0), 2),
    "x.size(-1)": (lambda: x().size(-1), 4),
    "x.size()": (lambda: x().size(), (2, 3, 4)),
    "x.numel()": (lambda: x().numel(), 24),
    "x.dim()": (lambda: x().dim(), 3),
    # method forms
    "x.mul(2)": (lambda: x().mul(2), A * 2),
    "x.add(1)": (lambda: x().add(1), A + 1),
    "x.add(y, alpha=2)": (lambda: x().add(gf.ones(4), alpha=2), A + 2),
    "x.sub(1)": (lambda: x().sub(1), A - 1),
    "x.div(2)": (lambda: x().div(2), A / 2),
    "x.neg()": (lambda: x().neg(), -A),
    "x.pow(2)": (lambda: x().pow(2), A ** 2),
    "x.view(2, -1)": (lambda: x().view(2, -1), A.reshape(2, -1)),
    "x.view(x.size(0), -1)": (lambda: (lambda t: t.view(t.size(0), -1))(x()), A.reshape(2, -1)),
    "x.chunk(2, 1)[1]": (lambda: x().chunk(2, 1)[1], A[:, 2:]),
    "x.chunk(2, dim=2)[0]": (lambda: x().chunk(2, dim=2)[0], A[:, :, :2]),
    "x.split(1, dim=1)[2]": (lambda: x().split(1, dim=1)[2], A[:, 2:]),
    "x.repeat(1, 2, 1)": (lambda: x().repeat(1, 2, 1), np.tile(A, (1, 2, 1))),
    "x[:, :1].expand(-1, 3, -1)": (lambda: x()[:, :1].expand(-1, 3, -1), np.broadcast_to(A[:, :1], A.shape)),
    "x.unsqueeze(1).squeeze(dim=1)": (lambda: x().unsqueeze(1).squeeze(dim=1), A),
    "x.permute(0, 2, 1)": (lambda: x().permute(0, 2, 1), A.transpose(0, 2, 1)),
    "x.transpose(1, 2)": (lambda: x().transpose(1, 2), A.transpose(0, 2, 1)),
    "x.flatten(1)": (lambda: x().flatten(1), A.reshape(2, -1)),
    "x.clamp(min=0)": (lambda: x().clamp(min=0), np.maximum(A, 0)),
    "x.detach().cpu().numpy()": (lambda: x().detach().cpu().numpy(), A),
    # building tensors
    "gf.cat([a, b], dim=1)": (lambda: gf.cat([x(), x()], dim=1), np.concatenate([A, A], 1)),
    "gf.stack([a, b], dim=0)": (lambda: gf.stack([x(), x()], dim=0), np.stack([A, A])),
    "gf.zeros_like(x)": (lambda: gf.zeros_like(x()), np.zeros_like(A)),
    "gf.ones_like(x)": (lambda: gf.ones_like(x()), np.ones_like(A)),
    "gf.full_like(x, 0.9)": (lambda: gf.full_like(x(), 0.9), np.full_like(A, 0.9)),
    "gf.randn_like(x).shape": (lambda: gf.randn_like(x()).shape, A.shape),
    "gf.rand_like(x).dtype": (lambda: gf.rand_like(x()).dtype, A.dtype),
    # layers and functions
    "F.pad(x, (1, 1, 1, 1), mode='reflect')": (lambda: F.pad(x()[None], (1, 1, 1, 1), mode="reflect"),
                                               np.pad(A[None], ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")),
    "F.pad(x, (0, 2))": (lambda: F.pad(x(), (0, 2)), np.pad(A, ((0, 0), (0, 0), (0, 2)))),
    "F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False).shape": (
        lambda: F.interpolate(x()[None], scale_factor=2, mode="bilinear", align_corners=False).shape,
        (1, 2, 6, 8)),
    "nn.ReLU(inplace=True)": (lambda: nn.ReLU(inplace=True)(x()), np.maximum(A, 0)),
    "nn.LeakyReLU(0.2, inplace=True)": (lambda: nn.LeakyReLU(0.2, inplace=True)(x()), np.where(A > 0, A, 0.2 * A)),
    "nn.Dropout(0.3, inplace=True).eval()": (lambda: nn.Dropout(0.3, inplace=True).eval()(x()), A),
    "nn.Identity()": (lambda: nn.Identity(54, unused="ignored")(x()), A),
    "nn.MaxPool2d(2)": (lambda: nn.MaxPool2d(2)(x()[None]), A[None, :, :2].reshape(1, 2, 1, 2, 2, 2).max(axis=(3, 5))),
    "F.max_pool2d(x, 2)": (lambda: F.max_pool2d(x()[None], 2), A[None, :, :2].reshape(1, 2, 1, 2, 2, 2).max(axis=(3, 5))),
    "nn.AdaptiveAvgPool2d(1)": (lambda: nn.AdaptiveAvgPool2d(1)(x()[None]), A[None].mean(axis=(2, 3),
                                                                                         keepdims=True)),
    "F.adaptive_avg_pool2d(x, 1)": (lambda: F.adaptive_avg_pool2d(x()[None], 1), A[None].mean(axis=(2, 3),
                                                                                              keepdims=True)),
    "nn.GroupNorm(1, 2)": (lambda: nn.GroupNorm(1, 2)(x()[None]),
                           (A[None] - A.mean()) / np.sqrt(A.var() + 1e-5)),
    "nn.PReLU()": (lambda: nn.PReLU()(x()), np.where(A > 0, A, 0.25 * A)),
    "nn.Flatten()": (lambda: nn.Flatten()(x()), A.reshape(2, -1)),
    "nn.Unflatten(1, (3, 4))": (lambda: nn.Unflatten(1, (3, 4))(x().flatten(1)), A),
    "nn.Softmax(dim=1)": (lambda: nn.Softmax(dim=1)(x()), np.exp(A) / np.exp(A).sum(1, keepdims=True)),
    "nn.utils.spectral_norm(nn.Linear(4, 2)).weight_orig.shape": (
        lambda: nn.utils.spectral_norm(nn.Linear(4, 2)).weight_orig.shape, (2, 4)),
    "nn.utils.remove_spectral_norm(...)": (
        lambda: sorted(nn.utils.remove_spectral_norm(nn.utils.spectral_norm(nn.Linear(4, 2))).state_dict()),
        ["bias", "weight"]),
    "gf.optim.lr_scheduler.StepLR": (lambda: gf.optim.lr_scheduler.StepLR(
        gf.optim.Adam([nn.Parameter(np.zeros(1))], lr=0.1), 1, gamma=0.5).get_last_lr(), [0.1]),
}


@pytest.mark.parametrize("idiom", list(IDIOMS))
def test_a_pytorch_idiom_works(idiom):
    run, expected = IDIOMS[idiom]
    got = run()
    if isinstance(got, (gf.Tensor, np.ndarray)):
        np.testing.assert_allclose(got.numpy() if isinstance(got, gf.Tensor) else got, expected, rtol=1e-5, atol=1e-6, err_msg=idiom)
    else:
        assert got == expected, idiom


def test_gradients_flow_through_the_pytorch_spellings():
    t = x()
    loss = t.mean(dim=1).sum() + t.max(dim=2).values.sum() + F.softmax(t, dim=1)[:, 0].sum() + t.chunk(2, 1)[0].sum()
    loss.backward()
    expected = np.full(A.shape, 1 / 3) + (A == A.max(axis=2, keepdims=True)) + np.concatenate(
        [np.ones((2, 2, 4)), np.zeros((2, 1, 4))], axis=1)
    soft = np.exp(A) / np.exp(A).sum(1, keepdims=True)
    expected += soft * ((np.arange(3) == 0)[None, :, None] - soft[:, :1])
    np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_both_spellings_at_once_is_an_error_that_names_them():
    with pytest.raises(TypeError, match="both dim= and axis="):
        x().sum(dim=1, axis=1)


def test_bad_pytorch_arguments_get_one_line_errors():
    with pytest.raises(ValueError, match="even length"):
        F.pad(x(), (1, 2, 3))
    with pytest.raises(ValueError, match="align_corners is for mode='bilinear'"):
        F.interpolate(x()[None], scale_factor=2, align_corners=False)
    with pytest.raises(TypeError, match="use amax/amin"):
        x().max(dim=(1, 2))
    with pytest.raises(ValueError, match="divisible by num_groups"):
        nn.GroupNorm(2, 3)
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(x()[None], 2, padding=2)
    with pytest.raises(ValueError, match="not applied"):
        nn.utils.remove_spectral_norm(nn.Linear(2, 2))

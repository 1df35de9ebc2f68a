"""Where PyTorch CPU is installed, compare with it: same inputs, same outputs and gradients.
These skip cleanly without PyTorch (it is a test reference, never a dependency)."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F

torch = pytest.importorskip("torch", reason="PyTorch CPU is the reference here: pip install torch==2.13.0")
TF = torch.nn.functional

CONV_CASES = [
    # (input shape, weight shape, keyword arguments): the dcgan28 layers and awkward ones
    ((3, 1, 28, 28), (64, 1, 4, 4), dict(stride=2, padding=1)),
    ((3, 64, 14, 14), (128, 64, 4, 4), dict(stride=2, padding=1)),
    ((3, 128, 7, 7), (1, 128, 7, 7), dict()),
    ((2, 6, 9, 7), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
]
TRANSPOSED_CASES = [
    ((3, 100, 1, 1), (100, 256, 7, 7), dict()),
    ((3, 256, 7, 7), (256, 128, 4, 4), dict(stride=2, padding=1)),
    ((3, 128, 14, 14), (128, 1, 4, 4), dict(stride=2, padding=1)),
    ((2, 4, 5, 3), (4, 3, 3, 2), dict(stride=(3, 2), padding=(1, 0), output_padding=(2, 1), dilation=(1, 2),
                                      groups=2)),
]


def both(shape, rng):
    a = rng.standard_normal(shape)
    return gf.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def assert_close(ours, theirs, what):
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-9, atol=1e-10, err_msg=what)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("case", range(4))
def test_convolutions_match_pytorch_to_second_order(transposed, case):
    x_shape, w_shape, kwargs = (TRANSPOSED_CASES if transposed else CONV_CASES)[case]
    rng = np.random.default_rng(case)
    (x, tx), (w, tw), (b, tb) = both(x_shape, rng), both(w_shape, rng), \
        both((w_shape[1] * kwargs.get("groups", 1) if transposed else w_shape[0],), rng)
    ours = (F.conv_transpose2d if transposed else F.conv2d)(x, w, b, **kwargs)
    theirs = (TF.conv_transpose2d if transposed else TF.conv2d)(tx, tw, tb, **kwargs)
    assert_close(ours, theirs, "forward")
    gy = rng.standard_normal(ours.shape)
    grads = gf.grad(ours, [x, w, b], gf.tensor(gy), create_graph=True)
    tgrads = torch.autograd.grad(theirs, [tx, tw, tb], torch.tensor(gy), create_graph=True)
    for g, tg, name in zip(grads, tgrads, "xwb"):
        assert_close(g, tg, f"d/d{name}")
    # second order: d/dx of a function of the first gradients
    (gx2,) = gf.grad((grads[0] ** 2).sum() + (grads[1] ** 2).sum(), [x])
    (tgx2,) = torch.autograd.grad((tgrads[0] ** 2).sum() + (tgrads[1] ** 2).sum(), [tx])
    assert_close(gx2, tgx2, "second order")

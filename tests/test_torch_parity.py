"""Where PyTorch CPU is installed, compare with it: same inputs, same outputs and gradients.
These skip without PyTorch (a test reference, never a dependency), except under CI=true,
whose set-up installs it: there a missing PyTorch fails them."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import functional as F

from .conftest import import_reference

torch = import_reference("torch", "pip install torch==2.13.0")
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


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_pytorch(training):
    rng = np.random.default_rng(0)
    ours, theirs = gf.nn.BatchNorm2d(3).double(), torch.nn.BatchNorm2d(3).double()
    weight, bias = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    with torch.no_grad():
        for t, value in [(theirs.weight, weight), (theirs.bias, bias), (theirs.running_mean, running_mean),
                         (theirs.running_var, running_var)]:
            t.copy_(torch.tensor(value))
    ours.load_state_dict({"weight": weight, "bias": bias, "running_mean": running_mean, "running_var": running_var,
                          "num_batches_tracked": np.zeros(1, dtype=np.int64)})
    ours.train(training), theirs.train(training)
    x, tx = both((4, 3, 5, 5), rng)
    y, ty = ours(x), theirs(tx)
    assert_close(y, ty, "forward")
    gy = rng.standard_normal(y.shape)
    grads = gf.grad(y, [x, ours.weight, ours.bias], gf.tensor(gy))
    tgrads = torch.autograd.grad(ty, [tx, theirs.weight, theirs.bias], torch.tensor(gy))
    for g, tg, name in zip(grads, tgrads, ["x", "weight", "bias"]):
        assert_close(g, tg, f"d/d{name}")
    assert_close(ours.running_mean, theirs.running_mean, "running mean")
    assert_close(ours.running_var, theirs.running_var, "running var")


@pytest.mark.parametrize("layer", ["conv", "conv_transpose", "linear"])
def test_spectral_norm_matches_pytorch(layer):
    """Same weight and u in: the same v, u, sigma, output and gradient out, over several training steps."""
    rng = np.random.default_rng(1)
    make = {"conv": (lambda m: m.Conv2d(3, 5, 3), (2, 3, 6, 6)),
            "conv_transpose": (lambda m: m.ConvTranspose2d(3, 5, 3), (2, 3, 4, 4)),
            "linear": (lambda m: m.Linear(6, 4), (3, 6))}[layer]
    theirs = torch.nn.utils.spectral_norm(make[0](torch.nn).double())
    ours = gf.nn.spectral_norm(make[0](gf.nn).double())
    state = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)
    for step in range(3):
        x, tx = both(make[1], rng)
        y, ty = ours(x), theirs(tx)
        assert_close(y, ty, f"step {step}: output")
        assert_close(ours.weight_u, theirs.weight_u, f"step {step}: u")
        assert_close(ours.weight_v, theirs.weight_v, f"step {step}: v")
        gy = rng.standard_normal(y.shape)
        g, = gf.grad(y, [ours.weight_orig], gf.tensor(gy))
        tg, = torch.autograd.grad(ty, [theirs.weight_orig], torch.tensor(gy))
        assert_close(g, tg, f"step {step}: d/dweight_orig")
    ours.eval(), theirs.eval()
    x, tx = both(make[1], rng)
    assert_close(ours(x), theirs(tx), "eval output")


def test_spectral_norm_gradient_after_two_forwards_matches_pytorch():
    """A discriminator runs on real and on fake data before one backward: each forward's
    power iteration moves u and v, and each graph must keep the u and v it used (PyTorch
    clones them). ganforge once let the second forward overwrite the first one's."""
    rng = np.random.default_rng(2)
    theirs = torch.nn.utils.spectral_norm(torch.nn.Conv2d(3, 5, 3).double())
    ours = gf.nn.spectral_norm(gf.nn.Conv2d(3, 5, 3).double())
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    (x1, tx1), (x2, tx2) = both((2, 3, 6, 6), rng), both((2, 3, 6, 6), rng)
    loss, tloss = (ours(x1) ** 2).sum() + ours(x2).sum(), (theirs(tx1) ** 2).sum() + theirs(tx2).sum()
    loss.backward()
    tloss.backward()
    assert_close(ours.weight_orig.grad, theirs.weight_orig.grad, "d/dweight_orig after two forwards")


OPTIMIZERS = {
    "adam": (lambda p: gf.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999)),
             lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999))),
    "adam_weight_decay": (lambda p: gf.optim.Adam(p, lr=1e-3, weight_decay=0.1),
                          lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=0.1)),
    "sgd": (lambda p: gf.optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd_nesterov": (lambda p: gf.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    "rmsprop": (lambda p: gf.optim.RMSprop(p, lr=5e-5), lambda p: torch.optim.RMSprop(p, lr=5e-5)),
    "rmsprop_centered_momentum": (lambda p: gf.optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True),
                                  lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_match_pytorch(name):
    rng = np.random.default_rng(2)
    (w, tw), (b, tb) = both((4, 3), rng), both((4,), rng)
    make_ours, make_theirs = OPTIMIZERS[name]
    opt, topt = make_ours([w, b]), make_theirs([tw, tb])
    for step in range(4):
        x = rng.standard_normal((5, 3))
        loss = (F.tanh(gf.tensor(x) @ w.T + b) ** 2).sum()
        tloss = (torch.tanh(torch.tensor(x) @ tw.T + tb) ** 2).sum()
        opt.zero_grad(), topt.zero_grad()
        loss.backward(), tloss.backward()
        opt.step(), topt.step()
        assert_close(w, tw, f"{name} step {step}: weight")
        assert_close(b, tb, f"{name} step {step}: bias")


def test_gradient_clipping_matches_pytorch():
    rng = np.random.default_rng(3)
    (a, ta), (b, tb) = both((3, 4), rng), both((5,), rng)
    for p, tp in [(a, ta), (b, tb)]:
        g = rng.standard_normal(p.shape) * 10
        p.grad, tp.grad = gf.tensor(g), torch.tensor(g)
    total = gf.optim.clip_grad_norm_([a, b], 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_([ta, tb], 1.0)
    assert total == pytest.approx(float(ttotal), rel=1e-12)
    assert_close(a.grad, ta.grad, "clipped grad")
    gf.optim.clip_grad_value_([a, b], 0.1)
    torch.nn.utils.clip_grad_value_([ta, tb], 0.1)
    assert_close(b.grad, tb.grad, "value-clipped grad")


def _twin(name="torch_cyclegan"):
    """bench/NAME.py: a model's networks in PyTorch, keyed as ganforge's are."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "bench", name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_cyclegan_networks_match_pytorch(net):
    """Reflection padding, instance norm, residual blocks, transposed convolutions and the
    PatchGAN head: same weights and input, same output and gradients (to the input and to
    the first and last weights)."""
    from ganforge.gan.models import cyclegan
    twin = _twin()
    args = (3, 4, 2)  # channels, width, residual blocks (generator) or strided layers (discriminator)
    make = "resnet_generator" if net == "generator" else "patch_discriminator"
    ours, theirs = getattr(cyclegan, make)(*args).double(), getattr(twin, make)(*args).double()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    with torch.no_grad():
        for key, value in theirs.state_dict().items():
            value.copy_(torch.tensor(ours.state_dict()[key].numpy()))
    rng = np.random.default_rng(2)
    x, tx = both((2, 3, 20, 24), rng)
    y, ty = ours(x), theirs(tx)
    assert_close(y, ty, "forward")
    gy = rng.standard_normal(y.shape)
    params = list(ours.parameters())
    tparams = list(theirs.parameters())
    grads = gf.grad(y, [x, params[0], params[-1]], gf.tensor(gy))
    tgrads = torch.autograd.grad(ty, [tx, tparams[0], tparams[-1]], torch.tensor(gy))
    for g, tg, name in zip(grads, tgrads, ["x", "first weight", "last bias"]):
        assert_close(g, tg, f"d/d{name}")


def _copy_weights(ours, theirs):
    assert set(ours.state_dict()) == set(theirs.state_dict())
    with torch.no_grad():
        for key, value in theirs.state_dict().items():
            value.copy_(torch.tensor(ours.state_dict()[key].numpy()).reshape(value.shape))


@pytest.mark.parametrize("slopes", [1, 3])
def test_prelu_matches_pytorch_to_second_order(slopes):
    rng = np.random.default_rng(slopes)
    ours, theirs = gf.nn.PReLU(slopes).double(), torch.nn.PReLU(slopes).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.uniform(0.1, 0.4, slopes)))
    ours.load_state_dict({"weight": theirs.weight.detach().numpy()})
    x, tx = both((2, 3, 4, 5), rng)
    y, ty = ours(x), theirs(tx)
    assert_close(y, ty, "forward")
    gy = rng.standard_normal(y.shape)
    grads = gf.grad(y, [x, ours.weight], gf.tensor(gy), create_graph=True)
    tgrads = torch.autograd.grad(ty, [tx, theirs.weight], torch.tensor(gy), create_graph=True)
    for g, tg, name in zip(grads, tgrads, ["x", "weight"]):
        assert_close(g, tg, f"d/d{name}")
    (g2,) = gf.grad((grads[0] ** 2).sum(), [ours.weight])  # the slopes' second derivative through dx
    (tg2,) = torch.autograd.grad((tgrads[0] ** 2).sum(), [theirs.weight])
    assert_close(g2, tg2, "second order")


@pytest.mark.parametrize("size", [(10, 10), (20, 20), (80, 80), (13, 27)])
def test_bicubic_resize_matches_pytorchs_antialiased_bicubic_away_from_the_borders(size):
    """MATLAB's imresize mirrors the image at its borders where PyTorch renormalizes the
    kernel, so the two agree on every pixel whose kernel stays inside the image."""
    rng = np.random.default_rng(0)
    x, tx = both((2, 3, 40, 40), rng)
    y = F.bicubic_resize(x, size)
    ty = TF.interpolate(tx, size=size, mode="bicubic", antialias=True, align_corners=False)
    border = 4 if size[0] > 40 else 2
    np.testing.assert_allclose(y.numpy()[..., border:-border, border:-border],
                               ty.detach().numpy()[..., border:-border, border:-border], rtol=1e-9, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    gy[..., :border, :] = gy[..., -border:, :] = gy[..., :, :border] = gy[..., :, -border:] = 0
    (gx,) = gf.grad(y, [x], gf.tensor(gy))
    (tgx,) = torch.autograd.grad(ty, [tx], torch.tensor(gy))
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))  # inputs only interior outputs read
    np.testing.assert_allclose(gx.numpy()[inner], tgx.numpy()[inner], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("net", ["generator", "discriminator"])
def test_srgan_networks_match_pytorch(net):
    """PReLU, batch norm, residual blocks with the global skip, pixel shuffle; the
    discriminator's strided convolutions and dense head: same weights and input, same
    output and gradients."""
    from ganforge.gan.models import srgan
    twin = _twin("torch_srgan")
    if net == "generator":
        ours, theirs = srgan.SRResNet(3, 4, 4, 2).double(), twin.SRResNet(3, 4, 4, 2).double()
        shape = (2, 3, 5, 6)
    else:
        ours, theirs = srgan.srgan_discriminator(3, 24, 4).double(), twin.srgan_discriminator(3, 24, 4).double()
        shape = (3, 3, 24, 24)
    _copy_weights(ours, theirs)
    rng = np.random.default_rng(3)
    x, tx = both(shape, rng)
    y, ty = ours(x), theirs(tx)
    assert_close(y, ty, "forward")
    gy = rng.standard_normal(y.shape)
    params, tparams = list(ours.parameters()), list(theirs.parameters())
    grads = gf.grad(y, [x, params[0], params[1], params[-1]], gf.tensor(gy))
    tgrads = torch.autograd.grad(ty, [tx, tparams[0], tparams[1], tparams[-1]], torch.tensor(gy))
    for g, tg, name in zip(grads, tgrads, ["x", "first weight", "second parameter", "last parameter"]):
        assert_close(g, tg, f"d/d{name}")


def test_an_srgan_training_step_matches_pytorchs():
    """One step of models/srgan.py against bench/torch_srgan.py's: D's update on real and
    upscaled images, then G's on MSE + 1e-3 x the adversarial loss through the frozen D,
    in float64: the gradients each network's update used agree to rounding."""
    from ganforge.gan.model import DataInfo
    from ganforge.gan.models.srgan import SRGAN
    twin = _twin("torch_srgan")
    config = {**SRGAN.defaults, **SRGAN.options, "scale": 2, "width": 8, "blocks": 2, "device": "cpu"}
    previous = gf.get_default_dtype()
    gf.set_default_dtype("float64")  # the networks' weights
    try:
        model = SRGAN(config, DataInfo("random", (1, 16, 16), (1, 16, 16)))
    finally:
        gf.set_default_dtype(previous)
    model.setup_optimizers()
    G, D = twin.SRResNet(1, 2, 8, 2).double(), twin.srgan_discriminator(1, 16).double()
    _copy_weights(model.nets["G"], G)
    _copy_weights(model.nets["D"], D)
    rng = np.random.default_rng(0)
    hr = rng.uniform(-1, 1, (3, 1, 16, 16))
    lr = F.bicubic_resize(gf.tensor(hr), (8, 8)).numpy()
    model.train_step(iter([{"hr": gf.tensor(hr), "lr": gf.tensor(lr)}]))
    hr, lr = torch.tensor(hr), torch.tensor(lr)
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.9, 0.999))
    upscaled = G(lr)
    ones, zeros = torch.ones(3, 1, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
    loss_d = TF.binary_cross_entropy_with_logits(D(hr), ones) + TF.binary_cross_entropy_with_logits(
        D(upscaled.detach()), zeros)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    D.requires_grad_(False)
    loss_g = TF.mse_loss(upscaled, hr) + 1e-3 * TF.binary_cross_entropy_with_logits(D(upscaled), ones)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    # the gradients each update used: Adam's first step is about lr x sign(gradient), which
    # float rounding flips where a gradient is 0 up to rounding, so the weights after it
    # say less than the gradients do
    # (a bias ahead of batch norm has a gradient of 0 up to rounding: the tolerance is relative
    # to the network's largest gradient)
    for name, ours, theirs in (("G", model.nets["G"], G), ("D", model.nets["D"], D)):
        scale = max(abs(tp.grad).max().item() for tp in theirs.parameters())
        for (key, p), tp in zip(ours.named_parameters(), theirs.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-7, atol=1e-10 * scale,
                                       err_msg=f"{name}.{key}")


@pytest.mark.parametrize("name", ["StepLR", "LambdaLR", "CosineAnnealingLR"])
def test_learning_rate_schedules_match_pytorch_and_resume(name):
    """optim.lr_scheduler's schedules give PyTorch's learning rate at every step, past the
    end of a cosine's half period too, and one rebuilt from its state_dict goes on alike."""
    kwargs = {"StepLR": dict(step_size=3, gamma=0.5), "LambdaLR": dict(lr_lambda=lambda e: 1 / (1 + e)),
              "CosineAnnealingLR": dict(T_max=10, eta_min=1e-4)}[name]
    ours_opt = gf.optim.Adam([gf.zeros(2, requires_grad=True)], lr=0.1)
    theirs_opt = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
    ours = getattr(gf.optim.lr_scheduler, name)(ours_opt, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, name)(theirs_opt, **kwargs)
    for epoch in range(25):
        assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], rel=1e-12, abs=1e-15), epoch
        assert ours_opt.lr == ours.get_last_lr()[0]
        if epoch == 12:  # resume from here in a new optimizer and schedule
            state = ours.state_dict()
            ours_opt = gf.optim.Adam([gf.zeros(2, requires_grad=True)], lr=0.1)
            ours = getattr(gf.optim.lr_scheduler, name)(ours_opt, **kwargs)
            ours.load_state_dict(state)
            assert ours_opt.lr == pytest.approx(theirs.get_last_lr()[0], rel=1e-12)
        ours_opt.step(), theirs_opt.step()
        ours.step(), theirs.step()


LAYERS = {
    # name: (ganforge layer, PyTorch layer, input shape)
    "MaxPool2d(2)": (lambda: gf.nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (2, 3, 6, 5)),
    "MaxPool2d(3, 2, 1)": (lambda: gf.nn.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1), (2, 3, 7, 8)),
    "AdaptiveAvgPool2d((3, 5))": (lambda: gf.nn.AdaptiveAvgPool2d((3, 5)),
                                  lambda: torch.nn.AdaptiveAvgPool2d((3, 5)), (2, 3, 7, 8)),
    "AdaptiveAvgPool2d(1)": (lambda: gf.nn.AdaptiveAvgPool2d(1), lambda: torch.nn.AdaptiveAvgPool2d(1),
                             (2, 3, 5, 4)),
    "GroupNorm(2, 6)": (lambda: gf.nn.GroupNorm(2, 6), lambda: torch.nn.GroupNorm(2, 6), (3, 6, 4, 5)),
    "GroupNorm(3, 6, affine=False)": (lambda: gf.nn.GroupNorm(3, 6, affine=False),
                                      lambda: torch.nn.GroupNorm(3, 6, affine=False), (2, 6, 3)),
    "Softmax(dim=1)": (lambda: gf.nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1), (4, 5, 2)),
    "LogSoftmax(dim=1)": (lambda: gf.nn.LogSoftmax(dim=1), lambda: torch.nn.LogSoftmax(dim=1), (4, 5)),
    "Upsample(bilinear, align_corners)": (
        lambda: gf.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        lambda: torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), (2, 3, 4, 5)),
    "Upsample(bilinear)": (lambda: gf.nn.Upsample(size=(7, 3), mode="bilinear", align_corners=False),
                           lambda: torch.nn.Upsample(size=(7, 3), mode="bilinear", align_corners=False),
                           (2, 3, 4, 5)),
    "Unflatten": (lambda: gf.nn.Unflatten(1, (2, 3)), lambda: torch.nn.Unflatten(1, (2, 3)), (4, 6)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_match_pytorch_to_second_order(name):
    make_ours, make_theirs, shape = LAYERS[name]
    ours, theirs = make_ours().double(), make_theirs().double()
    rng = np.random.default_rng(len(name))
    with torch.no_grad():  # parameters away from their initial values, so that they count
        for value in theirs.parameters():
            value.copy_(torch.tensor(rng.uniform(0.5, 1.5, tuple(value.shape))))
    ours.load_state_dict({key: value.detach().numpy() for key, value in theirs.state_dict().items()})
    x, tx = both(shape, rng)
    y, ty = ours(x), theirs(tx)
    assert_close(y, ty, "forward")
    params, tparams = [x] + list(ours.parameters()), [tx] + list(theirs.parameters())
    gy = rng.standard_normal(y.shape)
    grads = gf.grad(y, params, gf.tensor(gy), create_graph=True)
    tgrads = torch.autograd.grad(ty, tparams, torch.tensor(gy), create_graph=True)
    for g, tg in zip(grads, tgrads):
        assert_close(g, tg, "first order")
    cubes, tcubes = sum((g ** 3).sum() for g in grads), sum((g ** 3).sum() for g in tgrads)
    if not cubes.requires_grad:  # linear in x (a pool, a reshape): its first gradients are constants
        if tcubes.requires_grad:  # PyTorch may keep a graph, whose derivatives must then be 0
            for tg in torch.autograd.grad(tcubes, tparams, allow_unused=True):
                assert tg is None or not tg.abs().max() > 0
        return
    second = gf.grad(cubes, params, allow_unused=True)
    tsecond = torch.autograd.grad(tcubes, tparams, allow_unused=True)
    for g, tg in zip(second, tsecond):
        if tg is not None:
            assert_close(g, tg, "second order")


FUNCTIONS = {
    # name: (ganforge call, PyTorch call): PyTorch's names and argument conventions
    "pad reflect (1, 2, 2, 1)": (lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"),
                                 lambda x: TF.pad(x, (1, 2, 2, 1), mode="reflect")),
    "pad constant (1, 0)": (lambda x: F.pad(x, (1, 0), value=0.5), lambda x: TF.pad(x, (1, 0), value=0.5)),
    "normalize(dim=1)": (lambda x: F.normalize(x, dim=1), lambda x: TF.normalize(x, dim=1)),
    "softmax(dim=-1)": (lambda x: F.softmax(x, dim=-1), lambda x: TF.softmax(x, dim=-1)),
    "std(dim=(2, 3), keepdim)": (lambda x: x.std(dim=(2, 3), keepdim=True),
                                 lambda x: x.std(dim=(2, 3), keepdim=True)),
    "var(unbiased=False)": (lambda x: x.var(1, unbiased=False), lambda x: x.var(1, unbiased=False)),
    "max(dim=1).values": (lambda x: x.max(dim=1).values, lambda x: x.max(dim=1).values),
    "amax(dim=(1, 3))": (lambda x: x.amax(dim=(1, 3)), lambda x: x.amax(dim=(1, 3))),
    "chunk(3, dim=3)[2]": (lambda x: x.chunk(3, dim=3)[2], lambda x: x.chunk(3, dim=3)[2]),
    "repeat(1, 2, 1, 3)": (lambda x: x.repeat(1, 2, 1, 3), lambda x: x.repeat(1, 2, 1, 3)),
    "expand(2, -1, 3, 4, 5)": (lambda x: x[None].expand(2, -1, 3, 4, 5),
                               lambda x: x[None].expand(2, -1, 3, 4, 5)),
    "adaptive_avg_pool2d(x, (None, 2))": (lambda x: F.adaptive_avg_pool2d(x, (None, 2)),
                                          lambda x: TF.adaptive_avg_pool2d(x, (None, 2))),
    "max_pool2d(x, 2, 1)": (lambda x: F.max_pool2d(x, 2, 1), lambda x: TF.max_pool2d(x, 2, 1)),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_pytorch_spelled_functions_match_pytorch(name):
    ours, theirs = FUNCTIONS[name]
    x, tx = both((2, 3, 4, 5), np.random.default_rng(len(name)))
    y, ty = ours(x), theirs(tx)
    assert_close(y, ty, "forward")
    gy = np.random.default_rng(0).standard_normal(y.shape)
    (g,), (tg,) = gf.grad(y, [x], gf.tensor(gy)), torch.autograd.grad(ty, [tx], torch.tensor(gy))
    assert_close(g, tg, "gradient")
    values, indices = x.max(dim=2)  # and the indices of max(dim), which have no gradient
    np.testing.assert_array_equal(indices.numpy(), tx.max(dim=2).indices.numpy())


@pytest.mark.parametrize("name, shape", [
    ("bilinear x2", (32, 64, 16, 16)), ("bilinear x2", (3, 5, 4, 7)), ("nearest to 5 x 9", (2, 3, 8, 6)),
    ("avg_pool2d(2)", (32, 64, 32, 32)), ("avg_pool2d(2)", (3, 5, 6, 10))])
def test_float32_resampling_matches_pytorch(name, shape):
    """StyleGAN2's upsampling and pooling in float32, the compiled pass on the CPU (only the
    matrices' nonzero entries multiplied), against PyTorch's own ops, forward and gradient."""
    ours, theirs = {
        "bilinear x2": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
                        lambda x: TF.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)),
        "nearest to 5 x 9": (lambda x: F.interpolate(x, size=(5, 9)), lambda x: TF.interpolate(x, size=(5, 9))),
        "avg_pool2d(2)": (lambda x: F.avg_pool2d(x, 2), lambda x: TF.avg_pool2d(x, 2))}[name]
    rng = np.random.default_rng(shape[-1])
    a = rng.standard_normal(shape, dtype=np.float32)
    x, tx = gf.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, ty = ours(x), theirs(tx)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    (g,), (tg,) = gf.grad(y, [x], gf.tensor(gy)), torch.autograd.grad(ty, [tx], torch.tensor(gy))
    np.testing.assert_allclose(g.numpy(), tg.numpy(), rtol=1e-5, atol=1e-5)


def test_remove_spectral_norm_leaves_pytorchs_weight():
    rng = np.random.default_rng(3)
    ours, theirs = gf.nn.Linear(4, 3).double(), torch.nn.Linear(4, 3).double()
    _copy_weights(ours, theirs)
    gf.nn.utils.spectral_norm(ours)
    torch.nn.utils.spectral_norm(theirs)
    with torch.no_grad():
        theirs.weight_u.copy_(torch.tensor(ours.weight_u.numpy()))
        theirs.weight_v.copy_(torch.tensor(ours.weight_v.numpy()))
    x, tx = both((2, 4), rng)
    for _ in range(3):
        assert_close(ours(x), theirs(tx), "spectrally normalized forward")
    gf.nn.utils.remove_spectral_norm(ours)
    torch.nn.utils.remove_spectral_norm(theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict()) == ["bias", "weight"]
    assert_close(ours.weight, theirs.weight, "the weight left behind")
    assert_close(ours(x), theirs(tx), "forward after removal")
    assert isinstance(ours.weight, gf.nn.Parameter) and ours.weight.requires_grad


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
def test_a_modulated_convolution_matches_pytorch(demodulate, fused):
    """StyleGAN2's convolution, ours fused (one grouped convolution with a group per sample)
    against PyTorch's unfused one and the other way round: same output and same gradients to the input,
    the weight, the affine layer and the styles."""
    from ganforge.nn import ModulatedConv2d
    twin = _twin("torch_stylegan2")
    ours = ModulatedConv2d(3, 4, 3, 5, demodulate, fused=fused).double()
    theirs = twin.ModulatedConv2d(3, 4, 3, 5, demodulate, fused=not fused).double()  # each form against the other
    _copy_weights(ours, theirs)
    rng = np.random.default_rng(int(demodulate))
    (x, tx), (w, tw) = both((2, 3, 6, 5), rng), both((2, 5), rng)
    y, ty = ours(x, w), theirs(tx, tw)
    assert_close(y, ty, "forward")
    gy = rng.standard_normal(y.shape)
    targets = [x, w, ours.weight, ours.affine.weight]
    grads = gf.grad(y, targets, gf.tensor(gy), create_graph=True)
    tgrads = torch.autograd.grad(ty, [tx, tw, theirs.weight, theirs.affine.weight], torch.tensor(gy),
                                 create_graph=True)
    for g, tg, name in zip(grads, tgrads, ["input", "styles", "weight", "affine weight"]):
        assert_close(g, tg, f"d/d{name}")
    (g2,) = gf.grad((grads[0] ** 2).sum(), [w])  # second order: the styles through the input's gradient
    (tg2,) = torch.autograd.grad((tgrads[0] ** 2).sum(), [tw])
    assert_close(g2, tg2, "second order")


def test_stylegan2_networks_match_pytorch():
    """The mapping network (z normalization, lr-multiplied layers, w's running mean and
    truncation), the synthesis network with fixed noise, and the residual discriminator."""
    from ganforge.gan.models import stylegan2
    twin = _twin("torch_stylegan2")
    ours = stylegan2.StyleGenerator(8, 8, 16, 1, 2, 4, 8).double()
    theirs = twin.StyleGenerator(8, 8, 16, 1, 2, 4, 8).double()
    _copy_weights(ours, theirs)
    rng = np.random.default_rng(0)
    z, tz = both((4, 8), rng)
    w, tw = ours.mapping(z, track_w_avg=True), theirs.mapping(tz, track_w_avg=True)
    assert_close(w, tw, "w")
    assert_close(ours.mapping.w_avg, theirs.mapping.w_avg, "w_avg")
    assert_close(ours.mapping(z, truncation=0.5), theirs.mapping(tz, truncation=0.5), "truncated w")
    ws, tws = ours.ws(z), theirs.ws(tz)
    images, timages = ours.synthesis(ws), theirs.synthesis(tws)
    assert_close(images, timages, "synthesis")
    (gz,), (tgz,) = gf.grad(images.sum(), [z]), torch.autograd.grad(timages.sum(), [tz])
    assert_close(gz, tgz, "d images / dz")
    D, tD = stylegan2.ResidualDiscriminator(16, 1, 4, 8).double(), twin.ResidualDiscriminator(16, 1, 4, 8).double()
    _copy_weights(D, tD)
    x, tx = both((4, 1, 16, 16), rng)
    scores, tscores = D(x), tD(tx)
    assert_close(scores, tscores, "discriminator")
    (gx,), (tgx,) = gf.grad(scores.sum(), [x], create_graph=True), torch.autograd.grad(tscores.sum(), [tx],
                                                                                       create_graph=True)
    assert_close(gx, tgx, "R1's input gradient")

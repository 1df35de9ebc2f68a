"""Optimizers, clipping, EMA, schedules and layers against references written here from
their papers' and PyTorch's documented definitions, in plain NumPy, with no PyTorch.

A gradient check passes any forward whose backward matches it, and an optimizer compared
with itself passes any update: these tests are what catches a wrong formula (an Adam
without the square root of its bias correction, a minibatch stddev over the wrong axis).
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ganforge as gf
from ganforge import dispatch, nn, optim

from .op_specs import conv2d_ref, conv_transpose2d_ref

seeds = st.integers(0, 2**16)
unit = st.floats(0.0, 0.95)


def random_gradients(seed, shapes, steps):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) * 3 for s in shapes] for _ in range(steps)]


def run_optimizer(make, params, gradients, dtype=np.float64):
    """Drive a ganforge optimizer with given gradients; the parameters after each step."""
    tensors = [gf.tensor(p.astype(dtype), requires_grad=True) for p in params]
    opt = make(tensors)
    trajectory = []
    for grads in gradients:
        for t, g in zip(tensors, grads):
            t.grad = gf.tensor(g.astype(dtype))
        opt.step()
        trajectory.append([t.numpy().copy() for t in tensors])
    return trajectory


def assert_trajectories_match(ours, reference, rtol=1e-10, atol=1e-12):
    for step, (a, b) in enumerate(zip(ours, reference)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"step {step + 1}, parameter {i}")


# --- optimizers: the update rules of PyTorch's documentation --------------------------------

def sgd_reference(params, gradients, lr, momentum, dampening, weight_decay, nesterov):
    params, buffers, out = [p.copy() for p in params], [None] * len(params), []
    for grads in gradients:
        for i, g in enumerate(grads):
            g = g + weight_decay * params[i]
            if momentum:
                buffers[i] = g.copy() if buffers[i] is None else momentum * buffers[i] + (1 - dampening) * g
                g = g + momentum * buffers[i] if nesterov else buffers[i]
            params[i] = params[i] - lr * g
        out.append([p.copy() for p in params])
    return out


def adam_reference(params, gradients, lr, beta1, beta2, eps, weight_decay):
    """Kingma & Ba, Algorithm 1, with L2 weight decay added to the gradient (PyTorch's Adam)."""
    params = [p.copy() for p in params]
    m, v, out = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], []
    for t, grads in enumerate(gradients, start=1):
        for i, g in enumerate(grads):
            g = g + weight_decay * params[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / (1 - beta1 ** t), v[i] / (1 - beta2 ** t)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append([p.copy() for p in params])
    return out


def rmsprop_reference(params, gradients, lr, alpha, eps, momentum, weight_decay, centered):
    params, out = [p.copy() for p in params], []
    square, mean, buffer = ([np.zeros_like(p) for p in params] for _ in range(3))
    for grads in gradients:
        for i, g in enumerate(grads):
            g = g + weight_decay * params[i]
            square[i] = alpha * square[i] + (1 - alpha) * g * g
            average = square[i]
            if centered:
                mean[i] = alpha * mean[i] + (1 - alpha) * g
                average = square[i] - mean[i] ** 2
            step = g / (np.sqrt(average) + eps)
            if momentum:
                buffer[i] = momentum * buffer[i] + step
                step = buffer[i]
            params[i] = params[i] - lr * step
        out.append([p.copy() for p in params])
    return out


SHAPES = [(3, 4), (5,)]


@given(seed=seeds, steps=st.integers(1, 6), lr=st.floats(1e-3, 0.5), momentum=unit, dampening=unit,
       weight_decay=st.sampled_from([0.0, 0.01, 0.3]), nesterov=st.booleans())
def test_sgd_follows_its_update_rule(seed, steps, lr, momentum, dampening, weight_decay, nesterov):
    if nesterov:  # PyTorch's rule: Nesterov needs momentum and no dampening
        momentum, dampening = max(momentum, 0.1), 0.0
    params = [np.random.default_rng(seed + 1).standard_normal(s) for s in SHAPES]
    gradients = random_gradients(seed, SHAPES, steps)
    options = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
    assert_trajectories_match(run_optimizer(lambda p: optim.SGD(p, **options), params, gradients),
                              sgd_reference(params, gradients, **options))


# beta2 below 1/2 and a large eps are legal (PyTorch takes any beta in [0, 1) and eps > 0), and
# only they tell 1 - beta2 from 1 % beta2, or sqrt(v_hat) + eps from sqrt(v_hat) - eps
@given(seed=seeds, steps=st.integers(1, 6), lr=st.floats(1e-4, 0.1), beta1=unit, beta2=st.floats(0.05, 0.9999),
       eps=st.sampled_from([1e-8, 1e-3, 0.5]), weight_decay=st.sampled_from([0.0, 0.01, 0.3]))
def test_adam_follows_its_update_rule(seed, steps, lr, beta1, beta2, eps, weight_decay):
    params = [np.random.default_rng(seed + 1).standard_normal(s) for s in SHAPES]
    gradients = random_gradients(seed, SHAPES, steps)
    ours = run_optimizer(lambda p: optim.Adam(p, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay),
                         params, gradients)
    assert_trajectories_match(ours, adam_reference(params, gradients, lr, beta1, beta2, eps, weight_decay))


ADAM_KERNELS = [name for name, kernel in dispatch.implementations("adam_step").items()
                if "cpu" in kernel.devices and kernel.available()[0]]


@pytest.mark.parametrize("impl", ADAM_KERNELS)
@pytest.mark.parametrize("beta1, beta2, eps", [(0.5, 0.999, 1e-8), (0.9, 0.3, 0.5)])  # a GAN's; unusual ones
def test_every_adam_kernel_follows_the_update_rule(impl, beta1, beta2, eps, monkeypatch):
    """Each kernel (the compiled one and the NumPy `ref`) against the paper's update, in
    float32 and float64, not against each other."""
    monkeypatch.setenv("GANFORGE_KERNELS", f"adam_step={impl}")
    params = [np.random.default_rng(1).standard_normal(s) for s in [(37, 5), (64,)]]
    gradients = random_gradients(2, [(37, 5), (64,)], 5)
    expected = adam_reference(params, gradients, 1e-2, beta1, beta2, eps, 0.0)
    for dtype, tolerance in ((np.float32, dict(rtol=1e-4, atol=1e-5)), (np.float64, {})):
        ours = run_optimizer(lambda p: optim.Adam(p, lr=1e-2, betas=(beta1, beta2), eps=eps), params, gradients,
                             dtype)
        assert_trajectories_match(ours, expected, **tolerance)


@given(seed=seeds, steps=st.integers(1, 6), lr=st.floats(1e-4, 0.1), alpha=st.floats(0.1, 0.999),
       momentum=st.sampled_from([0.0, 0.5, 0.9]), weight_decay=st.sampled_from([0.0, 0.1]), centered=st.booleans())
def test_rmsprop_follows_its_update_rule(seed, steps, lr, alpha, momentum, weight_decay, centered):
    params = [np.random.default_rng(seed + 1).standard_normal(s) for s in SHAPES]
    gradients = random_gradients(seed, SHAPES, steps)
    options = dict(lr=lr, alpha=alpha, eps=1e-8, momentum=momentum, weight_decay=weight_decay, centered=centered)
    assert_trajectories_match(run_optimizer(lambda p: optim.RMSprop(p, **options), params, gradients),
                              rmsprop_reference(params, gradients, **options), rtol=1e-8)


def test_an_optimizer_skips_parameters_without_a_gradient():
    b, a = gf.tensor([3.0], requires_grad=True), gf.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([b, a], lr=0.5)  # the one without a gradient first: it is skipped, not the end
    a.grad = gf.tensor([1.0, -1.0])
    opt.step()
    np.testing.assert_array_equal(a.numpy(), [0.5, 2.5])
    np.testing.assert_array_equal(b.numpy(), [3.0])


# --- clipping --------------------------------------------------------------------------------

@given(seed=seeds, max_norm=st.floats(0.01, 20.0), norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf]))
def test_clip_grad_norm_scales_all_gradients_together(seed, max_norm, norm_type):
    grads = random_gradients(seed, SHAPES, 1)[0]
    params = [gf.zeros(*s, dtype="float64", requires_grad=True) for s in SHAPES]
    for p, g in zip(params, grads):
        p.grad = gf.tensor(g)
    flat = np.concatenate([g.ravel() for g in grads])
    total = np.abs(flat).max() if norm_type == math.inf else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    assert optim.clip_grad_norm_(params, max_norm, norm_type) == pytest.approx(total, rel=1e-12)
    scale = min(1.0, max_norm / (total + 1e-6))  # PyTorch's rule: scale down only, never up
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * scale, rtol=1e-12)


@given(seed=seeds, clip_value=st.floats(0.01, 5.0))
def test_clip_grad_value_clamps_every_element(seed, clip_value):
    grads = random_gradients(seed, SHAPES, 1)[0]
    params = [gf.zeros(*s, dtype="float64", requires_grad=True) for s in SHAPES]
    for p, g in zip(params, grads):
        p.grad = gf.tensor(g)
    optim.clip_grad_value_(params, clip_value)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -clip_value, clip_value))


# --- EMA and schedules -------------------------------------------------------------------------

@given(seed=seeds, decay=st.floats(0.0, 0.9999), warmup=st.booleans(), steps=st.integers(1, 8))
def test_ema_follows_its_definition(seed, decay, warmup, steps):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).double()
    ema = optim.EMA(model, decay=decay, warmup=warmup)
    shadow = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    trained = {name for name, _ in model.named_parameters()}
    for n in range(steps):
        with gf.no_grad():
            for p in model.parameters():
                p.add_(gf.tensor(rng.standard_normal(p.shape)))
        model(gf.tensor(rng.standard_normal((4, 3))))  # moves the batch-norm statistics
        ema.update()
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        for k, v in model.state_dict().items():
            shadow[k] = d * shadow[k] + (1 - d) * v.numpy() if k in trained else v.numpy().copy()
    for k, v in shadow.items():
        np.testing.assert_allclose(ema.shadow[k], v, rtol=1e-10, atol=1e-12, err_msg=k)


@given(total=st.integers(2, 40), start_fraction=st.floats(0.0, 0.99), lr=st.floats(1e-4, 1.0))
def test_linear_decay_follows_its_definition(total, start_fraction, lr):
    start = min(int(start_fraction * total), total - 1)
    opt = optim.SGD([gf.zeros(1, requires_grad=True)], lr=lr)
    schedule = optim.LinearDecayLR(opt, total=total, start=start)
    for t in range(1, total + 3):
        schedule.step()
        expected = lr if t <= start else lr * max(0.0, 1 - (t - start) / (total - start))
        assert opt.lr == pytest.approx(expected, rel=1e-12, abs=1e-15), t


# --- layers: forwards against their definitions ----------------------------------------------------

def as_array(t):
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 2), (1, (1, 2))])
def test_conv2d_pads_as_its_padding_mode_says(mode, stride, padding):
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(3, 4, 3, stride=stride, padding=padding, padding_mode=mode).double()
    x = rng.standard_normal((2, 3, 7, 6))
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="reflect" if mode == "reflect" else "constant")
    expected = conv2d_ref(padded, as_array(layer.weight), as_array(layer.bias), (stride, stride))
    np.testing.assert_allclose(layer(gf.tensor(x)).numpy(), expected, rtol=1e-10, atol=1e-12)


def power_iteration_reference(matrix, u):
    """One step of Miyato et al.'s Algorithm 1: v = W^T u / ||.||, u = W v / ||.||, sigma = u^T W v."""
    v = matrix.T @ u
    v /= np.linalg.norm(v)
    u = matrix @ v
    u /= np.linalg.norm(u)
    return u, v, u @ matrix @ v


@pytest.mark.parametrize("layer", ["linear", "conv", "conv_transpose"])
def test_spectral_norm_divides_by_the_largest_singular_value_of_the_right_matrix(layer):
    """Linear and Conv2d weights are (out, in, ...): the matrix is (out, rest). A
    ConvTranspose2d's weight is (in, out, k, k): its output axis 1 comes first (PyTorch's dim=1)."""
    rng = np.random.default_rng(1)
    # seeded weights: 40 power iterations reach sigma_max to 1e-3 only when the two largest
    # singular values are apart, which unseeded weights left to chance (1 run in 6 failed)
    gf.manual_seed(1)
    module, x, forward = {
        "linear": (nn.Linear(6, 4), rng.standard_normal((3, 6)), lambda x, w, b: x @ w.T + b),
        "conv": (nn.Conv2d(3, 5, 3), rng.standard_normal((2, 3, 6, 6)), lambda x, w, b: conv2d_ref(x, w, b)),
        "conv_transpose": (nn.ConvTranspose2d(3, 5, 3), rng.standard_normal((2, 3, 4, 4)),
                           lambda x, w, b: conv_transpose2d_ref(x, w, b)),
    }[layer]
    module = nn.spectral_norm(module.double())
    w, b = as_array(module.weight_orig), as_array(module.bias)
    output_axis = 1 if layer == "conv_transpose" else 0
    matrix = np.moveaxis(w, output_axis, 0).reshape(w.shape[output_axis], -1)
    u = as_array(module.weight_u).copy()
    for step in range(40):
        u, v, sigma = power_iteration_reference(matrix, u)
        y = module(gf.tensor(x)).numpy()
        np.testing.assert_allclose(as_array(module.weight_u), u, rtol=1e-9, err_msg=f"step {step}: u")
        np.testing.assert_allclose(as_array(module.weight_v), v, rtol=1e-9, err_msg=f"step {step}: v")
        np.testing.assert_allclose(y, forward(x, w / sigma, b), rtol=1e-9, atol=1e-12, err_msg=f"step {step}")
    assert sigma == pytest.approx(np.linalg.svd(matrix, compute_uv=False)[0], rel=1e-3)  # converged to sigma_max


def test_minibatch_discrimination_follows_salimans_et_al():
    """o(x_i)_b = sum over the other samples j of exp(-||M_i,b - M_j,b||_1), M = x T."""
    rng = np.random.default_rng(2)
    layer = nn.MinibatchDiscrimination(6, 4, kernel_dims=3).double()
    x = rng.standard_normal((5, 6))
    m = (x @ as_array(layer.T)).reshape(5, 4, 3)
    closeness = np.zeros((5, 4))
    for i in range(5):
        for j in range(5):
            if j != i:
                closeness[i] += np.exp(-np.abs(m[i] - m[j]).sum(axis=1))
    np.testing.assert_allclose(layer(gf.tensor(x)).numpy(), np.concatenate([x, closeness], axis=1), rtol=1e-10)


@pytest.mark.parametrize("group_size,num_channels", [(4, 1), (2, 2), (8, 1)])
def test_minibatch_stddev_follows_karras_et_al(group_size, num_channels):
    """Each group (samples m, m + N/G, m + 2N/G, ...) gets the mean over its features of
    the standard deviation across the group, per channel group, as extra channels."""
    rng = np.random.default_rng(3)
    n, c, h, w = 8, 4, 3, 2
    x = rng.standard_normal((n, c, h, w))
    layer = nn.MinibatchStdDev(group_size, num_channels, eps=1e-8)
    g = min(group_size, n)
    extra = np.zeros((n, num_channels, h, w))
    for m in range(n // g):
        members = x[m::n // g].reshape(g, num_channels, c // num_channels, h, w)
        std = np.sqrt(members.var(axis=0) + 1e-8)          # over the group
        extra[m::n // g] = std.mean(axis=(1, 2, 3))[None, :, None, None]
    np.testing.assert_allclose(layer(gf.tensor(x)).numpy(), np.concatenate([x, extra], axis=1), rtol=1e-10)


def test_equalized_layers_scale_their_weights_by_he_constants():
    rng = np.random.default_rng(4)
    linear = nn.EqualizedLinear(6, 3, lr_multiplier=0.1, bias_init=0.5).double()
    x = rng.standard_normal((2, 6))
    weight, bias = as_array(linear.weight), as_array(linear.bias)
    np.testing.assert_allclose(linear(gf.tensor(x)).numpy(), x @ (weight * 0.1 / np.sqrt(6)).T + bias * 0.1,
                               rtol=1e-10)
    np.testing.assert_allclose(bias * 0.1, 0.5)  # the bias starts at bias_init, in effect
    conv = nn.EqualizedConv2d(3, 4, 3, padding=1).double()
    x = rng.standard_normal((2, 3, 5, 5))
    expected = conv2d_ref(x, as_array(conv.weight) / np.sqrt(3 * 9), as_array(conv.bias), padding=(1, 1))
    np.testing.assert_allclose(conv(gf.tensor(x)).numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_follows_karras_et_al_2020(demodulate):
    """Per sample: w' = W * s (scaling input channels), w'' = w' / sqrt(sum over inputs
    and taps of w'^2 + eps) for each output channel, then a plain convolution."""
    rng = np.random.default_rng(5)
    layer = nn.ModulatedConv2d(3, 4, 3, style_dim=5, demodulate=demodulate).double()
    x, styles_in = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 5))
    affine = layer.affine
    s = styles_in @ (as_array(affine.weight) / np.sqrt(5)).T + as_array(affine.bias)
    expected = []
    for i in range(2):
        weight = as_array(layer.weight) / np.sqrt(3 * 9) * s[i][None, :, None, None]
        if demodulate:
            weight = weight / np.sqrt((weight ** 2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        expected.append(conv2d_ref(x[i:i + 1], weight, padding=(1, 1))[0])
    np.testing.assert_allclose(layer(gf.tensor(x), gf.tensor(styles_in)).numpy(), np.stack(expected),
                               rtol=1e-10, atol=1e-12)


def test_adain_scales_then_shifts_the_normalized_channels():
    """AdaIN(x, y) = y_s (x - mu(x)) / sigma(x) + y_b, y_s the first half of the style's affine map."""
    rng = np.random.default_rng(6)
    layer = nn.AdaIN(3, style_dim=4).double()
    with gf.no_grad():
        layer.affine.bias.copy_(rng.standard_normal(6))  # away from scale 1, shift 0
    x, styles_in = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 4))
    style = styles_in @ (as_array(layer.affine.weight) / 2.0).T + as_array(layer.affine.bias)
    scale, shift = style[:, :3, None, None], style[:, 3:, None, None]
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    expected = scale * (x - mean) / np.sqrt(var + 1e-5) + shift
    np.testing.assert_allclose(layer(gf.tensor(x), gf.tensor(styles_in)).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_noise_injection_adds_noise_scaled_per_channel():
    rng = np.random.default_rng(7)
    layer = nn.NoiseInjection(3).double()
    with gf.no_grad():
        layer.weight.copy_(np.array([0.0, 1.0, -2.0]))
    x, noise = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 1, 4, 4))
    np.testing.assert_allclose(layer(gf.tensor(x), gf.tensor(noise)).numpy(),
                               x + np.array([0.0, 1.0, -2.0])[None, :, None, None] * noise, rtol=1e-12)


def _affine(layer, shape):
    """(weight, bias) of a normalization layer, set away from 1 and 0, broadcast to `shape`."""
    rng = np.random.default_rng(8)
    with gf.no_grad():
        layer.weight.copy_(rng.uniform(0.5, 1.5, layer.weight.shape))
        layer.bias.copy_(rng.standard_normal(layer.bias.shape))
    return as_array(layer.weight).reshape(shape), as_array(layer.bias).reshape(shape)


def _batch_norm_train(x):
    layer = nn.BatchNorm2d(3).double()
    weight, bias = _affine(layer, (1, 3, 1, 1))
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    expected = weight * (x - mean) / np.sqrt(var + 1e-5) + bias
    return layer, expected


def _batch_norm_eval(x):
    layer = nn.BatchNorm2d(3).double()
    weight, bias = _affine(layer, (1, 3, 1, 1))
    with gf.no_grad():
        layer.running_mean.copy_(np.array([0.5, -1.0, 2.0]))
        layer.running_var.copy_(np.array([2.0, 0.5, 1.5]))
    layer.eval()
    mean, var = np.array([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1), np.array([2.0, 0.5, 1.5]).reshape(1, 3, 1, 1)
    return layer, weight * (x - mean) / np.sqrt(var + 1e-5) + bias


def _instance_norm(x):
    layer = nn.InstanceNorm2d(3, affine=True).double()
    weight, bias = _affine(layer, (1, 3, 1, 1))
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    return layer, weight * (x - mean) / np.sqrt(var + 1e-5) + bias


def _layer_norm(x):
    layer = nn.LayerNorm((4, 5)).double()
    weight, bias = _affine(layer, (1, 1, 4, 5))
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    return layer, weight * (x - mean) / np.sqrt(var + 1e-5) + bias


def _conv_transpose(x):
    layer = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1).double()
    return layer, conv_transpose2d_ref(x, as_array(layer.weight), as_array(layer.bias), (2, 2), (1, 1), (1, 1))


def _conv_grouped(x):
    layer = nn.Conv2d(3, 6, 2, stride=1, padding=1, dilation=2, groups=3).double()
    return layer, conv2d_ref(x, as_array(layer.weight), as_array(layer.bias), (1, 1), (1, 1), (2, 2), 3)


def _linear(x):
    layer = nn.Linear(5, 2).double()
    return layer, x @ as_array(layer.weight).T + as_array(layer.bias)


def _upsample(x):
    return nn.Upsample(scale_factor=2), x.repeat(2, axis=2).repeat(2, axis=3)


def _avg_pool(x):
    expected = x[:, :, :4, :4].reshape(2, 3, 2, 2, 2, 2).mean(axis=(3, 5))
    return nn.AvgPool2d(2), expected


def _pixel_shuffle(x):
    y = np.random.default_rng(9).standard_normal((2, 8, 3, 3))
    expected = np.zeros((2, 2, 6, 6))
    for c in range(2):
        for i in range(2):
            for j in range(2):  # channel c*4 + i*2 + j lands at row offset i, column offset j
                expected[:, c, i::2, j::2] = y[:, c * 4 + i * 2 + j]
    return nn.PixelShuffle(2), expected, y


def _reflection_pad(x):
    return nn.ReflectionPad2d((1, 2, 0, 1)), np.pad(x, ((0, 0), (0, 0), (0, 1), (1, 2)), mode="reflect")


ACTIVATIONS = {
    "relu": (nn.ReLU(), lambda x: np.maximum(x, 0)),
    "leaky_relu": (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "sigmoid": (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (nn.Tanh(), np.tanh),
    "softplus": (nn.Softplus(beta=2.0), lambda x: np.log1p(np.exp(2.0 * x)) / 2.0),
    "elu": (nn.ELU(alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
}
LAYERS = {"batch_norm_train": _batch_norm_train, "batch_norm_eval": _batch_norm_eval,
          "instance_norm": _instance_norm, "layer_norm": _layer_norm, "conv_transpose": _conv_transpose,
          "conv_grouped_dilated": _conv_grouped, "linear": _linear, "upsample": _upsample, "avg_pool": _avg_pool,
          "pixel_shuffle": _pixel_shuffle, "reflection_pad": _reflection_pad}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_forwards_follow_their_definitions(name):
    x = np.random.default_rng(10).standard_normal((2, 3, 4, 5) if name != "linear" else (3, 5))
    made = LAYERS[name](x)
    layer, expected = made[:2]
    x = made[2] if len(made) == 3 else x
    np.testing.assert_allclose(layer(gf.tensor(x)).numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_layers_follow_their_definitions(name):
    layer, reference = ACTIVATIONS[name]
    x = np.linspace(-4, 4, 41)
    np.testing.assert_allclose(layer(gf.tensor(x)).numpy(), reference(x), rtol=1e-10, atol=1e-12)


def test_embedding_looks_up_rows_and_dropout_keeps_the_expectation():
    layer = nn.Embedding(5, 3).double()
    indices = np.array([[4, 0], [2, 2]])
    np.testing.assert_array_equal(layer(gf.tensor(indices)).numpy(), as_array(layer.weight)[indices])
    dropout = nn.Dropout(0.25)
    y = dropout(gf.ones(200_000, dtype="float64")).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)           # survivors scaled by 1 / (1 - p)
    assert abs(kept.mean() - 0.75) < 0.005
    dropout.eval()
    np.testing.assert_array_equal(dropout(gf.ones(10, dtype="float64")).numpy(), np.ones(10))

"""Layers: first- and second-order gradchecks in float64 over random configurations, with
respect to the input and every parameter; and the Module API."""
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ganforge as gf
from ganforge import nn
from ganforge.testing import gradcheck, gradgradcheck

seeds = st.integers(0, 2**32 - 1)


# --- one entry per layer: a strategy of (module, input shapes, mode) ----------------------

@st.composite
def conv_layer(draw, transposed=False):
    groups = draw(st.integers(1, 2))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k, stride, padding, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1)), \
        draw(st.integers(1, 2))
    bias = draw(st.booleans())
    if transposed:
        output_padding = draw(st.integers(0, stride - 1))
        size = draw(st.integers(2 * padding + 1, 4))  # so that padding leaves an output
        return nn.ConvTranspose2d(cin, cout, k, stride, padding, output_padding, groups, bias, dilation), \
            [(draw(st.integers(1, 2)), cin, size, size + 1)], "train"
    mode = draw(st.sampled_from(["zeros", "reflect"]))
    size = draw(st.integers(max(dilation * (k - 1) + 1, 2 * padding + 1), 6))
    return nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias, padding_mode=mode), \
        [(draw(st.integers(1, 2)), cin, size, size + 1)], "train"


@st.composite
def simple(draw, make, shape, mode="train"):
    return make(draw), [shape(draw)], mode


def small(draw, low=1, high=3):
    return draw(st.integers(low, high))


LAYER_CASES = {
    "Linear": simple(lambda d: nn.Linear(3, small(d), bias=d(st.booleans())), lambda d: (small(d), 3)),
    "Conv2d": conv_layer(),
    "ConvTranspose2d": conv_layer(transposed=True),
    "BatchNorm1d": simple(lambda d: nn.BatchNorm1d(3), lambda d: (small(d, 2, 4), 3), "train"),
    "BatchNorm2d": st.sampled_from(["train", "eval"]).map(lambda m: (nn.BatchNorm2d(2), [(2, 2, 3, 2)], m)),
    "InstanceNorm2d": simple(lambda d: nn.InstanceNorm2d(2, affine=d(st.booleans())), lambda d: (2, 2, 3, 3)),
    "LayerNorm": simple(lambda d: nn.LayerNorm((2, 3)), lambda d: (small(d), 2, 3)),
    "Embedding": simple(lambda d: nn.Embedding(5, 3), lambda d: "indices"),
    "Dropout": simple(lambda d: nn.Dropout(d(st.sampled_from([0.0, 0.5]))), lambda d: (3, 4)),
    "Upsample": simple(lambda d: nn.Upsample(scale_factor=2, mode=d(st.sampled_from(["nearest", "bilinear"]))),
                       lambda d: (1, 2, small(d), small(d))),
    "AvgPool2d": simple(lambda d: nn.AvgPool2d(2, stride=d(st.sampled_from([1, 2])), padding=d(st.integers(0, 1))),
                        lambda d: (1, 2, 4, 5)),
    "MaxPool2d": simple(lambda d: nn.MaxPool2d(small(d, 2, 3), stride=d(st.sampled_from([1, 2])),
                                               padding=d(st.integers(0, 1))), lambda d: (1, 2, 4, 5)),
    "AdaptiveAvgPool2d": simple(lambda d: nn.AdaptiveAvgPool2d((small(d, 1, 3), small(d, 1, 4))),
                                lambda d: (1, 2, small(d, 2, 5), 4)),
    "GroupNorm": simple(lambda d: nn.GroupNorm(d(st.sampled_from([1, 2, 4])), 4, affine=d(st.booleans())),
                        lambda d: (small(d, 1, 2), 4, small(d, 1, 3), 2)),
    "Softmax": simple(lambda d: nn.Softmax(dim=d(st.sampled_from([1, -1]))), lambda d: (2, 3, small(d))),
    "LogSoftmax": simple(lambda d: nn.LogSoftmax(dim=1), lambda d: (2, 3)),
    "Unflatten": simple(lambda d: nn.Unflatten(1, (2, 3)), lambda d: (2, 6)),
    "PixelShuffle": simple(lambda d: nn.PixelShuffle(2), lambda d: (1, 8, small(d), small(d))),
    "ReflectionPad2d": simple(lambda d: nn.ReflectionPad2d((1, 2, 0, 1)), lambda d: (1, 2, 3, 4)),
    "Flatten": simple(lambda d: nn.Flatten(), lambda d: (2, 3, 2)),
    "Identity": simple(lambda d: nn.Identity(), lambda d: (2, 3)),
    "ReLU": simple(lambda d: nn.ReLU(), lambda d: (2, 3)),
    "Sigmoid": simple(lambda d: nn.Sigmoid(), lambda d: (2, 3)),
    "Tanh": simple(lambda d: nn.Tanh(), lambda d: (2, 3)),
    "LeakyReLU": simple(lambda d: nn.LeakyReLU(0.2), lambda d: (2, 3)),
    "PReLU": simple(lambda d: nn.PReLU(d(st.sampled_from([1, 3]))), lambda d: (2, 3, small(d), small(d))),
    "Softplus": simple(lambda d: nn.Softplus(beta=2.0), lambda d: (2, 3)),
    "ELU": simple(lambda d: nn.ELU(), lambda d: (2, 3)),
    "Sequential": simple(lambda d: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), lambda d: (2, 3)),
    "ModuleList": simple(lambda d: Chain(nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 2)])), lambda d: (2, 3)),
    "spectral_norm": st.sampled_from([(lambda: nn.Conv2d(2, 3, 3)), (lambda: nn.ConvTranspose2d(2, 3, 3)),
                                      (lambda: nn.Linear(3, 2))]).map(
        lambda make: (nn.spectral_norm(make()), [(2, 3) if isinstance(make(), nn.Linear) else (1, 2, 4, 4)], "eval")),
    "MinibatchDiscrimination": simple(lambda d: nn.MinibatchDiscrimination(3, 2, kernel_dims=2),
                                      lambda d: (small(d, 2, 4), 3)),
    "MinibatchStdDev": simple(lambda d: nn.MinibatchStdDev(group_size=2), lambda d: (4, 2, 2, 3)),
    "EqualizedLinear": simple(lambda d: nn.EqualizedLinear(3, 2, lr_multiplier=d(st.sampled_from([1.0, 0.1]))),
                              lambda d: (2, 3)),
    "EqualizedConv2d": simple(lambda d: nn.EqualizedConv2d(2, 3, 3, padding=1), lambda d: (1, 2, 3, 4)),
    "ModulatedConv2d": simple(lambda d: nn.ModulatedConv2d(2, 3, 3, style_dim=4, demodulate=d(st.booleans()),
                                                           fused=d(st.booleans())),
                              lambda d: ((2, 2, 3, 3), (2, 4))),
    "NoiseInjection": simple(lambda d: WithFixedNoise(nn.NoiseInjection(2)), lambda d: (2, 2, 3, 3)),
    "AdaIN": simple(lambda d: nn.AdaIN(2, style_dim=3), lambda d: ((2, 2, 3, 3), (2, 3))),
}


class Chain(nn.Module):
    """Runs the modules of a ModuleList in order (ModuleList itself has no forward)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = layers

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class WithFixedNoise(nn.Module):
    """NoiseInjection with noise drawn from a fixed seed, so finite differences see one function."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        with gf.no_grad():
            layer.weight.copy_(np.array([0.5, -1.5]))

    def forward(self, x):
        noise = gf.randn(x.shape[0], 1, *x.shape[2:], dtype=x.dtype, generator=gf.Generator(0))
        return self.layer(x, noise)


def build(data, name):
    module, shapes, mode = data.draw(LAYER_CASES[name])
    module.double().train(mode == "train")
    rng = np.random.default_rng(data.draw(seeds))
    if isinstance(shapes[0], tuple) and isinstance(shapes[0][0], tuple):
        shapes = shapes[0]  # layers with two inputs (x, style)
    if shapes == ["indices"]:
        return module, [], {"indices": rng.integers(0, 5, size=(2, 3))}
    inputs = [gf.tensor(rng.uniform(-1.5, 1.5, s), requires_grad=True) for s in shapes]
    with gf.no_grad():  # perturb parameters away from their special initial values (zeros, ones)
        for p in module.parameters():
            p.add_(rng.uniform(-0.3, 0.3, p.shape))
    return module, inputs, {}


def as_function(module, inputs, extra):
    """f(*inputs, *parameters) = module(*inputs) with those parameter values, for gradcheck."""
    names = [name for name, _ in module.named_parameters()]
    owners = []
    for name in names:
        *path, leaf = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        owners.append((owner, leaf))

    def f(*tensors):
        xs, params = tensors[:len(inputs)], tensors[len(inputs):]
        saved = [owner._parameters[leaf] for owner, leaf in owners]
        try:
            for (owner, leaf), p in zip(owners, params):
                owner._parameters[leaf] = p
            gf.manual_seed(0)  # Dropout draws from the default generator: one mask per check
            if "indices" in extra:
                return module(extra["indices"])
            return module(*xs)
        finally:
            for (owner, leaf), p in zip(owners, saved):
                owner._parameters[leaf] = p
    return f, list(inputs) + [p for _, p in module.named_parameters()]


@pytest.mark.parametrize("check", [gradcheck, gradgradcheck], ids=["first_order", "second_order"])
@pytest.mark.parametrize("name", sorted(LAYER_CASES))
@given(data=st.data())
def test_layer_gradients_match_finite_differences(name, check, data):
    module, inputs, extra = build(data, name)
    f, args = as_function(module, inputs, extra)
    assert check(f, args)


def test_every_layer_has_gradient_tests():
    layers = {name for name, obj in vars(nn).items() if inspect.isclass(obj) and issubclass(obj, nn.Module)}
    layers.discard("Module")
    layers.add("spectral_norm")
    missing = layers - set(LAYER_CASES)
    assert not missing, f"layers without gradient tests in tests/test_nn.py: {sorted(missing)}"


# --- the Module API -------------------------------------------------------------------------

def dcgan_discriminator():
    return nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1),
                         nn.BatchNorm2d(16), nn.LeakyReLU(0.2), nn.Conv2d(16, 1, 7, 1, 0), nn.Flatten())


def test_parameters_buffers_and_state_dict_names():
    d = dcgan_discriminator()
    names = [n for n, _ in d.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias", "5.weight", "5.bias"]
    assert [n for n, _ in d.named_buffers()] == ["3.running_mean", "3.running_var", "3.num_batches_tracked"]
    assert list(d.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias",
                                    "3.running_mean", "3.running_var", "3.num_batches_tracked", "5.weight", "5.bias"]


def test_state_dict_round_trip_and_strict_checks():
    a, b = dcgan_discriminator(), dcgan_discriminator()
    x = gf.randn(2, 1, 28, 28)
    a(x)  # moves the running statistics
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    state = a.state_dict()
    del state["0.bias"]
    state["extra"] = gf.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['0.bias'\], unexpected keys \['extra'\]"):
        b.load_state_dict(state)
    missing, unexpected = b.load_state_dict(state, strict=False)
    assert (missing, unexpected) == (["0.bias"], ["extra"])
    wrong = a.state_dict()
    wrong["2.weight"] = gf.zeros(16, 8, 3, 3)
    with pytest.raises(ValueError, match=r"'2.weight' \(in 2\) has shape \(16, 8, 3, 3\) in the state dict but "
                                         r"\(16, 8, 4, 4\) in the model"):
        b.load_state_dict(wrong)


def test_load_state_dict_keeps_the_same_tensors():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    weight = b.weight
    b.load_state_dict(a.state_dict())
    assert b.weight is weight
    np.testing.assert_array_equal(b.weight.numpy(), a.weight.numpy())


def test_wrong_inputs_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, kernel_size=\(3, 3\).*expected an \(N, 3, H, W\) input, "
                                         r"got shape \(2, 4, 8, 8\)"):
        nn.Conv2d(3, 8, 3)(gf.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"Linear\(in_features=4.*input shape \(2, 5\) should end in 4 features"):
        nn.Linear(4, 2)(gf.randn(2, 5))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(16.*expected input with 16 channels.*got shape \(2, 8, 3, 3\)"):
        nn.BatchNorm2d(16)(gf.randn(2, 8, 3, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        nn.Conv2d(1, 1, 5)(gf.randn(1, 1, 3, 3))
    with pytest.raises(TypeError, match="cannot assign a Tensor to parameter 'weight'"):
        nn.Linear(2, 2).weight = gf.zeros(2, 2)


def test_train_eval_zero_grad_apply_and_requires_grad():
    d = dcgan_discriminator()
    d.eval()
    assert not any(m.training for m in d.modules())
    d.train()
    assert all(m.training for m in d.modules())
    d(gf.randn(2, 1, 28, 28)).sum().backward()
    assert all(p.grad is not None for p in d.parameters())
    d.zero_grad()
    assert all(p.grad is None for p in d.parameters())
    visited = []
    d.apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Sequential" and visited.count("Conv2d") == 3
    d.requires_grad_(False)
    assert not any(p.requires_grad for p in d.parameters())


def test_batch_norm_running_statistics_and_eval_mode():
    bn = nn.BatchNorm2d(2)
    x = gf.tensor(np.random.default_rng(0).normal(3.0, 2.0, (8, 2, 4, 4)))
    bn(x)
    xs = x.numpy()
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * xs.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * xs.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    y = bn(x).numpy()
    expected = (xs - bn.running_mean.numpy()[None, :, None, None]) / np.sqrt(
        bn.running_var.numpy()[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_spectral_norm_makes_the_largest_singular_value_one():
    layer = nn.spectral_norm(nn.Linear(20, 10))
    for _ in range(30):  # power iterations converge over forwards in training mode
        layer(gf.randn(4, 20))
    sigma = np.linalg.svd(layer.weight.numpy(), compute_uv=False)[0]
    assert sigma == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(RuntimeError, match="already applied"):
        nn.spectral_norm(layer)
    with pytest.raises(ValueError, match="has no parameter 'kernel'"):
        nn.spectral_norm(nn.Linear(2, 2), name="kernel")


def test_module_to_changes_dtype_in_place():
    layer = nn.Linear(3, 2)
    weight = layer.weight
    layer.double()
    assert layer.weight is weight and weight.dtype == np.float64
    assert layer(gf.randn(2, 3, dtype="float64")).dtype == np.float64


def test_initializers_have_the_right_spread():
    w = gf.zeros(256, 512)
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(np.sqrt(2 / 512), rel=0.02)
    nn.init.xavier_uniform_(w)
    assert abs(w.numpy()).max() <= np.sqrt(6 / (256 + 512)) + 1e-7
    nn.init.orthogonal_(w)
    np.testing.assert_allclose(w.numpy() @ w.numpy().T, np.eye(256), atol=1e-5)
    with pytest.raises(ValueError, match="unknown nonlinearity 'swish'"):
        nn.init.calculate_gain("swish")


# --- initialization and the Module API against PyTorch's documented values ------------------

def test_gains_are_pytorchs():
    gains = {"linear": 1.0, "conv2d": 1.0, "conv_transpose2d": 1.0, "sigmoid": 1.0, "tanh": 5 / 3,
             "relu": np.sqrt(2), "selu": 3 / 4}
    for name, gain in gains.items():
        assert nn.init.calculate_gain(name) == pytest.approx(gain, rel=1e-15), name
    assert nn.init.calculate_gain("leaky_relu") == pytest.approx(np.sqrt(2 / (1 + 0.01 ** 2)))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(np.sqrt(2 / 1.04))


def spread(init, shape=(300, 400), **kwargs):
    w = gf.zeros(*shape, dtype="float64")
    init(w, generator=gf.Generator(0), **kwargs)
    return w.numpy()


def test_each_initializer_has_its_documented_distribution():
    fan_in, fan_out = 400, 300
    assert spread(nn.init.normal_).mean() == pytest.approx(0, abs=0.01)
    assert spread(nn.init.normal_).std() == pytest.approx(1, rel=0.01)
    assert spread(nn.init.xavier_normal_).std() == pytest.approx(np.sqrt(2 / (fan_in + fan_out)), rel=0.01)
    bound = np.sqrt(6 / (fan_in + fan_out))
    w = spread(nn.init.xavier_uniform_)
    assert -bound <= w.min() < -0.99 * bound and 0.99 * bound < w.max() <= bound
    for mode, fan in (("fan_in", fan_in), ("fan_out", fan_out)):
        std = np.sqrt(2) / np.sqrt(fan)
        assert spread(nn.init.kaiming_normal_, mode=mode, nonlinearity="relu").std() == pytest.approx(std, rel=0.01)
        w = spread(nn.init.kaiming_uniform_, mode=mode, nonlinearity="relu")
        assert w.max() == pytest.approx(np.sqrt(3) * std, rel=0.01) and w.min() == pytest.approx(-np.sqrt(3) * std,
                                                                                                  rel=0.01)


def assert_fills_plus_minus_one_over_root(values, fan_in, near, what):
    """Uniform in +-1/sqrt(fan_in): inside the bounds, and reaching within `near` of both."""
    bound = 1 / np.sqrt(fan_in)
    assert -bound <= values.min() < -near * bound and near * bound < values.max() <= bound, what


def test_default_biases_are_uniform_in_plus_minus_one_over_root_fan_in():
    gf.manual_seed(0)
    # (a transposed convolution's weight is (in, out, kh, kw): its fan_in is out * kh * kw)
    for layer, fan_in in ((nn.Linear(16, 4000), 16), (nn.Conv2d(4, 4000, 2), 16), (nn.ConvTranspose2d(2, 4000, 1), 4000)):
        assert_fills_plus_minus_one_over_root(layer.bias.numpy(), fan_in, 0.9, type(layer).__name__)


def test_reprs_read_like_pytorchs():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2, bias=False), nn.ReLU(), nn.Conv2d(4, 2, 3))
    assert repr(net) == ("Sequential(\n"
                         "  (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), dilation=(2, 2), bias=False)\n"
                         "  (1): ReLU()\n"
                         "  (2): Conv2d(4, 2, kernel_size=(3, 3), stride=(1, 1))\n"
                         ")")
    assert repr(nn.Sequential()) == "Sequential()"


def test_reflection_padding_takes_an_int_for_all_four_sides():
    x = gf.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(nn.ReflectionPad2d(1)(x).numpy(), np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)),
                                                                         mode="reflect"))


def test_zero_grad_keeps_zeroed_gradients_when_asked():
    layer = nn.Linear(3, 2)
    layer(gf.randn(4, 3)).sum().backward()
    layer.zero_grad(set_to_none=False)
    for p in layer.parameters():
        assert p.grad is not None and not p.grad.numpy().any()
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())


def test_spectral_norm_refuses_a_second_hook_on_the_same_parameter_only():
    layer = nn.spectral_norm(nn.Linear(3, 2), name="weight")
    nn.spectral_norm(layer, name="bias", dim=0)  # another parameter: allowed, as in PyTorch
    with pytest.raises(RuntimeError, match="already applied"):
        nn.spectral_norm(layer, name="weight")


def test_equalized_layers_store_weights_scaled_up_by_the_lr_multiplier():
    """Karras et al.: weights drawn from N(0, 1/lr_multiplier^2), multiplied back at run time."""
    gf.manual_seed(0)
    layer = nn.EqualizedLinear(300, 400, lr_multiplier=0.01)
    assert layer.weight.numpy().std() == pytest.approx(100, rel=0.02)


def test_modulated_conv_checks_channels_and_styles():
    layer = nn.ModulatedConv2d(3, 2, 3, style_dim=4)
    with pytest.raises(ValueError, match="expected \\(N, 3, H, W\\)"):
        layer(gf.randn(2, 5, 4, 4), gf.randn(2, 4))  # wrong channels, right batch
    with pytest.raises(ValueError, match="expected \\(N, 3, H, W\\)"):
        layer(gf.randn(2, 3, 4, 4), gf.randn(3, 4))  # right channels, a style per another batch


def test_injected_noise_is_one_image_per_sample_shared_by_the_channels():
    layer = nn.NoiseInjection(3)
    with gf.no_grad():
        layer.weight.copy_(np.array([1.0, 2.0, -1.0]))
    x = gf.zeros(2, 3, 4, 5)
    added = layer(x).numpy()
    np.testing.assert_allclose(added[:, 1], 2 * added[:, 0])
    np.testing.assert_allclose(added[:, 2], -added[:, 0])
    assert not np.allclose(added[0, 0], added[1, 0])


def test_default_weights_are_uniform_in_plus_minus_one_over_root_fan_in():
    """PyTorch's default: kaiming_uniform_ with a = sqrt(5), which is U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    gf.manual_seed(0)
    for layer, fan_in in ((nn.Linear(50, 400), 50), (nn.Conv2d(8, 400, 3), 72), (nn.ConvTranspose2d(400, 8, 3), 72)):
        assert_fills_plus_minus_one_over_root(layer.weight.numpy(), fan_in, 0.99, type(layer).__name__)


def test_orthogonal_init_flattens_a_conv_weight():
    w = gf.zeros(8, 4, 3, 3)
    nn.init.orthogonal_(w)
    flat = w.numpy().reshape(8, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(8), atol=1e-5)


def test_linear_takes_a_single_vector_and_batch_norm_any_channel_count():
    assert nn.Linear(3, 2)(gf.randn(3)).shape == (2,)
    assert nn.BatchNorm2d(300)(gf.randn(2, 300, 2, 2)).shape == (2, 300, 2, 2)  # beyond CPython's small ints


def test_a_conv_repr_names_its_padding_and_groups():
    assert repr(nn.Conv2d(4, 4, 3, padding=1, groups=2)) == \
        "Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=2)"


def test_a_dtype_change_drops_the_old_gradients():
    layer = nn.Linear(3, 2)
    layer(gf.randn(4, 3)).sum().backward()
    layer.double()
    assert all(p.grad is None for p in layer.parameters())
    layer(gf.randn(4, 3, dtype="float64")).sum().backward()
    layer.to(dtype="float64")  # no change: the gradients stay
    assert all(p.grad is not None for p in layer.parameters())


def test_module_list_slices_are_module_lists():
    items = nn.ModuleList([nn.ReLU(), nn.Tanh(), nn.Sigmoid()])
    assert isinstance(items[1:], nn.ModuleList) and [type(m) for m in items[1:]] == [nn.Tanh, nn.Sigmoid]
    assert isinstance(items[0], nn.ReLU)


def test_layers_default_to_pytorchs_arguments():
    x = gf.tensor(np.linspace(-3, 3, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5))
    assert nn.Flatten()(x).shape == (2, 60)
    np.testing.assert_allclose(nn.Softplus()(x).numpy(), np.logaddexp(0, x.numpy()), rtol=1e-6)
    np.testing.assert_allclose(nn.ELU()(x).numpy(), np.where(x.numpy() > 0, x.numpy(), np.expm1(x.numpy())),
                               rtol=1e-6, atol=1e-7)
    w = spread(nn.init.kaiming_normal_)  # a = 0: the gain of a ReLU
    assert w.std() == pytest.approx(np.sqrt(2 / 400), rel=0.01)
    layer = nn.Linear(2, 2).requires_grad_(False).requires_grad_()
    assert all(p.requires_grad for p in layer.parameters())


def test_gan_layers_defaults_and_checks():
    md = nn.MinibatchDiscrimination(6, 4)  # Salimans et al.: 5 dimensions per kernel
    assert md.T.shape == (6, 20) and md(gf.randn(3, 6)).shape == (3, 10)
    with pytest.raises(ValueError, match="expected an \\(N, 6\\) input"):
        md(gf.randn(3, 5))
    assert nn.MinibatchStdDev()(gf.randn(4, 3, 2, 2)).shape == (4, 4, 2, 2)  # one std channel
    for k in (1, 3, 5):  # "same" padding for odd kernels
        assert nn.ModulatedConv2d(2, 3, k, style_dim=4)(gf.randn(2, 2, 6, 7), gf.randn(2, 4)).shape == (2, 3, 6, 7)


def test_dropout_probability_must_be_below_one():
    for p in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="Dropout probability must be in \\[0, 1\\)"):
            nn.Dropout(p)


def test_parameters_and_their_shapes():
    p = nn.Parameter(np.zeros(2))
    assert repr(p).startswith("Parameter(") and repr(p).endswith(")")
    assert nn.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)
    layer = nn.Linear(2, 2)
    layer.bias = None  # as in PyTorch, the layer no longer has a bias parameter
    assert [name for name, _ in layer.named_parameters()] == ["weight"] and "bias" not in layer.state_dict()


def test_a_dtype_change_leaves_integer_buffers_alone():
    bn = nn.BatchNorm2d(2).double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype.kind == "i"


def test_more_defaults_checks_and_reprs():
    assert nn.LeakyReLU()(gf.tensor(np.array([-1.0, 2.0]))).numpy().tolist() == pytest.approx([-0.01, 2.0])
    for channels in ((4, 6), (6, 4)):  # either side not divisible by the groups
        with pytest.raises(ValueError, match="groups"):
            nn.Conv2d(*channels, 3, groups=4)
    assert repr(nn.BatchNorm2d(3)) == "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True)"
    assert repr(nn.BatchNorm2d(3, affine=False)).endswith("affine=False)")


def test_spectral_norm_starts_from_unit_vectors():
    layer = nn.spectral_norm(nn.Linear(3, 40))
    for name in ("weight_u", "weight_v"):
        assert np.linalg.norm(getattr(layer, name).numpy()) == pytest.approx(1.0, rel=1e-6)


def test_load_state_dict_strictness():
    source, target = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)), nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = source.state_dict()
    missing_first = {k: v for k, v in state.items() if k != "0.weight"}
    with pytest.raises(KeyError, match="missing keys \\['0.weight'\\]"):
        target.load_state_dict(missing_first)
    with pytest.raises(KeyError, match="unexpected keys \\['2.weight'\\]"):
        target.load_state_dict({**state, "2.weight": state["0.weight"]})
    missing, unexpected = target.load_state_dict(missing_first, strict=False)
    assert missing == ["0.weight"] and unexpected == []
    for key in missing_first:  # every key after the missing one is loaded too
        np.testing.assert_array_equal(target.state_dict()[key].numpy(), state[key].numpy())


def test_registration_and_removal():
    layer = nn.Linear(2, 2)
    layer.register_parameter("extra", None)
    layer.register_buffer("scratch", None)
    layer.register_buffer("cache", gf.zeros(2), persistent=False)
    layer.register_buffer("count", gf.zeros(1))
    assert sorted(layer.state_dict()) == ["bias", "count", "weight"]
    del layer.weight
    assert [name for name, _ in layer.named_parameters()] == ["bias"]
    net = nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Sigmoid())
    assert isinstance(net[1:], nn.Sequential) and len(net[1:]) == 2 and isinstance(net[0], nn.ReLU)


def test_more_layer_defaults_checks_and_reprs():
    assert not list(nn.InstanceNorm2d(3).parameters())  # PyTorch's default: affine=False
    with pytest.raises(ValueError, match="expected an \\(N, 1, H, W\\) input"):
        nn.Conv2d(1, 1, 3)(gf.randn(1, 1, 1, 5, 5))
    assert repr(nn.Upsample(scale_factor=2)) == "Upsample(scale_factor=2, mode='nearest')"
    assert repr(nn.Upsample(size=(4, 4), mode="bilinear")) == "Upsample(size=(4, 4), mode='bilinear')"
    mode = "".join(["re", "flect"])  # read from a config file: equal to "reflect", another object
    x = gf.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    reflect = nn.Conv2d(1, 1, 3, padding=1, padding_mode=mode, bias=False)
    zeros = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    zeros.weight = reflect.weight
    assert not np.allclose(reflect(x).numpy(), zeros(x).numpy())


def test_dropout_and_spectral_norm_defaults():
    assert nn.Dropout().p == 0.5
    layer = nn.spectral_norm(nn.Linear(3, 2))
    hook, = layer._forward_pre_hooks
    assert (hook.eps, hook.n_power_iterations) == (1e-12, 1)  # PyTorch's
    with pytest.raises(RuntimeError, match="already applied"):
        nn.spectral_norm(layer, name="".join(["wei", "ght"]))  # the name as another string object


def test_small_initializers_and_their_checks():
    w = gf.ones(3, 4)
    nn.init.zeros_(w)
    assert not w.numpy().any()
    nn.init.ones_(w)
    assert (w.numpy() == 1).all()
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(gf.zeros(5))


def test_parameters_are_listed_once_and_none_never():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    net.register_parameter("unused", None)
    assert len(list(net.parameters())) == 2


def test_spectral_norm_needs_at_least_one_power_iteration():
    with pytest.raises(ValueError, match="at least one power iteration, got 0"):
        nn.spectral_norm(nn.Linear(2, 2), n_power_iterations=0)
    assert nn.spectral_norm(nn.Linear(2, 2), n_power_iterations=2)(gf.randn(3, 2)).shape == (3, 2)


def test_gan_layer_initializations_and_defaults():
    gf.manual_seed(0)
    T = nn.MinibatchDiscrimination(200, 100).T.numpy()  # Salimans et al.'s T ~ N(0, 0.1^2)
    assert abs(T.mean()) < 0.005 and T.std() == pytest.approx(0.1, rel=0.02)
    weight = nn.EqualizedLinear(300, 400, lr_multiplier=0.01).weight.numpy()
    assert abs(weight.mean()) < 1.0
    assert nn.ModulatedConv2d(2, 2, 3, style_dim=2).demodulate  # StyleGAN2's default
    assert nn.ModulatedConv2d(300, 1, 1, style_dim=2)(gf.randn(1, 300, 2, 2), gf.randn(1, 2)).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="expected an \\(N, 6\\) input"):
        nn.MinibatchDiscrimination(6, 4)(gf.randn(6))
    same = gf.ones(4, 2, 3, 3)  # a group of identical samples: their std is sqrt(eps), about 0
    assert np.abs(nn.MinibatchStdDev()(same).numpy()[:, 2]).max() < 1e-3


def test_initializer_shapes_and_ranges():
    assert nn.init.fan_in_and_fan_out(gf.zeros(4, 3, 5)) == (15, 20)
    assert nn.init.fan_in_and_fan_out(gf.zeros(4, 3, 5, 5)) == (75, 100)
    w = spread(nn.init.uniform_)
    assert 0 <= w.min() < 0.01 and 0.99 < w.max() < 1
    assert abs(spread(nn.init.xavier_normal_).mean()) < 0.001
    mode = "".join(["fan", "_in"])  # read at run time: equal, not the same object
    assert spread(nn.init.kaiming_normal_, mode=mode).std() == pytest.approx(np.sqrt(2 / 400), rel=0.01)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.orthogonal_(gf.zeros(5))
    tall = gf.zeros(8, 3)
    nn.init.orthogonal_(tall)
    np.testing.assert_allclose(tall.numpy().T @ tall.numpy(), np.eye(3), atol=1e-5)


def test_layers_refuse_more_channels_and_more_axes():
    with pytest.raises(ValueError, match="expected an \\(N, 3, H, W\\) input"):
        nn.Conv2d(3, 2, 3)(gf.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="expected input with 2 channels"):
        nn.BatchNorm2d(2)(gf.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="expected input with 2 channels"):
        nn.BatchNorm2d(2)(gf.randn(2, 2, 3, 3, 1))
    with pytest.raises(ValueError, match="shape"):
        nn.Linear(2, 2).load_state_dict({"weight": np.zeros((3, 3)), "bias": np.zeros(2)})


def test_a_dtype_change_leaves_boolean_buffers_alone_and_spectral_norm_takes_any_order():
    layer = nn.Linear(2, 2)
    layer.register_buffer("mask", gf.tensor(np.array([True, False])))
    layer.double()
    assert layer.mask.dtype == np.bool_
    layer = nn.spectral_norm(nn.Linear(3, 2), name="bias", dim=0)
    nn.spectral_norm(layer, name="weight")  # "bias" first, then "weight": both allowed


def test_initializers_draw_from_the_generator_they_are_given():
    """normal_ is mean + std * the generator's standard normals (a sign flip would keep the
    distribution and change every weight of a seeded run)."""
    w = spread(nn.init.normal_, shape=(3, 4), mean=0.5, std=2.0)
    np.testing.assert_allclose(w, 0.5 + 2.0 * np.random.default_rng(0).standard_normal((3, 4)))
    kaiming = spread(nn.init.kaiming_uniform_)  # PyTorch's defaults: a = 0, leaky_relu gain sqrt(2)
    assert np.abs(kaiming).max() == pytest.approx(np.sqrt(6 / 400), rel=0.01)
    assert abs(spread(nn.init.kaiming_normal_).mean()) < 0.001


def test_gan_layer_defaults_equalized_modulated_and_stddev():
    gf.manual_seed(0)
    linear = nn.EqualizedLinear(300, 400)
    assert abs(linear.weight.numpy().mean()) < 0.01 and linear.weight.numpy().std() == pytest.approx(1, rel=0.02)
    assert not linear.bias.numpy().any()  # bias_init 0
    assert nn.EqualizedConv2d(2, 3, 3)(gf.randn(1, 2, 5, 5)).shape == (1, 3, 3, 3)  # no padding by default
    modulated = nn.ModulatedConv2d(2, 3, 3, style_dim=4)
    np.testing.assert_array_equal(modulated.affine.bias.numpy(), 1.0)  # styles start at 1: the plain conv
    with pytest.raises(ValueError, match="expected \\(N, 2, H, W\\)"):
        modulated(gf.randn(2, 1, 4, 4), gf.randn(2, 4))  # fewer channels
    with pytest.raises(ValueError, match="expected \\(N, 2, H, W\\)"):
        modulated(gf.randn(2, 2, 4, 4), gf.randn(1, 4))  # fewer styles than samples
    assert nn.MinibatchStdDev().group_size == 4
    x = gf.randn(8, 2, 2, 2)
    stds = nn.MinibatchStdDev()(x).numpy()[:, 2, 0, 0]
    assert len(set(np.round(stds, 6))) == 2  # groups of 4: two values over 8 samples
    with pytest.raises(ValueError, match="the batch 4 must be divisible by the group size 3"):
        nn.MinibatchStdDev(group_size=3)(gf.randn(4, 2, 2, 2))
    with pytest.raises(ValueError, match="expected an \\(N, 6\\) input"):
        nn.MinibatchDiscrimination(6, 4)(gf.randn(2, 6, 1))


def test_layers_refuse_inputs_of_the_wrong_rank_or_width():
    with pytest.raises(ValueError, match="Linear.* should end in 3 features"):  # the layer's words
        nn.Linear(3, 2)(gf.randn(4, 2))
    for shape in ((2, 4, 4), (3, 2, 4)):  # 3-D: the wrong channels, or the right ones in the wrong place
        with pytest.raises(ValueError, match="expected an \\(N, 2, H, W\\) input"):
            nn.Conv2d(2, 3, 1)(gf.randn(*shape))
    norm = nn.InstanceNorm2d(3)
    for shape in ((2, 2, 4, 4), (2, 4, 4, 4), (2, 3, 4), (2, 3, 4, 4, 1)):
        with pytest.raises(ValueError, match="expected an \\(N, 3, H, W\\) input"):
            norm(gf.randn(*shape))
    assert nn.BatchNorm1d(3)(gf.randn(4, 3, 5)).shape == (4, 3, 5)  # (N, C, L) as in PyTorch
    assert "bias=False" in repr(nn.Linear(2, 3, bias=False)) and "bias=True" in repr(nn.Linear(2, 3))


def test_batch_norm_in_eval_leaves_its_counters_alone():
    bn = nn.BatchNorm2d(2)
    bn(gf.randn(4, 2, 3, 3))
    bn.eval()
    bn(gf.randn(4, 2, 3, 3))
    assert bn.num_batches_tracked.numpy().item() == 1


def test_buffers_take_tensors_or_none_only():
    bn = nn.BatchNorm2d(2)
    with pytest.raises(TypeError, match="buffer 'running_mean' must be a Tensor or None, got ndarray"):
        bn.running_mean = np.zeros(2)
    bn.running_mean = gf.ones(2)
    np.testing.assert_array_equal(bn.running_mean.numpy(), 1.0)
    bn.running_mean = None
    assert bn.running_mean is None


def test_load_state_dict_checks_every_shape_and_names_the_layer():
    net = nn.Sequential(nn.Sequential(nn.Linear(2, 3)))
    with pytest.raises(ValueError, match="'0.0.bias' \\(in 0.0\\) has shape \\(4,\\)"):
        net.load_state_dict({"0.0.bias": np.zeros(4)}, strict=False)  # the weight missing, then a longer bias
    assert len(nn.ModuleList().extend([nn.ReLU(), nn.Tanh()])) == 2


def test_layers_take_numpy_integers_for_their_sizes():
    """Sizes read from arrays (np.int64) are compared by value, not identity."""
    assert nn.Linear(np.int64(3), 2)(gf.randn(4, 3)).shape == (4, 2)
    assert nn.InstanceNorm2d(np.int64(3))(gf.randn(2, 3, 4, 4)).shape == (2, 3, 4, 4)


def _mlp(seed, last_activation):
    gf.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 64), nn.LeakyReLU(0.2), nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 8),
                         last_activation)


def _creators(y):
    """The op types in the graph behind y."""
    seen, stack = [], [y.creator]
    while stack:
        fn = stack.pop()
        if fn is not None and fn not in seen:
            seen.append(fn)
            stack.extend(x.creator for x in fn.inputs)
    return {type(fn).__name__ for fn in seen}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sequential_runs_linear_and_activation_as_one_op_with_the_same_results(dtype):
    """A Linear and the LeakyReLU or ReLU after it run as one op: the output, the
    gradients and a gradient penalty's second-order gradients are those of the modules
    applied one by one, bit for bit."""
    net = _mlp(0, nn.LeakyReLU(0.5)).to(dtype=dtype)
    x = gf.randn(32, 24, dtype=dtype, requires_grad=True)

    def run(forward):
        y = forward(x)
        ops = _creators(y)
        (gx,) = gf.grad(y.sum(), [x], create_graph=True)
        for p in net.parameters():
            p.grad = None
        ((gx * gx).sum() + y.sum()).backward()
        return [y.numpy(), gx.numpy()] + [p.grad.numpy() for p in net.parameters()], ops

    def one_by_one(x):
        for module in net:
            x = module(x)
        return x

    fused, fused_ops = run(net)
    separate, separate_ops = run(one_by_one)
    assert "LinearLeakyReLU" in fused_ops and "LeakyReLU" not in fused_ops, fused_ops
    assert "LinearLeakyReLU" not in separate_ops
    for a, b in zip(fused, separate):
        np.testing.assert_array_equal(a, b)


def test_sequential_fuses_only_plain_linear_layers_and_activations_without_hooks():
    class MyLinear(nn.Linear):
        pass

    fusable = nn.Linear(4, 4)
    assert fusable.fused_with(nn.LeakyReLU(0.2)) is not None and fusable.fused_with(nn.ReLU()) is not None
    assert fusable.fused_with(nn.LeakyReLU(-0.1)) is None and fusable.fused_with(nn.LeakyReLU(1.5)) is None
    assert fusable.fused_with(nn.Tanh()) is None and MyLinear(4, 4).fused_with(nn.ReLU()) is None
    hooked = nn.ReLU()
    hooked.register_forward_pre_hook(lambda module, inputs: None)
    assert fusable.fused_with(hooked) is None
    # a wrong input shape gets the Linear's own message, fused or not
    with pytest.raises(ValueError, match="should end in 4 features"):
        nn.Sequential(fusable, nn.ReLU())(gf.randn(2, 3))

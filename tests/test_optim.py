"""Optimizer state round trips, EMA, the learning-rate schedule, and argument errors."""
import numpy as np
import pytest

import ganforge as gf
from ganforge import nn, optim
from ganforge.backends.cpu import native
from ganforge.backends.cpu.kernels import adam_step as cpp_adam_step


def train_steps(model, opt, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = gf.tensor(rng.standard_normal((8, 3)), dtype="float32")
        loss = (model(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("make", [lambda p: optim.Adam(p, lr=1e-2), lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.5, centered=True)])
def test_resuming_from_a_state_dict_continues_exactly(make):
    gf.manual_seed(0)
    straight = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    resumed = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    resumed.load_state_dict(straight.state_dict())
    opt_a = make(list(straight.parameters()))
    train_steps(straight, opt_a, 6, seed=1)

    opt_b = make(list(resumed.parameters()))
    train_steps(resumed, opt_b, 3, seed=1)
    saved_model, saved_opt = {k: v.numpy().copy() for k, v in resumed.state_dict().items()}, opt_b.state_dict()
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    fresh.load_state_dict(saved_model)
    opt_c = make(list(fresh.parameters()))
    opt_c.load_state_dict(saved_opt)
    rng_state = np.random.default_rng(1)
    for _ in range(3):  # advance the data stream past the first three batches
        rng_state.standard_normal((8, 3))
    for _ in range(3):
        x = gf.tensor(rng_state.standard_normal((8, 3)), dtype="float32")
        loss = (fresh(x) ** 2).mean()
        opt_c.zero_grad()
        loss.backward()
        opt_c.step()
    for (name, a), b in zip(straight.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_ema_averages_parameters_and_copies_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = optim.EMA(model, decay=0.5, warmup=False)
    before = model[0].weight.numpy().copy()
    with gf.no_grad():
        model[0].weight.add_(2.0)
    model(gf.randn(4, 2))  # moves the running statistics
    ema.update()
    np.testing.assert_allclose(ema.shadow["0.weight"], before + 1.0, rtol=1e-6)
    np.testing.assert_array_equal(ema.shadow["1.running_mean"], model[1].running_mean.numpy())
    averaged = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema.copy_to(averaged)
    np.testing.assert_allclose(averaged[0].weight.numpy(), before + 1.0, rtol=1e-6)


def test_ema_state_loads_onto_the_model_and_checks_its_entries():
    model = nn.Linear(2, 3)
    ema = optim.EMA(model, decay=0.9)
    ema.update()
    state = ema.state_dict()
    other = optim.EMA(nn.Linear(2, 3), decay=0.5)
    other.load_state_dict(state)
    assert other.decay == 0.9 and other.updates == 1
    for name, value in state["shadow"].items():
        np.testing.assert_array_equal(other.shadow[name], value)
        assert other.shadow[name].dtype == model.state_dict()[name].dtype
    with pytest.raises(ValueError, match="EMA.load_state_dict: the averaged entries"):
        optim.EMA(nn.Linear(2, 3, bias=False)).load_state_dict(state)  # an entry too many
    with pytest.raises(ValueError, match="EMA.load_state_dict: the averaged entries"):
        optim.EMA(nn.Linear(2, 3)).load_state_dict(optim.EMA(nn.Linear(2, 3, bias=False)).state_dict())  # too few


def test_linear_decay_schedule():
    opt = optim.SGD([gf.zeros(1, requires_grad=True)], lr=1.0)
    schedule = optim.LinearDecayLR(opt, total=10, start=5)
    lrs = []
    for _ in range(10):
        schedule.step()
        lrs.append(opt.lr)
    np.testing.assert_allclose(lrs, [1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0.0], atol=1e-12)
    again = optim.LinearDecayLR(optim.SGD([gf.zeros(1, requires_grad=True)], lr=1.0), total=10, start=5)
    again.load_state_dict(schedule.state_dict())
    assert again.optimizer.lr == 0.0


def test_optimizer_argument_errors():
    p = gf.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match=r"unknown arguments \['momentum'\]"):
        optim.Adam([p], momentum=0.9)
    with pytest.raises(ValueError, match="learning rate must be non-negative"):
        optim.SGD([p], lr=-1)
    for bad in (dict(momentum=0.0), dict(momentum=-0.5), dict(momentum=0.9, dampening=0.1),
                dict(momentum=0.9, dampening=-0.1)):
        with pytest.raises(ValueError, match="Nesterov"):
            optim.SGD([p], lr=0.1, nesterov=True, **bad)
    opt = optim.Adam([p])
    with pytest.raises(ValueError, match="the state has 2 parameters, this optimizer 1"):
        opt.load_state_dict({"hyperparameters": {}, "step_count": 0, "state": [{}, {}]})
    with pytest.raises(ValueError, match="the state has 0 parameters, this optimizer 1"):
        opt.load_state_dict({"hyperparameters": {}, "step_count": 0, "state": []})
    assert optim.SGD([p], lr=0.0).lr == 0.0  # a frozen optimizer is legal, as in PyTorch
    p.grad = gf.ones(2)
    opt.step()
    for wrong in ((1,), (3,)):  # a moment of another shape, smaller or larger
        state = opt.state_dict()
        state["state"][0]["exp_avg"] = np.zeros(wrong, dtype=np.float32)
        with pytest.raises(ValueError, match="shape"):
            optim.Adam([p]).load_state_dict(state)


def test_clip_grad_norm_refuses_non_finite_gradients():
    p = gf.zeros(2, requires_grad=True)
    p.grad = gf.tensor([np.inf, 1.0])
    with pytest.raises(FloatingPointError, match="norm is inf"):
        optim.clip_grad_norm_([p], 1.0)


def test_ema_warmup_forgets_the_initial_weights_quickly():
    model = nn.Linear(1, 1, bias=False)
    ema = optim.EMA(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    with gf.no_grad():
        model.weight.fill_(1.0)
    for _ in range(100):
        ema.update()
    assert ema.current_decay() == pytest.approx(101 / 110)
    assert ema.shadow["weight"][0, 0] > 0.99  # without warmup: 1 - 0.999^100 = 0.095 of the way


def test_default_hyperparameters_are_pytorchs():
    p = [gf.zeros(2, requires_grad=True)]
    assert optim.Adam(p).hyper == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    assert optim.RMSprop(p).hyper == {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0,
                                      "centered": False}
    assert optim.SGD(p).hyper == {"lr": 1e-2, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                                  "nesterov": False}


def test_optimizer_state_of_the_wrong_shape_is_refused():
    p = gf.zeros(2, 3, requires_grad=True)
    opt = optim.Adam([p])
    p.grad = gf.ones(2, 3)
    opt.step()
    state = opt.state_dict()
    state["state"][0]["exp_avg"] = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(3, 2\), the parameter \(2, 3\)"):
        optim.Adam([gf.zeros(2, 3, requires_grad=True)]).load_state_dict(state)


def test_step_count_zero_grad_and_state_dict_types():
    p = gf.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.Adam([p])
    assert opt.step_count == 0
    for _ in range(3):
        p.grad = gf.tensor([0.5, -0.5])
        opt.step()
    assert opt.step_count == 3
    opt.zero_grad()
    assert p.grad is None
    p.grad = gf.tensor([0.5, -0.5])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), [0.0, 0.0])
    saved = opt.state_dict()["state"][0]
    assert isinstance(saved["step"], int) and saved["step"] == 3  # plain numbers stay numbers (JSON)


def test_ema_and_schedule_refuse_out_of_range_arguments():
    model = nn.Linear(1, 1)
    for decay in (0.0, 1.0):  # the ends are allowed: 1 freezes the average, 0 copies the weights
        optim.EMA(model, decay=decay)
    for decay in (-0.1, 1.5):
        with pytest.raises(ValueError, match="EMA decay must be in \\[0, 1\\]"):
            optim.EMA(model, decay=decay)
    opt = optim.SGD([gf.zeros(1, requires_grad=True)], lr=1.0)
    optim.LinearDecayLR(opt, total=5, start=0)
    for start, total in ((-1, 5), (5, 5), (6, 5)):
        with pytest.raises(ValueError, match="LinearDecayLR needs 0 <= start < total"):
            optim.LinearDecayLR(opt, total=total, start=start)


def test_clipping_works_on_gradients_that_carry_a_graph():
    """After backward(create_graph=True) the gradients require grad themselves; clipping
    them in place must not be recorded on (or refused by) their graph."""
    w = gf.tensor([3.0, -4.0], requires_grad=True)
    ((w * w).sum()).backward(create_graph=True)
    assert w.grad.requires_grad
    optim.clip_grad_value_([w], 1.0)
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, -1.0])
    w.grad = None
    ((w * w).sum()).backward(create_graph=True)
    assert optim.clip_grad_norm_([w], 1.0) == pytest.approx(10.0)
    np.testing.assert_allclose(w.grad.numpy(), [0.6, -0.8], rtol=1e-6)


def test_clip_grad_norm_defaults_and_the_empty_case():
    p = gf.tensor([0.0, 0.0], requires_grad=True)
    assert optim.clip_grad_norm_([p], 1.0) == 0.0  # no gradients: nothing to clip, norm 0
    p.grad = gf.tensor([3.0, 4.0])
    assert optim.clip_grad_norm_([p], 100.0) == pytest.approx(5.0)  # the L2 norm by default
    np.testing.assert_array_equal(p.grad.numpy(), [3.0, 4.0])


def test_ema_state_without_an_update_count_starts_counting_at_zero():
    ema = optim.EMA(nn.Linear(2, 2), decay=0.9)
    state = ema.state_dict()
    del state["updates"], state["warmup"]
    ema.updates = 7
    ema.load_state_dict(state)
    assert ema.updates == 0 and ema.warmup


def test_linear_decay_starts_at_once_by_default():
    opt = optim.SGD([gf.zeros(1, requires_grad=True)], lr=1.0)
    schedule = optim.LinearDecayLR(opt, total=4)
    schedule.step()
    assert opt.lr == pytest.approx(0.75)


@pytest.mark.skipif(not native.available()[0], reason=native.available()[1])
def test_adam_runs_compiled_only_on_contiguous_arrays_of_one_float_dtype(monkeypatch):
    """The C++ Adam takes float32 or float64 arrays, all of one dtype and shape, the
    parameter and moments C-contiguous (a strided gradient is copied); anything else goes
    to the NumPy step, with the same numbers."""
    calls, compiled = [], native.module()

    class Counting:
        def __getattr__(self, name):
            if name != "adam_step":
                return getattr(compiled, name)
            return lambda *args: calls.append(name) or compiled.adam_step(*args)
    monkeypatch.setattr(native, "module", lambda: Counting())
    rng = np.random.default_rng(0)
    hyper = (1e-2, 0.5, 0.999, 1e-8, 3)

    def step(dtype, grad_dtype=None, transposed=False, moments_transposed=False):
        param, grad = rng.standard_normal((4, 4)).astype(dtype), rng.standard_normal((4, 4)).astype(grad_dtype or dtype)
        grad = grad.T if transposed else grad
        m, v = np.full((4, 4), 0.1, dtype), np.full((4, 4), 0.2, dtype)
        m, v = (m.T, v.T) if moments_transposed else (m, v)
        expected = [a.copy() for a in (param, grad, m, v)]
        optim.adam_step_ref(*expected[:1], expected[1], expected[2], expected[3], *hyper)
        calls.clear()
        cpp_adam_step(param, grad, m, v, *hyper)
        for got, want in zip((param, m, v), (expected[0], expected[2], expected[3])):
            np.testing.assert_allclose(got, want, rtol=1e-6)
        return bool(calls)
    assert step(np.float32) and step(np.float64)
    assert not step(np.float16)
    assert not step(np.float32, grad_dtype=np.float64) and not step(np.float64, grad_dtype=np.float32)
    assert step(np.float32, transposed=True)
    assert not step(np.float32, moments_transposed=True)


def test_a_state_of_many_parameters_loads():
    """More than 256 tensors: their count is compared by value (CPython caches only small ints)."""
    params = [gf.zeros(1, requires_grad=True) for _ in range(300)]
    opt = optim.Adam(params)
    for p in params:
        p.grad = gf.ones(1)
    opt.step()
    again = optim.Adam(params)
    again.load_state_dict(opt.state_dict())
    assert again.step_count == 1


def test_pytorch_shaped_schedules_set_the_rate_at_once_and_refuse_bad_settings():
    opt = optim.SGD([gf.zeros(1, requires_grad=True)], lr=1.0)
    schedule = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    rates = [opt.lr] + [schedule.step() or opt.lr for _ in range(5)]
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert schedule.state_dict() == {"base_lr": 1.0, "last_epoch": 5, "step_size": 2, "gamma": 0.5}
    cosine = optim.lr_scheduler.CosineAnnealingLR(optim.SGD([gf.zeros(1, requires_grad=True)], lr=2.0), T_max=4)
    assert [cosine.lr_at(e) for e in (0, 2, 4, 8)] == pytest.approx([2.0, 1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive whole number of epochs, got 0"):
        optim.lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max must be"):
        optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2.5)
    with pytest.raises(TypeError, match="LambdaLR: lr_lambda must be a function of the epoch"):
        optim.lr_scheduler.LambdaLR(opt, lr_lambda=0.5)


@pytest.mark.parametrize("make", [lambda p: optim.Adam(p, lr=1e-2, betas=(0.5, 0.9), weight_decay=0.1),
                                  lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
                                  lambda p: optim.SGD(p, lr=0.1)])
def test_the_differentiable_step_is_the_step(make):
    """differentiable_step (what the true unrolled GAN differentiates through) gives the
    parameters and states the in-place step gives, from an empty state and from a used one,
    and leaves the optimizer untouched."""
    gf.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    opt = make(list(model.parameters()))
    rng = np.random.default_rng(2)
    for _ in range(3):  # the first comparison starts from an empty state, the next from used ones
        x = gf.tensor(rng.standard_normal((8, 3)))
        loss = (model(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        before = [dict(s) for s in opt.state]
        params, states = opt.differentiable_step([p.detach() for p in opt.params], [p.grad for p in opt.params],
                                                 opt.state)
        assert all(np.array_equal(a.get("exp_avg"), b.get("exp_avg")) for a, b in zip(before, opt.state))
        opt.step()
        for p, new, state, stepped in zip(opt.params, params, states, opt.state):
            np.testing.assert_allclose(new.numpy(), p.numpy(), rtol=1e-12, atol=1e-15)
            for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
                if key in state:
                    np.testing.assert_allclose(state[key].numpy(), stepped[key], rtol=1e-12)


def test_an_optimizer_without_a_differentiable_step_says_so():
    opt = optim.RMSprop(nn.Linear(2, 1).parameters())
    with pytest.raises(NotImplementedError, match="RMSprop has no differentiable step"):
        opt.differentiable_step([], [], [])

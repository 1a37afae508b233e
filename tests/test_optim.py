"""Tests of linclf.core.optim: update rules against hand-computed steps, purity, state files, schedules."""
from __future__ import annotations

import dataclasses
import inspect
import io
import math

import numpy as np
import pytest

from linclf.core import optim
from linclf.config import OptimizerConfig

EPS = 1e-8
LR = 0.1

# Two gradients for W = [[1., -2.]] chosen so the hand arithmetic stays simple.
G1 = np.array([[3.0, -4.0]])
G2 = np.array([[4.0, 3.0]])

# Expected (step1, step2) per rule, worked out by hand (lr = 0.1, eps = 1e-8):
#   sgd:      -0.1*g1 = [-0.3, 0.4];  -0.1*g2 = [-0.4, -0.3]
#   momentum (mu 0.5): v1 = [-0.3, 0.4]; v2 = 0.5*v1 - 0.1*g2 = [-0.15-0.4, 0.2-0.3] = [-0.55, -0.1]
#   nesterov (mu 0.5): step1 = 1.5*v1 = [-0.45, 0.6];
#                      step2 = -0.5*v1 + 1.5*v2 = [0.15-0.825, -0.2-0.15] = [-0.675, -0.35]
#   adagrad:  cache1 = [9, 16] -> sqrt [3, 4]; cache2 = [25, 25] -> sqrt [5, 5]
#   rmsprop (decay 0.75): cache1 = 0.25*[9, 16] = [2.25, 4] -> sqrt [1.5, 2];
#                         cache2 = 0.75*[2.25, 4] + 0.25*[16, 9] = [5.6875, 5.25]
#   adam (b1 0.5, b2 0.75): t=1: m = [1.5, -2], v = [2.25, 4]; mhat = [3, -4], vhat = [9, 16]
#                           t=2: m = [2.75, 0.5], v = [5.6875, 5.25];
#                                mhat = m/0.75 = [11/3, 2/3], vhat = v/0.4375 = [13, 12]
HAND = {
    "sgd": ({}, [-0.3, 0.4], [-0.4, -0.3]),
    "momentum": ({"momentum": 0.5}, [-0.3, 0.4], [-0.55, -0.1]),
    "nesterov": ({"momentum": 0.5}, [-0.45, 0.6], [-0.675, -0.35]),
    "adagrad": ({}, [-0.3 / (3 + EPS), 0.4 / (4 + EPS)], [-0.4 / (5 + EPS), -0.3 / (5 + EPS)]),
    "rmsprop": ({"decay": 0.75}, [-0.3 / (1.5 + EPS), 0.4 / (2 + EPS)],
                [-0.4 / (math.sqrt(5.6875) + EPS), -0.3 / (math.sqrt(5.25) + EPS)]),
    "adam": ({"beta1": 0.5, "beta2": 0.75}, [-0.3 / (3 + EPS), 0.4 / (4 + EPS)],
             [-0.1 * (11 / 3) / (math.sqrt(13) + EPS), -0.1 * (2 / 3) / (math.sqrt(12) + EPS)]),
}


def test_every_rule_has_a_hand_computed_case() -> None:
    """The table above covers exactly the rules the module offers."""
    assert set(HAND) == set(optim.UPDATES)


@pytest.mark.parametrize("name", optim.UPDATES)
def test_two_steps_match_hand_computation(name: str) -> None:
    """Two steps from W = [[1, -2]] equal the numbers worked out by hand, to 1e-12."""
    kwargs, want1, want2 = HAND[name]
    rule = optim.make_update(name, **kwargs)
    W = np.array([[1.0, -2.0]])
    state = rule.init(W)
    step1, state = rule.update(G1, state, LR)
    np.testing.assert_allclose(step1, [want1], rtol=0, atol=1e-12)
    step2, state = rule.update(G2, state, LR)
    np.testing.assert_allclose(step2, [want2], rtol=0, atol=1e-12)
    assert state.t == 2


def test_sgd_and_momentum_against_their_recurrences() -> None:
    """sgd steps -lr g; momentum keeps v = mu v - lr g and steps v, written out by hand here."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 4))
    sgd, mom = optim.make_update("sgd"), optim.make_update("momentum", momentum=0.9)
    s1, s2 = sgd.init(W), mom.init(W)
    v = np.zeros_like(W)
    for lr in (0.3, 0.1, 0.05):
        g = rng.standard_normal(W.shape)
        a, s1 = sgd.update(g, s1, lr)
        b, s2 = mom.update(g, s2, lr)
        v = 0.9 * v - lr * g
        np.testing.assert_allclose(a, -lr * g, rtol=1e-15, atol=0)
        np.testing.assert_allclose(b, v, rtol=1e-14, atol=1e-16)


# ------------------------------------------------------------ convergence

# (rule, kwargs, lr) chosen for f(W) = 0.5 * sum(a * (W - W*)**2) with a in [1, 10].
CONVEX = [
    ("sgd", {}, 0.1),
    ("momentum", {}, 0.02),
    ("nesterov", {}, 0.02),
    ("adagrad", {}, 1.0),
    ("rmsprop", {}, 0.03),
    ("adam", {}, 0.05),
]


def test_convex_cases_cover_every_rule() -> None:
    """Each rule has a convergence case."""
    assert {c[0] for c in CONVEX} == set(optim.UPDATES)


@pytest.mark.parametrize(("name", "kwargs", "lr"), CONVEX)
def test_rule_minimises_a_convex_quadratic(name: str, kwargs: dict, lr: float) -> None:
    """200 steps bring an ill-conditioned quadratic far below its starting value."""
    rng = np.random.default_rng(1)
    a = rng.uniform(1.0, 10.0, size=(3, 5))
    W_star = rng.standard_normal((3, 5))
    W = W_star + rng.choice([-2.0, 2.0], size=(3, 5))

    def f(W: np.ndarray) -> float:
        return float(0.5 * np.sum(a * (W - W_star) ** 2))

    rule = optim.make_update(name, **kwargs)
    state = rule.init(W)
    losses = [f(W)]
    for _ in range(200):
        step, state = rule.update(a * (W - W_star), state, lr)
        W += step
        losses.append(f(W))
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] * 1e-3
    assert max(losses[-20:]) < losses[0] / 100  # settled, not just passing through a low point


# ----------------------------------------------------------------- purity


@pytest.mark.parametrize("name", optim.UPDATES)
def test_update_does_not_touch_its_inputs(name: str) -> None:
    """update leaves the given state and gradient unchanged and returns fresh arrays."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((4, 6))
    rule = optim.make_update(name)
    _, state = rule.update(rng.standard_normal(W.shape), rule.init(W), 0.1)
    before = {k: np.copy(v) for k, v in optim.state_to_arrays(state).items()}
    g = rng.standard_normal(W.shape)
    g_before = g.copy()
    step, new = rule.update(g, state, 0.1)
    after = optim.state_to_arrays(state)
    for k in before:
        assert np.array_equal(before[k], after[k]), k
    assert np.array_equal(g, g_before)
    assert state.t == 1 and new.t == 2
    for old_arr, new_arr in zip(state[1:], new[1:]):
        assert not np.shares_memory(old_arr, new_arr)
        assert not np.array_equal(old_arr, new_arr)
    assert not np.shares_memory(step, g)


@pytest.mark.parametrize("name", optim.UPDATES)
def test_state_arrays_are_read_only(name: str) -> None:
    """An in-place write into a state array fails loudly."""
    rule = optim.make_update(name)
    W = np.zeros((2, 3))
    for state in (rule.init(W), rule.update(np.ones_like(W), rule.init(W), 0.1)[1]):
        for arr in state[1:]:
            with pytest.raises(ValueError, match="read-only"):
                arr += 1.0


@pytest.mark.parametrize("name", optim.UPDATES)
def test_float32_is_preserved(name: str) -> None:
    """A float32 W keeps float32 steps and state, even with a float64 gradient or lr."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((10, 7)).astype(np.float32)
    rule = optim.make_update(name)
    state = rule.init(W)
    assert all(arr.dtype == np.float32 for arr in state[1:])
    for g in (rng.standard_normal(W.shape).astype(np.float32), rng.standard_normal(W.shape)):
        step, state = rule.update(g, state, np.float64(1e-3))
        assert step.dtype == np.float32
        assert step.shape == W.shape
        assert all(arr.dtype == np.float32 for arr in state[1:])
        W += step
    assert W.dtype == np.float32


# ------------------------------------------------------------ serialising


def _npz_round_trip(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Write arrays to an in-memory .npz and read them back without pickle."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", optim.UPDATES)
def test_state_round_trip_continues_bit_identically(name: str, dtype: type) -> None:
    """A state saved to .npz and restored gives the same steps, bit for bit, as the original."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((10, 9)).astype(dtype)
    rule = optim.make_update(name)
    state = rule.init(W)
    grads = [rng.standard_normal(W.shape).astype(dtype) for _ in range(6)]
    for g in grads[:3]:
        _, state = rule.update(g, state, 0.01)
    arrays = optim.state_to_arrays(state)
    assert set(arrays) == set(type(state)._fields)
    assert arrays["t"].dtype == np.int64 and arrays["t"].shape == ()
    restored = optim.state_from_arrays(name, _npz_round_trip(arrays), W)
    assert type(restored) is type(state) and restored.t == 3
    for g in grads[3:]:
        a, state = rule.update(g, state, 0.01)
        b, restored = rule.update(g, restored, 0.01)
        assert a.dtype == b.dtype == dtype
        assert np.array_equal(a, b)
    for x, y in zip(state[1:], restored[1:]):
        assert np.array_equal(x, y)


def test_restored_state_is_a_copy_in_the_dtype_of_W() -> None:
    """Restoring casts to W's dtype and does not keep a reference to the caller's arrays."""
    W = np.zeros((2, 3), dtype=np.float32)
    v = np.ones((2, 3))
    state = optim.state_from_arrays("momentum", {"t": np.int64(5), "v": v}, W)
    assert state.v.dtype == np.float32 and state.t == 5
    assert not np.shares_memory(state.v, v)


@pytest.mark.parametrize(("name", "arrays", "message"), [
    ("momentum", {"t": np.int64(1)}, "missing: v"),
    ("momentum", {"t": np.int64(1), "v": np.zeros((2, 3)), "m": np.zeros((2, 3))}, "unexpected: m"),
    ("adam", {"t": np.int64(1), "v": np.zeros((2, 3))}, "missing: m"),
    ("momentum", {"t": np.int64(1), "m": np.zeros((2, 3)), "v": np.zeros((2, 3))}, "unexpected: m"),
    ("adagrad", {"t": np.int64(1), "v": np.zeros((2, 3))}, "missing: cache"),
    ("rmsprop", {"t": np.int64(1), "cache": np.zeros((3, 2))}, r"cache has shape \(3, 2\)"),
    ("adam", {"t": np.int64(1), "m": np.zeros((2, 3)), "v": np.zeros((2, 4))}, r"v has shape \(2, 4\)"),
    ("sgd", {"t": np.zeros(1, dtype=np.int64), "v": np.zeros((2, 3))}, "t must be a scalar integer"),
    ("sgd", {"t": np.float64(1.0), "v": np.zeros((2, 3))}, "t must be a scalar integer"),
    ("sgd", {"t": np.int64(-1), "v": np.zeros((2, 3))}, "t must be a scalar integer"),
    ("sgd", {"t": np.int64(1), "v": np.array([["a", "b", "c"]] * 2)}, "must be numeric"),
    ("adamw", {"t": np.int64(1)}, "expected one of: sgd, momentum, nesterov, adagrad, rmsprop, adam"),
])
def test_mismatched_state_arrays_are_rejected(name: str, arrays: dict, message: str) -> None:
    """Wrong names, shapes or counters raise ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=message):
        optim.state_from_arrays(name, arrays, np.zeros((2, 3)))


# -------------------------------------------------------- argument checks


def test_unknown_rule_lists_valid_names() -> None:
    """An unknown update rule names every valid one."""
    with pytest.raises(ValueError, match="'adamw'.*sgd, momentum, nesterov, adagrad, rmsprop, adam"):
        optim.make_update("adamw")


@pytest.mark.parametrize(("name", "kwargs"), [
    ("momentum", {"momentum": 1.0}),
    ("nesterov", {"momentum": -0.1}),
    ("rmsprop", {"decay": 1.0}),
    ("adam", {"beta1": 1.0}),
    ("adam", {"beta2": 1.5}),
    ("adam", {"eps": 0.0}),
    ("adagrad", {"eps": float("nan")}),
])
def test_out_of_range_hyperparameters_are_rejected(name: str, kwargs: dict) -> None:
    """Hyperparameters outside their range raise ValueError naming them."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        optim.make_update(name, **kwargs)


@pytest.mark.parametrize("name", optim.UPDATES)
def test_gradient_of_the_wrong_shape_is_rejected(name: str) -> None:
    """A gradient whose shape differs from W's raises ValueError."""
    rule = optim.make_update(name)
    with pytest.raises(ValueError, match="shape"):
        rule.update(np.zeros((3, 2)), rule.init(np.zeros((2, 3))), 0.1)


def test_integer_W_is_rejected() -> None:
    """State needs a floating-point W."""
    with pytest.raises(ValueError, match="floating"):
        optim.make_update("adam").init(np.zeros((2, 3), dtype=np.int64))


def test_names_and_defaults_match_the_config_schema() -> None:
    """UPDATES / SCHEDULES and every keyword default equal the config's choices and defaults."""
    fields = {f.name: f for f in dataclasses.fields(OptimizerConfig)}
    assert optim.UPDATES == fields["update"].metadata["spec"].choices
    assert optim.SCHEDULES == fields["schedule"].metadata["spec"].choices
    cfg = OptimizerConfig()
    for fn in (optim.make_update, optim.lr_at):
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                assert p.default == getattr(cfg, p.name), (fn.__name__, p.name)


# -------------------------------------------------------------- schedules


@pytest.mark.parametrize(("schedule", "epoch", "kwargs", "want"), [
    ("constant", 0.0, {}, 0.1),
    ("constant", 37.5, {}, 0.1),
    # step: lr * 0.5 ** floor(epoch / 5) with the defaults
    ("step", 0.0, {}, 0.1),
    ("step", 4.99, {}, 0.1),
    ("step", 5.0, {}, 0.05),
    ("step", 12.3, {}, 0.025),
    ("step", 3.0, {"step_every": 1.5, "gamma": 0.1}, 0.001),
    # exponential: lr * 0.5 ** epoch
    ("exponential", 0.0, {}, 0.1),
    ("exponential", 1.0, {}, 0.05),
    ("exponential", 3.0, {}, 0.0125),
    ("exponential", 0.5, {}, 0.07071067811865475),
    ("exponential", 2.0, {"gamma": 0.9}, 0.081),
    # cosine over 10 epochs to lr_min = 0.01: 0.01 + 0.045 * (1 + cos(pi * e / 10))
    ("cosine", 0.0, {"lr_min": 0.01}, 0.1),
    ("cosine", 2.5, {"lr_min": 0.01}, 0.08681980515339464),
    ("cosine", 5.0, {"lr_min": 0.01}, 0.055),
    ("cosine", 10.0, {"lr_min": 0.01}, 0.01),
    ("cosine", 14.0, {"lr_min": 0.01}, 0.01),
    ("cosine", 5.0, {}, 0.05),
    ("cosine", 10.0, {}, 0.0),
    # inverse_time: lr / (1 + 0.1 * epoch)
    ("inverse_time", 0.0, {}, 0.1),
    ("inverse_time", 10.0, {}, 0.05),
    ("inverse_time", 30.0, {}, 0.025),
    ("inverse_time", 2.0, {"k": 0.5}, 0.05),
])
def test_schedule_values(schedule: str, epoch: float, kwargs: dict, want: float) -> None:
    """Each schedule at chosen epochs equals the hand-computed learning rate."""
    got = optim.lr_at(schedule, 0.1, epoch, 10.0, **kwargs)
    assert type(got) is float
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_cosine_endpoints_are_exact() -> None:
    """Cosine starts at lr and ends at lr_min (and stays there past the end)."""
    for total in (1.0, 3.0, 7.5, 100.0):
        assert optim.lr_at("cosine", 0.3, 0.0, total, lr_min=0.002) == 0.3
        assert optim.lr_at("cosine", 0.3, total, total, lr_min=0.002) == pytest.approx(0.002, abs=1e-17)
        assert optim.lr_at("cosine", 0.3, 2 * total, total, lr_min=0.002) == pytest.approx(0.002, abs=1e-17)


@pytest.mark.parametrize("schedule", optim.SCHEDULES)
def test_schedules_never_increase(schedule: str) -> None:
    """Every schedule is non-increasing in the epoch and starts at lr."""
    epochs = np.linspace(0.0, 12.0, 97)
    lrs = [optim.lr_at(schedule, 0.1, e, 10.0) for e in epochs]
    assert lrs[0] == 0.1
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))


def test_unknown_schedule_is_rejected() -> None:
    """An unknown schedule names every valid one."""
    with pytest.raises(ValueError, match="'linear'.*constant, step, exponential, cosine, inverse_time"):
        optim.lr_at("linear", 0.1, 1.0, 10.0)


def test_cosine_needs_a_positive_length() -> None:
    """A cosine schedule over zero epochs is an error, not a division by zero."""
    with pytest.raises(ValueError, match="total_epochs"):
        optim.lr_at("cosine", 0.1, 0.0, 0.0)

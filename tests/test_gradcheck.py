"""Gradient checking: finite differences, sparse checks, the three-part loss check, kinks."""
from __future__ import annotations

import numpy as np
import pytest

from linclf.core.gradcheck import (
    DEFAULT_THRESHOLDS, RESOLUTION, Check, as_plain, check_loss, numerical_gradient, rel_error, sparse_check,
)
from linclf.core.losses import linear_loss, softmax_loss

A = np.array([[0.5, 2.0, -1.0], [3.0, 0.25, 1.5]])     # f(W) = sum(A * W^2) + sum(B * W)
B = np.array([[1.0, -2.0, 0.0], [0.5, 0.0, -1.0]])


def quadratic(W: np.ndarray) -> float:
    """A smooth function with a known gradient 2 A W + B and curvature 2 A."""
    return float(np.sum(A * W * W) + np.sum(B * W))


def quadratic_grad(W: np.ndarray) -> np.ndarray:
    """The exact gradient of ``quadratic``."""
    return 2 * A * W + B


def unit_problem(N=30, C=4, D=6, seed=0):
    """Unit-scale float64 data (no kink trouble at h = 1e-5 for softmax)."""
    rng = np.random.default_rng(seed)
    return 0.3 * rng.standard_normal((C, D)), rng.standard_normal((N, D)), rng.integers(0, C, N)


# ----------------------------------------------------------------------------- rel_error

def test_rel_error():
    assert rel_error(1.0, 1.0) == 0.0
    assert rel_error(0.0, 0.0) == 0.0                   # both zero: no error, not NaN
    assert rel_error(1.0, -1.0) == 1.0
    assert rel_error(1.0, 0.0) == 1.0
    assert rel_error(1.01, 1.0) == pytest.approx(0.01 / 2.01)
    out = rel_error(np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.0, 1 / 3])
    assert isinstance(rel_error(np.float32(1), 2), float)


# ----------------------------------------------------------------------------- numerical_gradient

def test_centered_is_exact_and_forward_is_off_by_h_times_curvature_on_a_quadratic():
    W = np.array([[0.3, -1.0, 2.0], [0.0, 0.7, -0.2]])
    h = 1e-4
    true = quadratic_grad(W)
    centered = numerical_gradient(quadratic, W, h=h, method="centered")
    forward = numerical_gradient(quadratic, W, h=h, method="forward")
    np.testing.assert_allclose(centered, true, rtol=1e-8, atol=1e-9)
    # forward: (f(w + h) - f(w)) / h = f'(w) + A h exactly for a quadratic
    np.testing.assert_allclose(forward - true, A * h, rtol=1e-4, atol=1e-9)
    assert np.max(rel_error(forward, true)) > 100 * np.max(rel_error(centered, true))


@pytest.mark.parametrize("method", ["centered", "forward"])
def test_numerical_gradient_restores_w(method):
    W = np.random.default_rng(0).standard_normal((3, 4))
    keep = W.copy()
    numerical_gradient(lambda V: float(np.sum(np.sin(V))), W, method=method)
    np.testing.assert_array_equal(W, keep)


def test_numerical_gradient_restores_w_when_f_raises():
    W = np.random.default_rng(0).standard_normal((2, 2))
    keep = W.copy()
    calls = []

    def flaky(V):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return float(V.sum())

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(flaky, W)
    np.testing.assert_array_equal(W, keep)


def test_numerical_gradient_accepts_loss_grad_tuples_and_float32():
    W, X, y = unit_problem()
    num = numerical_gradient(lambda V: softmax_loss(V, X, y), W)      # (loss, dW) tuple: its loss is used
    np.testing.assert_allclose(num, softmax_loss(W, X, y)[1], rtol=1e-6, atol=1e-9)
    W32 = np.array([[0.5, -0.25]], dtype=np.float32)
    num32 = numerical_gradient(lambda V: float(np.sum(V.astype(np.float64) ** 2)), W32, h=1e-2)
    np.testing.assert_allclose(num32, 2 * W32, rtol=1e-5)             # divided by the step actually taken


def test_numerical_gradient_rejects_unusable_w():
    with pytest.raises(ValueError, match="writable floating-point"):
        numerical_gradient(quadratic, np.zeros((2, 3), dtype=int))        # integer: cannot hold W + h
    frozen = np.zeros((2, 3))
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable floating-point"):
        numerical_gradient(quadratic, frozen)


def test_unknown_method():
    with pytest.raises(ValueError, match="centered"):
        numerical_gradient(quadratic, np.zeros((2, 3)), method="backward")


# ----------------------------------------------------------------------------- sparse_check

def test_sparse_check_is_reproducible_with_a_seeded_rng():
    W = np.random.default_rng(1).standard_normal((2, 3))
    g = quadratic_grad(W)
    first = sparse_check(quadratic, W, g, checks=8, rng=np.random.default_rng(5))
    second = sparse_check(quadratic, W, g, checks=8, rng=np.random.default_rng(5))
    other = sparse_check(quadratic, W, g, checks=8, rng=np.random.default_rng(6))
    assert first == second
    assert [c.index for c in first] != [c.index for c in other]
    assert all(isinstance(c, Check) and len(c.index) == 2 for c in first)
    assert all(c.rel_error < 1e-8 and not c.kink for c in first)


def test_sparse_check_reports_a_wrong_gradient_and_kinks():
    W = np.random.default_rng(1).standard_normal((2, 3))
    wrong = quadratic_grad(W)
    wrong[0, 1] *= -1
    found = sparse_check(quadratic, W, wrong, checks=40, rng=np.random.default_rng(0),
                         kink=lambda index, h: index == (1, 2))
    bad = [c for c in found if c.index == (0, 1)]
    assert bad and all(c.rel_error == pytest.approx(1.0) for c in bad)
    assert all(c.kink == (c.index == (1, 2)) for c in found)
    assert all(c.rel_error < 1e-8 for c in found if c.index != (0, 1))


def test_sparse_check_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"analytic gradient has shape \(3, 2\), W has \(2, 3\)"):
        sparse_check(quadratic, np.zeros((2, 3)), np.zeros((3, 2)), rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------- check_loss

@pytest.mark.parametrize("loss", ["svm", "softmax", "squared_hinge"])
@pytest.mark.parametrize("reg,reg_bias", [(0.0, True), (0.4, True), (0.4, False)])
def test_check_loss_passes_correct_gradients(loss, reg, reg_bias):
    W, X, y = unit_problem()
    keep = W.copy()
    out = check_loss(W, X, y, loss=loss, reg=reg, reg_bias=reg_bias, checks=15, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(W, keep)
    assert out["passed"], {k: (p["worst_rel_error"], p["worst_index"]) for k, p in out["parts"].items()}
    assert set(out["parts"]) == {"data", "reg", "total"}
    assert out["threshold"] == DEFAULT_THRESHOLDS["centered"]
    v = out["values"]
    ref = linear_loss(loss, W, X, y, reg)[0]
    if reg_bias:
        assert v["total"] == pytest.approx(ref, rel=1e-12)
    assert v["total"] == pytest.approx(v["data"] + v["reg"])
    for part in out["parts"].values():
        assert len(part["checks"]) == 15 and part["checked"] + part["kinks"] == 15
        assert part["worst_rel_error"] is not None and part["worst_rel_error"] <= 1e-7
    # the three parts look at the same coordinates
    idx = [[c.index for c in p["checks"]] for p in out["parts"].values()]
    assert idx[0] == idx[1] == idx[2]


@pytest.mark.parametrize("loss", ["svm", "softmax", "squared_hinge"])
@pytest.mark.parametrize("method", ["centered", "forward"])
def test_check_loss_catches_a_sign_flip(loss, method):
    W, X, y = unit_problem(C=2, D=2, seed=3)        # 4 entries: 40 checks hit the flipped one
    true = linear_loss(loss, W, X, y)[1]

    def flipped(V):
        g = linear_loss(loss, V, X, y)[1]
        g[1, 0] *= -1
        return g

    assert abs(true[1, 0]) > 1e-3
    out = check_loss(W, X, y, loss=loss, reg=0.1, checks=40, method=method, rng=np.random.default_rng(0),
                     grad_fn=flipped)
    assert not out["passed"]
    assert not out["parts"]["data"]["passed"] and out["parts"]["data"]["worst_index"] == (1, 0)
    assert out["parts"]["reg"]["passed"]
    assert not out["parts"]["total"]["passed"]


@pytest.mark.parametrize("loss", ["svm", "softmax", "squared_hinge"])
def test_check_loss_catches_a_one_percent_error_with_centered_differences(loss):
    W, X, y = unit_problem(seed=4)
    out = check_loss(W, X, y, loss=loss, checks=10, rng=np.random.default_rng(1),
                     grad_fn=lambda V: 1.01 * linear_loss(loss, V, X, y)[1])
    assert not out["parts"]["data"]["passed"]
    assert out["parts"]["data"]["worst_rel_error"] == pytest.approx(0.01 / 2.01, rel=1e-3)
    loose = check_loss(W, X, y, loss=loss, checks=10, rng=np.random.default_rng(1),
                       grad_fn=lambda V: 1.01 * linear_loss(loss, V, X, y)[1], threshold=1e-2)
    assert loose["passed"]                               # an explicit threshold replaces the default


@pytest.mark.parametrize("loss", ["svm", "softmax", "squared_hinge"])
def test_check_loss_checks_the_labels_even_with_an_injected_gradient(loss):
    W, X, y = unit_problem()
    y = y.copy()
    y[0] = W.shape[0]                                  # one label past the last class
    with pytest.raises(ValueError, match=rf"labels must be in \[0, {W.shape[0]}\)"):
        check_loss(W, X, y, loss=loss, checks=3, rng=np.random.default_rng(0), grad_fn=lambda V: np.zeros_like(V))
    with pytest.raises(ValueError, match="at least one example; X has 0 rows"):
        check_loss(W, X[:0], y[:0], loss=loss, checks=3, rng=np.random.default_rng(0))


def test_check_loss_reports_svm_kinks_without_failing():
    # scores (1, 0) for an example of class 0: the margin of class 1 is exactly 0 (a kink of the hinge)
    W = np.array([[1.0, 0.0], [0.0, 1.0]])
    X = np.array([[1.0, 0.0], [0.0, 3.0]])
    y = np.array([0, 1])
    out = check_loss(W, X, y, loss="svm", checks=40, rng=np.random.default_rng(0))
    data = out["parts"]["data"]
    assert data["kinks"] > 0 and data["passed"] and out["passed"]
    kinked = {c.index for c in data["checks"] if c.kink}
    assert kinked == {(0, 0), (1, 0)}                    # the entries that multiply x_0 = 1 in the first row
    # at the kink the numerical slope is the average of the two sides, not the analytic subgradient
    assert any(c.rel_error > 0.1 for c in data["checks"] if c.kink)


@pytest.mark.parametrize("factor", [0.0, -1.0, 2.0])
@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_a_wrong_gradient_never_passes_within_an_error_bound_larger_than_the_gradient(loss, factor):
    """float32 W (an estimator's W_): rounding bounds near 1 against gradients near 1e-2; a zero, sign-flipped or
    doubled gradient passed within them. Now such coordinates are not judged, and a check with none is not passed."""
    rng = np.random.default_rng(0)
    X = np.hstack([rng.standard_normal((100, 30)), np.ones((100, 1))]).astype(np.float32)
    y = rng.integers(0, 10, 100)
    W32 = (1e-4 * rng.standard_normal((10, 31))).astype(np.float32)
    out = check_loss(W32, X, y, loss=loss, reg=0.01, checks=20, rng=np.random.default_rng(1),
                     grad_fn=lambda V: factor * linear_loss(loss, V.astype(np.float64), X.astype(np.float64), y)[1])
    assert not out["passed"] and not out["parts"]["data"]["passed"]
    for c in out["parts"]["data"]["checks"]:
        if c.bound >= RESOLUTION * max(abs(c.analytic), abs(c.numerical)):
            assert not c.passes(DEFAULT_THRESHOLDS["centered"])


def test_a_part_with_every_coordinate_at_a_kink_is_inconclusive_not_passed():
    W = np.array([[0.5, 0.5], [0.0, 0.0]])
    X = np.array([[1.0, 1.0]])                          # scores (1, 0), class 0: class 1's margin is exactly 0
    out = check_loss(W, X, np.array([0]), loss="svm", checks=10, rng=np.random.default_rng(0),
                     grad_fn=lambda V: np.zeros_like(V))                # wrong, but nothing can show it
    data = out["parts"]["data"]
    assert (data["kinks"], data["checked"], data["passed"], data["inconclusive"]) == (10, 0, False, True)
    assert out["parts"]["reg"]["passed"] and not out["passed"]


def test_an_h_below_the_spacing_of_w_is_a_clear_error():
    W, X, y = unit_problem()
    with pytest.raises(ValueError, match=r"h=1e-30 is below the spacing of W's float64 values at W\[0, 0\]"):
        numerical_gradient(lambda V: float((V ** 2).sum()), W, h=1e-30)
    with pytest.raises(ValueError, match="below the spacing of W's float16 values"):
        check_loss(W.astype(np.float16), X, y, loss="softmax", checks=3, rng=np.random.default_rng(0))


def test_check_loss_result_converts_to_plain_dicts():
    W, X, y = unit_problem(seed=6)
    plain = as_plain(check_loss(W, X, y, loss="svm", checks=3, rng=np.random.default_rng(0)))
    first = plain["parts"]["data"]["checks"][0]
    assert set(first) == {"index", "analytic", "numerical", "rel_error", "kink", "bound"}


def test_forward_threshold_passes_correct_gradients_on_unit_scale_data():
    W, X, y = unit_problem(seed=7)
    W = W + np.sign(W) * 0.05                            # |W| well above h / threshold for the L2 part
    for loss in ("svm", "softmax"):
        out = check_loss(W, X, y, loss=loss, reg=0.1, checks=30, method="forward", rng=np.random.default_rng(2))
        assert out["passed"], {k: p["worst_rel_error"] for k, p in out["parts"].items()}
        assert out["threshold"] == DEFAULT_THRESHOLDS["forward"]


def test_check_loss_rejects_unknown_loss():
    W, X, y = unit_problem()
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        check_loss(W, X, y, loss="hinge", rng=np.random.default_rng(0))

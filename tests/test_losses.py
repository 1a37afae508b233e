"""Losses: vectorized vs naive, ties and zero margins, stability, dtypes, folded preprocessing, gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import preprocessed
from linclf.core.gradcheck import numerical_gradient
from linclf.core.losses import (
    SCORE_LOSSES, hinge_kink, hinge_margins, initial_loss, l2_reg, linear_loss, score_loss, scores_loss, softmax_loss,
    softmax_loss_naive, squared_hinge_loss, squared_hinge_loss_naive, svm_loss, svm_loss_naive,
)
from linclf.core.objective import Objective, data_loss
from linclf.core.preprocess import fold

VECTORIZED = {"svm": svm_loss, "softmax": softmax_loss, "squared_hinge": squared_hinge_loss}
NAIVE = {"svm": svm_loss_naive, "softmax": softmax_loss_naive, "squared_hinge": squared_hinge_loss_naive}
LOSSES = ["svm", "softmax", "squared_hinge"]
HINGES = ("svm", "squared_hinge")          # the losses with a margin delta


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to max |b| (0 when both are 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b), initial=0.0)
    diff = np.max(np.abs(a - b), initial=0.0)
    return diff / scale if scale else diff


def norm_rel(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b||."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def problem(N: int, C: int, D: int, seed: int = 0, w_scale: float = 0.1):
    """Random float64 W (C, D), X (N, D), y (N,) with every class index in range."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((C, D)) * w_scale, rng.standard_normal((N, D)), rng.integers(0, C, N)


def call(loss: str, fn, W, X, y, reg=0.0, delta=1.0):
    """fn(W, X, y, reg) with delta for the hinge losses."""
    return fn(W, X, y, reg, delta) if loss in HINGES else fn(W, X, y, reg)


# ----------------------------------------------------------------------------- vectorized vs naive

@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reg", [0.0, 0.37])
@pytest.mark.parametrize("N,C,D", [(1, 2, 1), (5, 3, 4), (17, 10, 33), (100, 10, 3073), (600, 4, 20)])
def test_vectorized_matches_naive(loss, reg, N, C, D):
    W, X, y = problem(N, C, D, seed=N + C + D)
    got = call(loss, VECTORIZED[loss], W, X, y, reg)
    ref = call(loss, NAIVE[loss], W, X, y, reg)
    assert abs(got[0] - ref[0]) <= 1e-10 * abs(ref[0])
    assert got[1].shape == W.shape
    assert max_rel(got[1], ref[1]) <= 1e-10


@pytest.mark.parametrize("delta", [1.0, 2.0])
def test_svm_ties_and_exact_zero_margins_match_naive(delta):
    rng = np.random.default_rng(3)
    W = rng.integers(-2, 3, (6, 5)).astype(np.float64)
    X = rng.integers(-2, 3, (80, 5)).astype(np.float64)
    y = rng.integers(0, 6, 80)
    margins = hinge_margins(W, X, y, delta)
    off = np.ones_like(margins, dtype=bool)
    off[np.arange(80), y] = False
    assert np.sum(margins[off] == 0) > 10          # the construction really has margins of exactly 0
    scores = X @ W.T
    assert np.sum(scores[off] == np.repeat(scores[np.arange(80), y], 5)) > 0  # and ties with the correct score
    for reg in (0.0, 0.5):
        got, ref = svm_loss(W, X, y, reg, delta), svm_loss_naive(W, X, y, reg, delta)
        assert got[0] == pytest.approx(ref[0], rel=1e-12)
        assert max_rel(got[1], ref[1]) <= 1e-12   # a different mask would differ by 1/N, not by rounding


def test_zero_margin_counts_as_zero_in_both_versions():
    W = np.array([[1.0, 0.0], [0.0, 1.0]])
    X = np.array([[1.0, 0.0]])                  # scores (1, 0), y = 0: the margin of class 1 is 0 - 1 + 1 = 0
    y = np.array([0])
    for fn in (svm_loss, svm_loss_naive):
        value, dW = fn(W, X, y)
        assert value == 0.0
        np.testing.assert_array_equal(dW, np.zeros_like(W))
    value, dS = scores_loss("svm", np.array([[1.0, 0.0]]), y)
    assert value == 0.0 and not dS.any()


@pytest.mark.parametrize("reg", [0.0, 0.2])
def test_softmax_ties_match_naive(reg):
    rng = np.random.default_rng(4)
    W = np.repeat(rng.integers(-1, 2, (1, 6)).astype(np.float64), 4, axis=0)  # identical templates: all scores tie
    X = rng.integers(-3, 4, (30, 6)).astype(np.float64)
    y = rng.integers(0, 4, 30)
    got, ref = softmax_loss(W, X, y, reg), softmax_loss_naive(W, X, y, reg)
    assert got[0] == pytest.approx(math.log(4) + reg * np.sum(W * W), rel=1e-12)
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    assert max_rel(got[1], ref[1]) <= 1e-12


# ----------------------------------------------------------------------------- sanity, stability, dtypes

@pytest.mark.parametrize("loss,expected", [("svm", 9.0), ("softmax", math.log(10)), ("squared_hinge", 10.0)])
def test_small_weights_give_chance_loss(loss, expected):
    rng = np.random.default_rng(0)
    X = np.hstack([rng.standard_normal((500, 3072)), np.ones((500, 1))])
    W = 1e-4 * rng.standard_normal((10, 3073))                 # scores ~ 0.005: every margin ~ delta
    value, _ = VECTORIZED[loss](W, X, rng.integers(0, 10, 500))
    assert value == pytest.approx(expected, abs=1e-3 if loss == "softmax" else 0.02)
    assert initial_loss(loss, 10) == expected


def test_squared_hinge_by_hand():
    # two classes against the rest: scores (2, -0.5) for label 0 and (0.25, 3) for label 1, delta 1
    scores = np.array([[2.0, -0.5], [0.25, 3.0]])
    value, dS = scores_loss("squared_hinge", scores, np.array([0, 1]))
    # row 0: correct 1 - 2 < 0 -> 0; other 1 + (-0.5) = 0.5 -> 0.25. row 1: other 1.25 -> 1.5625; correct < 0
    assert value == pytest.approx((0.25 + 1.5625) / 2, rel=1e-15)
    np.testing.assert_allclose(dS, np.array([[0.0, 2 * 0.5], [2 * 1.25, 0.0]]) / 2, rtol=1e-15)
    value, dS = scores_loss("squared_hinge", scores, np.array([1, 0]), delta=2.0)
    # row 0: other 2 + 2 = 4 -> 16, correct 2 + 0.5 -> 6.25; row 1: correct 2 - 0.25 -> 3.0625, other 5 -> 25
    assert value == pytest.approx((16 + 6.25 + 3.0625 + 25) / 2, rel=1e-15)
    np.testing.assert_allclose(dS, np.array([[2 * 4, -2 * 2.5], [-2 * 1.75, 2 * 5]]) / 2, rtol=1e-15)


@pytest.mark.parametrize("loss", LOSSES)
def test_linear_loss_by_name_is_the_named_loss(loss):
    W, X, y = problem(30, 4, 7, seed=2)
    got = linear_loss(loss, W, X, y, 0.2, 1.5)
    want = call(loss, VECTORIZED[loss], W, X, y, 0.2, 1.5)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; expected one of \['softmax', 'squared_hinge', 'svm'\]"):
        initial_loss("hinge", 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_huge_scores_stay_finite(dtype):
    scores = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    y = np.array([1, 0])
    value, dS = scores_loss("softmax", scores, y)
    assert np.isfinite(value) and np.all(np.isfinite(dS))
    assert value == pytest.approx((2e4 + (2e4 + math.log(2))) / 2, rel=1e-6)
    W = np.array([[1e4, 0.0], [-1e4, 0.0], [0.0, 1e4]], dtype=dtype)   # scores of +-1e4 from W x
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], dtype=dtype)
    value, dW = softmax_loss(W, X, np.array([1, 0, 2]))
    assert np.isfinite(value) and np.all(np.isfinite(dW)) and dW.dtype == dtype


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(loss, dtype):
    W, X, y = problem(40, 10, 3073, seed=1)
    W, X = W.astype(dtype), X.astype(dtype)
    value, dW = call(loss, VECTORIZED[loss], W, X, y, 0.1)
    assert isinstance(value, float) and dW.dtype == dtype
    assert scores_loss(loss, X @ W.T, y)[1].dtype == dtype
    assert l2_reg(W, 0.1)[1].dtype == dtype
    Xu = np.random.default_rng(0).integers(0, 256, (40, 3072), dtype=np.uint8)
    assert data_loss(W, Xu, y, loss, mean=np.full(3072, 120.0, dtype=np.float32))[1].dtype == dtype


def test_float32_data_computes_in_float32_even_with_float64_weights():
    W, X, y = problem(20, 10, 50)
    value, dW = svm_loss(W, X.astype(np.float32), y)
    assert dW.dtype == np.float32
    assert value == pytest.approx(svm_loss(W, X, y)[0], rel=1e-5)


def test_score_losses_divide_by_count():
    rng = np.random.default_rng(2)
    s, y = rng.standard_normal((12, 5)), rng.integers(0, 5, 12)
    for name in SCORE_LOSSES:
        full, d_full = scores_loss(name, s, y)
        part, d_part = scores_loss(name, s, y, count=48)
        assert part == pytest.approx(full / 4, rel=1e-12)
        np.testing.assert_allclose(d_part, d_full / 4, rtol=1e-12)


def test_scores_losses_leave_scores_untouched():
    s = np.random.default_rng(0).standard_normal((9, 4))
    keep = s.copy()
    for name in SCORE_LOSSES:
        scores_loss(name, s, np.arange(9) % 4)
        score_loss(name)(s, np.arange(9) % 4, 9)
    np.testing.assert_array_equal(s, keep)


# ----------------------------------------------------------------------------- l2_reg

def test_l2_reg_with_and_without_bias():
    W = np.arange(12, dtype=np.float64).reshape(3, 4) - 5
    value, dW = l2_reg(W, 0.5)
    assert value == pytest.approx(0.5 * np.sum(W * W))
    np.testing.assert_array_equal(dW, W)                    # 2 * 0.5 * W
    value, dW = l2_reg(W, 0.5, reg_bias=False)
    assert value == pytest.approx(0.5 * np.sum(W[:, :-1] ** 2))
    np.testing.assert_array_equal(dW[:, :-1], W[:, :-1])
    np.testing.assert_array_equal(dW[:, -1], 0)
    assert np.all(W[:, -1] != 0)                            # so the last column really was left out


def test_l2_reg_gradient_is_numerical_gradient():
    W = np.random.default_rng(0).standard_normal((3, 5))
    for reg_bias in (True, False):
        num = numerical_gradient(lambda V: l2_reg(V, 0.7, reg_bias)[0], W)
        np.testing.assert_allclose(l2_reg(W, 0.7, reg_bias)[1], num, rtol=1e-7, atol=1e-9)


# ----------------------------------------------------------------------------- data_loss (folded preprocessing)

def raw_problem(N: int, P: int, C: int = 10, seed: int = 0, dtype=np.float64):
    """uint8 X (N, P), y, and mean/scale arrays like a fitted preprocessor's."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (N, P), dtype=np.uint8)
    mean = X.mean(axis=0)
    scale = 1.0 / (X.std(axis=0) + 1.0)
    return X, rng.integers(0, C, N), mean.astype(dtype), scale.astype(dtype)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("use_mean", [False, True])
@pytest.mark.parametrize("use_scale", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("block", [None, 7, 32, 96, 500])
def test_data_loss_equals_explicit_preprocessing_float64(loss, use_mean, use_scale, bias, block):
    X, y, mean, scale = raw_problem(96, 3072)
    mean, scale = (mean if use_mean else None), (scale if use_scale else None)
    W = 1e-3 * np.random.default_rng(1).standard_normal((10, 3072 + bias))
    got = data_loss(W, X, y, loss, mean=mean, scale=scale, bias=bias, block=block)
    ref = call(loss, VECTORIZED[loss], W, preprocessed(X, mean, scale, bias), y)
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    assert got[1].shape == W.shape
    assert max_rel(got[1], ref[1]) <= 1e-10


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("use_scale", [False, True])
@pytest.mark.parametrize("block", [None, 33, 100])
def test_data_loss_float32_close_to_float64_reference(loss, use_scale, block):
    X, y, mean, scale = raw_problem(100, 3072, seed=2, dtype=np.float32)
    scale = scale if use_scale else None
    W = 1e-3 * np.random.default_rng(2).standard_normal((10, 3073))
    got = data_loss(W.astype(np.float32), X, y, loss, mean=mean, scale=scale, block=block)
    ref = call(loss, VECTORIZED[loss], W, preprocessed(X, mean.astype(np.float64),
                                                   None if scale is None else scale.astype(np.float64), True), y)
    assert got[1].dtype == np.float32
    assert got[0] == pytest.approx(ref[0], rel=1e-4)
    assert norm_rel(got[1], ref[1]) <= 1e-4


@pytest.mark.parametrize("loss", LOSSES)
def test_data_loss_blocks_and_float_input_agree(loss):
    X, y, mean, scale = raw_problem(300, 3072, seed=5)
    W = 1e-3 * np.random.default_rng(5).standard_normal((10, 3073))
    ref = data_loss(W, X, y, loss, mean=mean, scale=scale, block=50)
    other = data_loss(W, X, y, loss, mean=mean, scale=scale)
    assert max_rel(other[1], ref[1]) <= 1e-12
    got = data_loss(W, X.astype(np.float64), y, loss, mean=mean, scale=scale)   # float rows used in place
    assert max_rel(got[1], ref[1]) <= 1e-12
    got = data_loss(W, np.asfortranarray(X.astype(np.float32)), y, loss, mean=mean, scale=scale)
    assert max_rel(got[1], ref[1]) <= 1e-12


def test_data_loss_large_n_uses_threads_and_matches_vectorized():
    X, y, mean, _ = raw_problem(1500, 64, seed=6)
    W = 0.01 * np.random.default_rng(6).standard_normal((10, 65))
    got = data_loss(W, X, y, "softmax", mean=mean)
    ref = softmax_loss(W, preprocessed(X, mean, None, True), y)
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    assert max_rel(got[1], ref[1]) <= 1e-10


def test_fold_matches_explicit_scores():
    X, _, mean, scale = raw_problem(20, 30, seed=7)
    W = np.random.default_rng(7).standard_normal((4, 31))
    A, b = fold(W, mean, scale, True)
    np.testing.assert_allclose(X @ A.T + b, preprocessed(X, mean, scale, True) @ W.T, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bad, message", [
    (dict(W=np.zeros((10, 3072))), r"W must be \(C, 3073\)"),            # bias=True needs 3073 columns
    (dict(y=np.full(5, 10)), r"labels must be in \[0, 10\)"),             # label out of range
    (dict(y=np.zeros(4, dtype=int)), r"y must have shape \(5,\)"),        # wrong length
    (dict(y=np.zeros(5)), "integer class indices"),                       # float labels
    (dict(loss="hinge"), "unknown loss 'hinge'"),
    (dict(mean=np.zeros(10)), r"mean must have shape \(3072,\)"),
    (dict(block=0), "block must be a positive number of rows"),
    (dict(X=np.zeros((5, 3072), dtype=complex)), "X must hold real numbers"),
])
def test_data_loss_rejects_bad_arguments(bad, message):
    args = dict(W=np.zeros((10, 3073)), X=np.zeros((5, 3072), dtype=np.uint8), y=np.zeros(5, dtype=int),
                loss="svm", mean=None, block=None)
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        data_loss(args["W"], args["X"], args["y"], args["loss"], mean=args["mean"], block=args["block"])


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("y, W, message", [
    (np.array([0, -1]), np.zeros((3, 4)), r"labels must be in \[0, 3\)"),   # -1 wrapped to the last class
    (np.array([0.0, 1.0]), np.zeros((3, 4)), "integer class indices"),
    (np.array([0, 1]), np.zeros((4, 3)), "the same D; got W"),                # W as (D, C)
])
def test_naive_and_vectorized_refuse_the_same_inputs(loss, y, W, message):
    X = np.ones((2, 4))
    for fn in (NAIVE[loss], VECTORIZED[loss]):
        with pytest.raises(ValueError, match=message):
            fn(W, X, y)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("hyper, message", [
    (dict(reg=-1e-3), r"reg must be a finite number >= 0, got -0.001"),    # would reward large weights
    (dict(reg=float("nan")), "reg must be a finite number >= 0, got nan"),
    (dict(delta=0.0), "delta must be a finite number > 0, got 0.0"),       # W = 0 would already be optimal
    (dict(delta=-1.0), "delta must be a finite number > 0, got -1.0"),
])
def test_naive_and_vectorized_refuse_the_same_hyperparameters(loss, hyper, message):
    X, y = np.ones((2, 4)), np.array([0, 1])
    if loss == "softmax" and "delta" in hyper:               # softmax has no margin: any delta is unused
        assert scores_loss(loss, np.zeros((2, 3)), y, **hyper)[0] == pytest.approx(math.log(3))
        return
    for fn in (NAIVE[loss], VECTORIZED[loss]):
        with pytest.raises(ValueError, match=message):
            fn(np.zeros((3, 4)), X, y, **hyper)
    if "delta" in hyper:                                    # the score-level form and the engine's kernel
        with pytest.raises(ValueError, match=message):
            scores_loss(loss, np.zeros((2, 3)), y, **hyper)
        with pytest.raises(ValueError, match=message):
            score_loss(loss, **hyper)
    else:                                                   # the L2 term alone and the training engine
        with pytest.raises(ValueError, match=message):
            l2_reg(np.zeros((3, 4)), **hyper)
        with pytest.raises(ValueError, match=message):
            Objective(X, y, 3, loss=loss, **hyper)


def test_vectorized_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="the same D; got W"):
        svm_loss(np.zeros((3, 4)), np.zeros((2, 5)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="count=0 examples"):
        softmax_loss(np.zeros((3, 4)), np.zeros((0, 4)), np.zeros(0, dtype=int))   # mean over no examples


# ----------------------------------------------------------------------------- gradients

def smooth_coordinates(W, X, y, loss, h=1e-5):
    """Mask (W's shape) of coordinates without a hinge kink (or a squared hinge's jump in curvature) within +-h
    (all True for softmax)."""
    mask = np.ones(W.shape, dtype=bool)
    if loss in ("svm", "squared_hinge"):
        test = kink if loss == "svm" else squared_kink
        for index in np.ndindex(*W.shape):
            mask[index] = not test(W, X, y, index, h)
    return mask


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_gradient_matches_numerical(loss, reg):
    W, X, y = problem(8, 3, 5, seed=11, w_scale=0.5)
    fn = VECTORIZED[loss]
    analytic = call(loss, fn, W, X, y, reg)[1]
    numeric = numerical_gradient(lambda V: call(loss, fn, V, X, y, reg)[0], W)
    ok = smooth_coordinates(W, X, y, loss)
    assert ok.sum() >= W.size - 2
    np.testing.assert_allclose(analytic[ok], numeric[ok], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("loss", LOSSES)
def test_data_loss_gradient_matches_numerical(loss):
    X, y, mean, scale = raw_problem(12, 6, C=3, seed=12)
    W = 0.2 * np.random.default_rng(12).standard_normal((3, 7))
    analytic = data_loss(W, X, y, loss, mean=mean, scale=scale)[1]
    numeric = numerical_gradient(lambda V: data_loss(V, X, y, loss, mean=mean, scale=scale)[0], W)
    ok = smooth_coordinates(W, preprocessed(X, mean, scale, True), y, loss)
    np.testing.assert_allclose(analytic[ok], numeric[ok], rtol=1e-6, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    loss=st.sampled_from(LOSSES),
    N=st.integers(1, 12), C=st.integers(2, 6), D=st.integers(1, 7),
    x_scale=st.sampled_from([1e-2, 1.0, 30.0]), w_scale=st.sampled_from([1e-3, 0.1, 1.0]),
    reg=st.sampled_from([0.0, 0.5]), delta=st.sampled_from([0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
# a squared-hinge margin 3.2e-4 from 0, within the step's reach of 8e-4: excluded like a hinge kink
@example(loss="squared_hinge", N=1, C=6, D=2, x_scale=30.0, w_scale=0.1, reg=0.0, delta=0.5, seed=19605)
def test_property_gradient_matches_numerical(loss, N, C, D, x_scale, w_scale, reg, delta, seed):
    rng = np.random.default_rng(seed)
    W = w_scale * rng.standard_normal((C, D))
    X = x_scale * rng.standard_normal((N, D))
    y = rng.integers(0, C, N)
    fn = VECTORIZED[loss]
    analytic = call(loss, fn, W, X, y, reg, delta)[1]
    numeric = numerical_gradient(lambda V: call(loss, fn, V, X, y, reg, delta)[0], W)
    ok = np.ones(W.shape, dtype=bool)
    if loss in ("svm", "squared_hinge"):
        test = kink if loss == "svm" else squared_kink
        for index in np.ndindex(*W.shape):
            ok[index] = not test(W, X, y, index, 1e-5, delta)
    scale = max(np.max(np.abs(numeric)), np.max(np.abs(analytic)), 1.0)
    np.testing.assert_allclose(analytic[ok], numeric[ok], rtol=1e-5, atol=1e-6 * scale)
    naive = call(loss, NAIVE[loss], W, X, y, reg, delta)
    # A gradient entry sums N terms x * (p - 1[y]) of size up to |x|: when they cancel (saturated softmax,
    # x_scale 30) the two orders of summation differ by rounding of the terms, not of the result.
    terms = N * np.max(np.abs(X), initial=0.0) + reg * np.max(np.abs(W))
    np.testing.assert_allclose(analytic, naive[1], rtol=1e-10, atol=1e-14 * terms)


@settings(max_examples=80, deadline=None)
@given(
    loss=st.sampled_from(LOSSES), dtype=st.sampled_from([np.float32, np.float64]),
    N=st.integers(1, 40), C=st.integers(2, 10), D=st.integers(1, 40),
    magnitude=st.sampled_from([0.0, 1e-6, 1.0, 1e2, 1e4]), seed=st.integers(0, 2**32 - 1),
)
def test_property_loss_is_never_nan_for_finite_input(loss, dtype, N, C, D, magnitude, seed):
    rng = np.random.default_rng(seed)
    W = (magnitude * rng.standard_normal((C, D))).astype(dtype)
    X = rng.standard_normal((N, D)).astype(dtype)
    value, dW = call(loss, VECTORIZED[loss], W, X, rng.integers(0, C, N), 0.1)
    assert np.isfinite(value) and np.all(np.isfinite(dW)) and dW.dtype == dtype


# ----------------------------------------------------------------------------- kinks

def kink(W, X, y, index, h, delta=1.0):
    return hinge_kink(hinge_margins(W, X, y, delta), X, y, index, h)


def squared_kink(W, X, y, index, h, delta=1.0):
    """Whether moving W[index] by +-h moves a one-vs-all margin delta - t s of its class across 0: the squared
    hinge's second derivative jumps there, and a centred difference is off by up to (h x)^2 / h."""
    c, d = index
    t = np.where(y == c, 1.0, -1.0)
    margins = delta - t * (X @ W[c])                             # (N,) class c against the rest
    return bool(np.any(np.abs(margins) <= h * np.abs(X[:, d])))


def test_hinge_kink():
    W = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([0])
    h = 1e-5
    at_zero = np.array([[1.0, 0.0]])                  # the margin of class 1 is exactly 0
    assert kink(W, at_zero, y, (1, 0), h)   # s_1 moves with W[1, 0] * x_0
    assert kink(W, at_zero, y, (0, 0), h)   # s_y moves too
    assert not kink(W, at_zero, y, (1, 1), h)  # x_1 = 0: nothing moves
    near = np.array([[1.0 + 0.5 * h, 0.0]])           # margin -0.5h within reach h * |x_0|
    assert kink(W, near, y, (1, 0), h)
    far = np.array([[3.0, 0.0]])                      # margin -2: far from 0
    assert not kink(W, far, y, (1, 0), h)
    assert not kink(W, near, y, (1, 0), 1e-9)   # a smaller step no longer reaches the kink

"""The training engine: minibatch and full-split losses against explicit references, chunks and lanes, stored dtypes."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from conftest import preprocessed
from linclf.core.losses import l2_reg, softmax_loss, squared_hinge_loss, svm_loss
from linclf.core.objective import (CHUNK_ROWS, WIDE_CHUNK_ROWS, WIDE_ROW_BYTES, Objective, chunk_rows, data_loss,
                                   loss_values, scores)
from linclf.core.preprocess import fold
from linclf.errors import UsageError

C = 10
LOSSES = {"svm": svm_loss, "softmax": softmax_loss, "squared_hinge": squared_hinge_loss}


def problem(N=600, P=96, seed=0, stored=np.uint8):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (N, P)).astype(stored)
    y = rng.integers(0, C, N)
    mean = X.astype(np.float64).mean(axis=0)
    scale = 1.0 / (X.astype(np.float64).std(axis=0) + 1.0)
    return rng, X, y, mean, scale


def explicit(W, X, y, loss, mean, scale, bias, reg, reg_bias):
    """Loss + L2 and dW in float64 on [(X - mean) * scale, 1] built the obvious way."""
    Xp = preprocessed(X, mean, scale, bias)
    W64 = W.astype(np.float64)
    value, dW = LOSSES[loss](W64, Xp, y)
    r, rdW = l2_reg(W64, reg, reg_bias or not bias)        # without a bias column, the last column is a weight
    return value + r, dW + rdW


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("stored", [np.uint8, np.float16, np.float32])
@pytest.mark.parametrize("prep", [dict(), dict(mean=True), dict(mean=True, scale=True), dict(bias=False)])
@pytest.mark.parametrize("reg_bias", [True, False])
def test_batch_equals_explicit_preprocessing(loss, dtype, stored, prep, reg_bias):
    rng, X, y, mean, scale = problem(stored=stored)
    mean = mean if prep.get("mean") else None
    scale = scale if prep.get("scale") else None
    bias = prep.get("bias", True)
    W = (0.01 * rng.standard_normal((C, X.shape[1] + int(bias)))).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 3e-5
    with Objective(X, y, C, loss=loss, mean=mean, scale=scale, bias=bias, reg=0.5, reg_bias=reg_bias,
                   dtype=dtype) as f:
        for n in (1, 37, 128, 200, 256):
            idx = rng.integers(0, len(y), n)
            got, dW = f.batch(W, idx)
            want, want_dW = explicit(W, X[idx], y[idx], loss, mean, scale, bias, 0.5, reg_bias)
            assert got == pytest.approx(want, rel=tol)
            assert dW.dtype == dtype and dW.shape == W.shape
            assert np.max(np.abs(dW - want_dW)) <= tol * np.max(np.abs(want_dW))


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("stored", [np.uint8, np.float16])
def test_full_equals_explicit_preprocessing(loss, stored):
    rng, X, y, mean, scale = problem(N=2100, seed=3, stored=stored)     # several groups of blocks
    W = 0.01 * rng.standard_normal((C, X.shape[1] + 1))
    with Objective(X, y, C, loss=loss, mean=mean, scale=scale, reg=0.1, dtype=np.float64, block=64) as f:
        got, dW = f.full(W)
    want, want_dW = explicit(W, X, y, loss, mean, scale, True, 0.1, True)
    assert got == pytest.approx(want, rel=1e-12)
    assert np.max(np.abs(dW - want_dW)) <= 1e-11 * np.max(np.abs(want_dW))


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_many_chunks_equal_explicit_preprocessing(loss, dtype):
    """CIFAR-wide rows: a minibatch and the split cross many chunks, the last ones ragged."""
    rng, X, y, mean, scale = problem(N=700, P=3072, seed=1)
    W = (0.01 * rng.standard_normal((C, 3073))).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 3e-5
    with Objective(X, y, C, loss=loss, mean=mean, scale=scale, reg=0.01, dtype=dtype, block=300) as f:
        assert f.chunk == chunk_rows(3072, dtype) < 100
        for n in (256, 255, 100, 1):
            idx = rng.integers(0, len(y), n)
            got, dW = f.batch(W, idx)
            want, want_dW = explicit(W, X[idx], y[idx], loss, mean, scale, True, 0.01, True)
            assert got == pytest.approx(want, rel=tol)
            assert np.max(np.abs(dW - want_dW)) <= tol * np.max(np.abs(want_dW))
        got, dW = f.full(W)
    want, want_dW = explicit(W, X, y, loss, mean, scale, True, 0.01, True)
    assert got == pytest.approx(want, rel=tol)
    assert np.max(np.abs(dW - want_dW)) <= tol * np.max(np.abs(want_dW))


WIDE = WIDE_ROW_BYTES // 4 + 100                                            # float32 rows that go in two lanes


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("workers", [1, 2])
def test_wide_float16_rows_in_two_lanes_equal_explicit_preprocessing(loss, workers):
    """Feature rows wide enough for two lanes, converted from float16; minibatches of one to several chunks."""
    rng, X, y, mean, scale = problem(N=400, P=WIDE, seed=5, stored=np.float16)
    assert chunk_rows(WIDE, np.float32) == WIDE_CHUNK_ROWS
    W = (0.01 * rng.standard_normal((C, WIDE + 1))).astype(np.float32)
    with Objective(X, y, C, loss=loss, mean=mean, scale=scale, reg=0.01, batch_size=300, workers=workers) as f:
        for n in (300, WIDE_CHUNK_ROWS + 1, WIDE_CHUNK_ROWS, 7):
            idx = rng.integers(0, len(y), n)
            got, dW = f.batch(W, idx)
            want, want_dW = explicit(W, X[idx], y[idx], loss, mean, scale, True, 0.01, True)
            assert got == pytest.approx(want, rel=3e-5)
            assert np.max(np.abs(dW - want_dW)) <= 3e-5 * np.max(np.abs(want_dW))


@pytest.mark.parametrize("P", [3072, WIDE])
def test_results_do_not_depend_on_workers(P):
    """Bit for bit: one worker runs the lanes one after the other, two side by side."""
    rng, X, y, mean, scale = problem(N=600, P=P, seed=6, stored=np.float16)
    W = (0.01 * rng.standard_normal((C, P + 1))).astype(np.float32)
    idx = rng.integers(0, len(y), 256)
    results = []
    for workers in (1, 2):
        with Objective(X, y, C, loss="softmax", mean=mean, scale=scale, reg=0.01, workers=workers) as f:
            value, dW = f.batch(W, idx)
            full_value, full_dW = f.full(W)
            results.append((value, dW.copy(), full_value, full_dW.copy()))
    (v1, d1, fv1, fd1), (v2, d2, fv2, fd2) = results
    assert v1 == v2 and fv1 == fv2
    np.testing.assert_array_equal(d1, d2)
    np.testing.assert_array_equal(fd1, fd2)


def test_chunk_sizes_follow_the_row_width():
    assert chunk_rows(3072, np.float32) == CHUNK_ROWS                          # pixels
    assert chunk_rows(WIDE_ROW_BYTES // 4, np.float32) == CHUNK_ROWS           # the widest narrow row
    assert chunk_rows(WIDE_ROW_BYTES // 4 + 1, np.float32) == WIDE_CHUNK_ROWS
    assert chunk_rows(3072, np.float64) == WIDE_CHUNK_ROWS                     # 24 KB a row in float64


def test_threads_only_for_wide_lanes_and_blas_threads_are_restored():
    """Narrow rows start no thread; wide rows with two workers start one lane thread, ended on close."""
    before_threads = threading.active_count()
    before_blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    for P, workers, extra in ((96, 2, 0), (WIDE, 1, 0), (WIDE, 2, 1)):
        _, X, y, mean, _ = problem(N=300, P=P)
        with Objective(X, y, C, mean=mean, workers=workers) as f:
            f.batch(np.zeros((C, P + 1), np.float32), np.arange(200))
            assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
            assert threading.active_count() == before_threads + extra
        assert threading.active_count() == before_threads
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before_blas


def test_batch_size_above_the_block():
    rng, X, y, mean, scale = problem(N=1000, seed=4)
    W = 0.01 * rng.standard_normal((C, X.shape[1] + 1))
    idx = rng.integers(0, len(y), 700)
    with Objective(X, y, C, mean=mean, dtype=np.float64, block=128, batch_size=700) as f:
        got, dW = f.batch(W, idx)
    want, want_dW = explicit(W, X[idx], y[idx], "svm", mean, None, True, 0.0, True)
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(dW, want_dW, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("call, message", [
    (lambda f, W: f.batch(W, np.arange(257)), "idx must hold 1 to 256 row indices, got 257"),
    (lambda f, W: f.batch(W, np.arange(0)), "idx must hold 1 to 256 row indices, got 0"),
    (lambda f, W: f.batch(W, np.array([0.5])), "of dtype float64"),
    (lambda f, W: f.batch(W, np.array([600])), r"row indices must be in \[0, 600\), got \[600, 600\]"),
    (lambda f, W: f.batch(W, np.array([-1])), r"row indices must be in \[0, 600\)"),
    (lambda f, W: f.batch(W[:, :-1], np.arange(3)), r"W must be float32 of shape \(10, 97\)"),
    (lambda f, W: f.full(W.astype(np.float64)), r"W must be float32 of shape \(10, 97\), got float64"),
])
def test_bad_calls_are_refused(call, message):
    _, X, y, mean, _ = problem()
    with Objective(X, y, C, mean=mean) as f:
        with pytest.raises(ValueError, match=message):
            call(f, np.zeros((C, X.shape[1] + 1), np.float32))


@pytest.mark.parametrize("kwargs, message", [
    (dict(dtype=np.float16), "compute dtype must be float32 or float64, got float16"),
    (dict(block=0), "block must be a positive number of rows, got 0"),
    (dict(loss="hinge"), "unknown loss 'hinge'"),
    (dict(scale=np.ones(3)), r"scale must have shape \(96,\)"),
])
def test_bad_settings_are_refused(kwargs, message):
    _, X, y, _, _ = problem()
    with pytest.raises(ValueError, match=message):
        Objective(X, y, C, **kwargs)


def test_bad_workers_are_a_usage_error(monkeypatch):
    _, X, y, _, _ = problem()
    W = np.zeros((C, X.shape[1] + 1))
    with pytest.raises(UsageError, match="workers must be a positive integer"):
        data_loss(W, X, y, workers=0)
    monkeypatch.setenv("LINCLF_WORKERS", "lots")
    with pytest.raises(UsageError, match=r"\$LINCLF_WORKERS must be a positive integer \(CPUs to use\), got 'lots'"):
        data_loss(W, X, y)


@pytest.mark.parametrize("P", [3000, WIDE])
def test_scores_and_loss_values_match_the_folded_reference(P):
    """Scores a chunk at a time, the last one ragged; the search's losses."""
    rng, X, y, mean, scale = problem(N=2500, P=P, seed=5)
    Ws = 0.01 * rng.standard_normal((3, C, X.shape[1] + 1))
    A, b = fold(Ws[0], mean, scale, True)
    Xp = (X - mean) * scale
    want = Xp @ Ws[0, :, :-1].T + Ws[0, :, -1]
    for chunk in (None, 7, 700, 5000):                    # the engine's chunks, ragged ones, one for all rows
        np.testing.assert_allclose(scores(X, A, b, chunk=chunk), want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    with pytest.raises(ValueError, match="chunk must be a positive number of rows, got 0"):
        scores(X, A, b, chunk=0)
    for loss in LOSSES:
        for candidates in (Ws, Ws[:1]):                   # several in one product per block; one, in small ones
            values = loss_values(candidates, X, y, loss, mean=mean, scale=scale, block=700)
            expected = [data_loss(W, X, y, loss, mean=mean, scale=scale)[0] for W in candidates]
            np.testing.assert_allclose(values, expected, rtol=1e-10)

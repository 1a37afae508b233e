"""Losses of a linear classifier ``s = W x``: multiclass SVM (hinge), softmax cross-entropy, one-vs-all squared hinge.

Shapes: W (C, D) (a row is a class template), X (N, D) rows of examples, y (N,)
ints in [0, C), scores (N, C). Every loss returns ``(loss, gradient)``; the data
term and the L2 term (``l2_reg``) are separate so each can be checked alone.
Each vectorized loss has a naive-loop twin (``*_naive``) that tests compare with.

Conventions shared by every version:

- SVM (Weston-Watkins): ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)``.
  At a margin of exactly 0 the hinge's subgradient is taken as 0: only margins
  ``> 0`` count, in the naive and the vectorized code alike.
- Softmax: ``L_i = logsumexp(s) - s_{y_i}`` with the max subtracted first, so
  scores of +-1e4 give a finite loss and gradient.
- Squared hinge, one-vs-all (the L2-SVM of Coates et al. and scikit-learn's
  LinearSVC): ``L_i = sum_j max(0, delta - t_ij s_j)^2`` with ``t_ij = +1``
  for ``j = y_i`` and -1 otherwise: C binary SVMs, each class against the
  rest. Differentiable everywhere, so no kink to step around.
- Data losses are sums over the rows divided by ``count`` (default N, the
  mean); ``l2_reg`` is ``reg * sum(W*W)``.
- Arithmetic runs in the floating dtype of the data (float32 stays float32).

This module is the math only. Losses on stored raw rows (uint8 pixels,
float16 features) with the preprocessing folded into W are
``objective.data_loss`` and the training engine ``objective.Objective``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .checks import check_count, check_delta, check_labels, check_reg, float_dtype

__all__ = [
    "svm_loss", "softmax_loss", "squared_hinge_loss", "svm_loss_naive", "softmax_loss_naive",
    "squared_hinge_loss_naive", "linear_loss", "initial_loss", "scores_loss", "score_loss", "ScoreLoss",
    "softmax", "SCORE_LOSSES", "l2_reg", "hinge_kink", "hinge_margins",
]


# ----------------------------------------------------------------------------- score-level losses

def _svm(scores: np.ndarray, y: np.ndarray, delta: float, count: int) -> tuple[float, np.ndarray]:
    """The SVM kernel: hinge SUM/count and dscores (N, C) / count; margins of exactly 0 count as 0."""
    rows = np.arange(scores.shape[0])
    margins = scores - scores[rows, y][:, None]                  # (N, C)
    margins += delta
    margins[rows, y] = 0
    np.maximum(margins, 0, out=margins)
    loss = float(margins.sum(dtype=np.float64)) / count
    dS = np.greater(margins, 0, out=margins)                     # (N, C) 1 where margin > 0, else 0
    dS[rows, y] = -np.add.reduce(np.ascontiguousarray(dS.T), axis=0)   # counts of 0/1: exact in any order
    dS *= dS.dtype.type(1.0 / count)
    return loss, dS


def _softmax(scores: np.ndarray, y: np.ndarray, delta: float, count: int) -> tuple[float, np.ndarray]:
    """The softmax kernel (delta unused): cross-entropy SUM/count and dscores (N, C) / count."""
    rows = np.arange(scores.shape[0])
    top = np.maximum.reduce(np.ascontiguousarray(scores.T), axis=0)  # (N,) row maxima: exact, faster than max(1)
    shifted = scores - top[:, None]                              # (N, C), max 0 per row
    correct = shifted[rows, y]                                   # (N,)
    probs = np.exp(shifted, out=shifted)                         # (N, C) unnormalised
    sums = probs.sum(axis=1)                                     # (N,) in [1, C]
    loss = float((np.log(sums) - correct).sum(dtype=np.float64)) / count
    probs *= (1.0 / (sums * count))[:, None]                     # (N, C) probabilities / count
    probs[rows, y] -= probs.dtype.type(1.0 / count)
    return loss, probs


def _squared_hinge(scores: np.ndarray, y: np.ndarray, delta: float, count: int) -> tuple[float, np.ndarray]:
    """The one-vs-all squared hinge kernel: SUM/count and dscores (N, C) / count."""
    rows = np.arange(scores.shape[0])
    margins = scores + scores.dtype.type(delta)                  # delta + s_j for the other classes, (N, C)
    margins[rows, y] = delta - scores[rows, y]                   # delta - s_y for the correct one
    np.maximum(margins, 0, out=margins)
    loss = float(np.einsum("ij,ij->", margins, margins, dtype=np.float64)) / count
    dS = np.multiply(margins, margins.dtype.type(2.0 / count), out=margins)
    dS[rows, y] *= -1                                            # d/ds of (delta - t s)^2 is -2 t (delta - t s)
    return loss, dS


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax (N, C) float64 of scores (N, C): class probabilities, computed stably."""
    s = np.array(scores, dtype=np.float64)
    s -= s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    return s


SCORE_LOSSES: dict[str, Callable[[np.ndarray, np.ndarray, float, int], tuple[float, np.ndarray]]] = {
    "svm": _svm,
    "softmax": _softmax,
    "squared_hinge": _squared_hinge,
}
"""The score-level kernels, (scores, y, delta, count) -> (loss, dscores), WITHOUT argument checks: scores float
(N, C), left unchanged; y (N,) valid labels; count > 0."""

ScoreLoss = Callable[[np.ndarray, np.ndarray, int], tuple[float, np.ndarray]]


def _check_loss(loss: str) -> None:
    if loss not in SCORE_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(SCORE_LOSSES)}")


def score_loss(loss: str, delta: float = 1.0) -> ScoreLoss:
    """(scores, y, count) -> (loss, dscores): the kernel of ``loss`` with its margin bound (the engine's form)."""
    _check_loss(loss)
    kernel, delta = SCORE_LOSSES[loss], delta if loss == "softmax" else check_delta(delta)   # softmax has no margin
    return lambda scores, y, count: kernel(scores, y, delta, count)


def scores_loss(loss: str, scores: np.ndarray, y: np.ndarray, delta: float = 1.0,
                count: int | None = None) -> tuple[float, np.ndarray]:
    """The data loss named ``loss`` (SUM/count, count default N) and dscores (N, C) from scores (N, C), checked.

    The scores are not changed.
    """
    _check_loss(loss)
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    scores = scores if scores.dtype.kind == "f" else scores.astype(np.float64)
    N, C = scores.shape
    delta = delta if loss == "softmax" else check_delta(delta)
    return SCORE_LOSSES[loss](scores, check_labels(y, N, C), delta, check_count(count, N))


# ----------------------------------------------------------------------------- regularisation

def _l2_value(W: np.ndarray, reg: float, reg_bias: bool) -> float:
    """reg * sum(W*W), without the last column (bias) if not reg_bias."""
    if reg_bias:
        squares = np.vdot(W, W)
    else:
        squares = np.einsum("cd,cd->", W[:, :-1], W[:, :-1])
    return float(reg) * float(squares)


def l2_reg(W: np.ndarray, reg: float, reg_bias: bool = True) -> tuple[float, np.ndarray]:
    """reg * sum(W*W) and its gradient 2*reg*W (C, D); reg_bias=False leaves the last column (bias) out."""
    W, reg = np.asarray(W), check_reg(reg)
    loss = _l2_value(W, reg, reg_bias)
    dW = (2.0 * float(reg)) * W                                  # (C, D), keeps a float32 W float32
    if not reg_bias:
        dW[:, -1] = 0
    return loss, dW


# ----------------------------------------------------------------------------- losses on preprocessed X

def linear_loss(loss: str, W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
                delta: float = 1.0) -> tuple[float, np.ndarray]:
    """The loss named ``loss`` (mean over N; delta is the hinges' margin) + reg*sum(W*W) and dW (C, D) in X's dtype.

    W (C, D), X (N, D), y (N,).
    """
    kernel = score_loss(loss, delta)
    W, X, y = _inputs(W, X, y)
    value, dS = kernel(X @ W.T, y, check_count(None, X.shape[0]))  # scores (N, C)
    dW = dS.T @ X                                                # (C, D)
    if reg:
        reg_loss, reg_dW = l2_reg(W, reg)
        value += reg_loss
        dW += reg_dW
    return value, dW


def _inputs(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W (C, D), X (N, D) in their common floating dtype and y (N,) checked labels in [0, C); ValueError else."""
    X, W = np.asarray(X), np.asarray(W)
    if X.ndim != 2 or W.ndim != 2 or W.shape[1] != X.shape[1]:
        raise ValueError(f"W must be (C, D) and X (N, D) with the same D; got W {W.shape}, X {X.shape}")
    dtype = float_dtype(X, W)
    return W.astype(dtype, copy=False), X.astype(dtype, copy=False), check_labels(y, X.shape[0], W.shape[0])


def svm_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
             delta: float = 1.0) -> tuple[float, np.ndarray]:
    """Weston-Watkins hinge loss (mean over N) + reg*sum(W*W) and dW (C, D); W (C, D), X (N, D), y (N,)."""
    return linear_loss("svm", W, X, y, reg, delta)


def softmax_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy (mean over N) + reg*sum(W*W) and dW (C, D); W (C, D), X (N, D), y (N,)."""
    return linear_loss("softmax", W, X, y, reg)


def squared_hinge_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
                       delta: float = 1.0) -> tuple[float, np.ndarray]:
    """One-vs-all squared hinge (mean over N) + reg*sum(W*W) and dW (C, D); W (C, D), X (N, D), y (N,)."""
    return linear_loss("squared_hinge", W, X, y, reg, delta)


def initial_loss(loss: str, num_classes: int, delta: float = 1.0) -> float:
    """The data loss at W = 0 (all scores 0), what a small random W starts near: (C-1) delta, ln C or C delta^2."""
    _check_loss(loss)
    C, delta = int(num_classes), float(delta)
    return {"svm": (C - 1) * delta, "softmax": math.log(C), "squared_hinge": C * delta ** 2}[loss]


# ----------------------------------------------------------------------------- naive references

def svm_loss_naive(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
                   delta: float = 1.0) -> tuple[float, np.ndarray]:
    """The SVM loss with loops over examples and classes: the reference; W (C, D), X (N, D), y (N,), checked as
    the vectorized losses check them."""
    W, X, y = _inputs(W, X, y)
    reg, delta = check_reg(reg), check_delta(delta)
    N, C = X.shape[0], W.shape[0]
    loss, dW = 0.0, np.zeros(W.shape, dtype=W.dtype)
    for i in range(N):
        scores = W @ X[i]                                        # (C,)
        for j in range(C):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + delta
            if margin > 0:
                loss += float(margin)
                dW[j] += X[i]
                dW[y[i]] -= X[i]
    loss /= N
    dW /= N
    return loss + reg * float(np.sum(W * W)), dW + 2 * reg * W


def softmax_loss_naive(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0) -> tuple[float, np.ndarray]:
    """The softmax loss with loops over examples and classes: the reference; W (C, D), X (N, D)."""
    W, X, y = _inputs(W, X, y)
    reg = check_reg(reg)
    N, C = X.shape[0], W.shape[0]
    loss, dW = 0.0, np.zeros(W.shape, dtype=W.dtype)
    for i in range(N):
        scores = W @ X[i]                                        # (C,)
        top = max(scores)
        total = 0.0
        for j in range(C):
            total += np.exp(scores[j] - top)
        log_total = np.log(total)
        loss += float(log_total - (scores[y[i]] - top))
        for j in range(C):
            p = np.exp(scores[j] - top - log_total)
            dW[j] += (p - (j == y[i])) * X[i]
    loss /= N
    dW /= N
    return loss + reg * float(np.sum(W * W)), dW + 2 * reg * W


def squared_hinge_loss_naive(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
                             delta: float = 1.0) -> tuple[float, np.ndarray]:
    """The one-vs-all squared hinge with loops over examples and classes: the reference; W (C, D), X (N, D)."""
    W, X, y = _inputs(W, X, y)
    reg, delta = check_reg(reg), check_delta(delta)
    N, C = X.shape[0], W.shape[0]
    loss, dW = 0.0, np.zeros(W.shape, dtype=W.dtype)
    for i in range(N):
        scores = W @ X[i]                                        # (C,)
        for j in range(C):
            t = 1.0 if j == y[i] else -1.0                       # class j against the rest
            margin = delta - t * scores[j]
            if margin > 0:
                loss += float(margin) ** 2
                dW[j] += -2.0 * t * margin * X[i]
    loss /= N
    dW /= N
    return loss + reg * float(np.sum(W * W)), dW + 2 * reg * W


# ----------------------------------------------------------------------------- kinks

def hinge_kink(margins: np.ndarray, X: np.ndarray, y: np.ndarray, index: tuple[int, ...], h: float) -> bool:
    """True if moving W[index] by +-h moves some margin s_j - s_{y_i} + delta (j != y_i) across 0 (or onto it).

    There the hinge has a kink inside [W - h, W + h] and a finite-difference
    gradient of the SVM loss is not trustworthy. ``margins`` (N, C) at W come
    from ``hinge_margins``, computed once for many indices; X (N, D), y (N,).
    """
    N, C = margins.shape
    c, d = (int(i) for i in index)
    reach = abs(h) * np.abs(X[:, d])                             # (N,) how far W[c, d] +- h moves a margin
    moves = np.zeros((N, C), dtype=bool)                         # the margins that W[c, d] moves
    moves[:, c] = y != c                                         # s_c, in rows where c is a wrong class
    moves[y == c] = True                                         # every margin, in rows where c is correct
    moves[np.arange(N), y] = False
    moves &= (reach > 0)[:, None]
    return bool(np.any(moves & (np.abs(margins) <= reach[:, None])))


def hinge_margins(W: np.ndarray, X: np.ndarray, y: np.ndarray, delta: float = 1.0) -> np.ndarray:
    """Margins s_j - s_{y_i} + delta (N, C) at W (C, D) on X (N, D) (the correct class's entry is delta)."""
    scores = np.asarray(X) @ np.asarray(W).T                     # (N, C)
    return scores - scores[np.arange(len(y)), y][:, None] + delta

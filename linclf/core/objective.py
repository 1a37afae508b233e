"""The training engine: loss and gradient of a linear classifier over stored rows, preprocessing folded in.

Rows X (N, P) stay in their stored dtype (uint8 pixels, float16 or float32
features, often a read-only memory map). W (C, D), D = P + bias, acts on the
preprocessed rows ``[(x - mean) * scale, 1]``; that map is affine, so it is
folded into the weights once per call, ``A, b = fold(W)`` with A (C, P) and
b (C,), and the rows are only ever converted, never preprocessed.

A minibatch step (``Objective.batch``), top to bottom:

    1. gather X[idx] into a reused buffer, converting it to the compute dtype   xb (n, P)
    2. S = xb @ A.T + b                                   the first product     S  (n, C)
    3. loss, dS = the score loss (svm or softmax) of S                         dS (n, C)
    4. G = dS.T @ xb, g0 = dS.sum(0)                      the second product    G  (C, P)
    5. dW = unfold(G, g0) + 2 reg W                                            dW (C, D)

Steps 1-2 are cut into a fixed number of row parts and step 4 into column
parts. With ``workers`` > 1 a standard thread pool runs the parts side by side
(NumPy releases the GIL in products and conversions; the caller blocks on the
futures); with one worker the calling thread runs the same calls in the same
order. The cut does not depend on ``workers``, so neither do the results.

Full-split passes (``Objective.full`` for gradient descent, ``scores`` for
evaluation, ``loss_values`` for the derivative-free search) go block by block
of rows; partial sums are added in a fixed order, again whatever ``workers``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from typing import Callable, Sequence

import numpy as np

from ..threads import blas_threads, resolve_workers
from .losses import SCORE_LOSSES, check_labels, float_dtype, l2_reg, score_loss
from .preprocess import fold, unfold

__all__ = ["Objective", "data_loss", "loss_values", "scores", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 256      # rows per block: a block of float32 pixels is 3 MB, a cache's worth
_PARTS = 2               # a minibatch is cut into this many row parts and column parts
_COLUMN_ALIGN = 64       # column parts start on multiples of this (whole cache lines of float32)
_GROUP = 8               # blocks a full-split task takes; its partial sums are added in order


def _cuts(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """[lo, hi) ranges cutting range(n) into at most ``parts`` pieces; inner bounds on multiples of ``align``."""
    bounds = sorted({0, n, *(min(n, round(n * i / parts / align) * align) for i in range(1, parts))})
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _check_rows(X: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> None:
    """Raise ValueError unless X is (N, P) of a stored dtype and mean/scale are (P,)."""
    if X.ndim != 2:
        raise ValueError(f"X must be (N, P) rows, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers (uint8 pixels, float features), got {X.dtype}")
    for name, v in (("mean", mean), ("scale", scale)):
        if v is not None and np.shape(v) != (X.shape[1],):
            raise ValueError(f"{name} must have shape ({X.shape[1]},) to match X, got {np.shape(v)}")


class Objective:
    """Data loss + L2 of W (C, P + bias) on rows X (N, P), y (N,), as the training loop needs it.

    ``batch(W, idx)`` is a minibatch step (at most ``max(block, batch_size)``
    rows, and at most N), ``full(W)`` the whole split; both return
    ``(loss, dW)`` where dW is a buffer the next call overwrites. Use as a context manager (or call ``close``): inside,
    BLAS runs one thread per worker and the pool's threads are released on exit.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, num_classes: int, *, loss: str = "svm", delta: float = 1.0,
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
                 reg: float = 0.0, reg_bias: bool = True, dtype: np.dtype | type = np.float32,
                 workers: int | None = None, block: int = DEFAULT_BLOCK, batch_size: int | None = None) -> None:
        _check_rows(X, mean, scale)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f" or self.dtype.itemsize < 4:
            raise ValueError(f"the compute dtype must be float32 or float64, got {self.dtype}")
        if block < 1:
            raise ValueError(f"block must be a positive number of rows, got {block}")
        if loss not in SCORE_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(SCORE_LOSSES)}")
        self.X, self.y = X, check_labels(y, X.shape[0], num_classes)
        self.C, self.P = int(num_classes), X.shape[1]
        self.mean = None if mean is None else np.asarray(mean, dtype=self.dtype)
        self.scale = None if scale is None else np.asarray(scale, dtype=self.dtype)
        self.bias, self.reg, self.reg_bias, self.block = bool(bias), float(reg), bool(reg_bias), int(block)
        self.loss = score_loss(loss, delta)
        self.workers = resolve_workers(workers)
        self._pool = ThreadPoolExecutor(self.workers, "linclf") if self.workers > 1 else None
        self._limits = ExitStack()
        # the minibatch's buffers; each part writes only its own rows or columns of them
        n = max(1, min(max(self.block, batch_size or 0), X.shape[0]))
        self._xb = np.empty((n, self.P), dtype=self.dtype)
        self._raw = None if X.dtype == self.dtype else np.empty((n, self.P), dtype=X.dtype)
        self._S = np.empty((n, self.C), dtype=self.dtype)
        self._G = np.empty((self.C, self.P), dtype=self.dtype)
        self._dW = np.empty((self.C, self.P + int(self.bias)), dtype=self.dtype)
        self._columns = _cuts(self.P, _PARTS, _COLUMN_ALIGN)

    # -- lifecycle

    def __enter__(self) -> "Objective":
        self._limits.enter_context(blas_threads(1))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Restore BLAS's threads and stop the pool's threads (idempotent)."""
        self._limits.close()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _each(self, fn: Callable[[int, int], object], ranges: Sequence[tuple[int, int]]) -> list:
        """[fn(lo, hi) for each range], in that order, spread over the workers (blocking until all are done).

        Up to ``workers`` ranges (a minibatch's parts): the first runs on this
        thread, each other on a pool thread. More (the blocks of a split): the
        pool's threads take them in turn.
        """
        if self._pool is None or len(ranges) == 1:
            return [fn(lo, hi) for lo, hi in ranges]
        if len(ranges) > self.workers:
            return list(self._pool.map(lambda r: fn(*r), ranges))
        futures = [self._pool.submit(fn, lo, hi) for lo, hi in ranges[1:]]
        try:
            first = fn(*ranges[0])
        finally:
            wait(futures)               # no part may still write into the buffers when this returns or raises
        return [first] + [f.result() for f in futures]

    def _finish(self, W: np.ndarray, value: float, G: np.ndarray, g0: np.ndarray) -> tuple[float, np.ndarray]:
        """loss + L2 and dW = unfold(G, g0) + 2 reg W, written into the dW buffer."""
        dW = unfold(G, g0.astype(self.dtype), self.mean, self.scale, self.bias, out=self._dW)
        if self.reg:
            reg_value, reg_dW = l2_reg(W, self.reg, self.reg_bias)
            value += reg_value
            dW += reg_dW
        return value, dW

    def _check_W(self, W: np.ndarray) -> None:
        if W.shape != self._dW.shape or W.dtype != self.dtype:
            raise ValueError(f"W must be {self.dtype} of shape {self._dW.shape}, got {W.dtype} {W.shape}")

    # -- the minibatch step

    def batch(self, W: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and dW (C, D) on the rows X[idx] (idx (n,) ints, n at most the batch size): steps 1-5 above."""
        self._check_W(W)
        idx = np.asarray(idx)
        n = len(idx)
        if not 1 <= n <= len(self._xb) or idx.dtype.kind not in "iu":
            raise ValueError(f"idx must hold 1 to {len(self._xb)} row indices, got {n} of dtype {idx.dtype}")
        if idx.min() < 0 or idx.max() >= len(self.y):
            raise ValueError(f"row indices must be in [0, {len(self.y)}), got [{idx.min()}, {idx.max()}]")
        A, b = fold(W, self.mean, self.scale, self.bias)                    # (C, P), (C,)
        xb, S, G = self._xb[:n], self._S[:n], self._G

        def score_rows(lo: int, hi: int) -> None:
            if self._raw is None:
                np.take(self.X, idx[lo:hi], axis=0, out=xb[lo:hi], mode="clip")
            else:
                raw = np.take(self.X, idx[lo:hi], axis=0, out=self._raw[lo:hi], mode="clip")
                np.copyto(xb[lo:hi], raw, casting="unsafe")                # the one conversion
            np.matmul(xb[lo:hi], A.T, out=S[lo:hi])
            S[lo:hi] += b

        self._each(score_rows, _cuts(n, _PARTS))
        value, dS = self.loss(S, self.y[idx], n)
        dT = np.ascontiguousarray(dS.T)                                     # (C, n)
        g0 = dS.sum(axis=0, dtype=np.float64)                               # (C,)

        def gradient_columns(lo: int, hi: int) -> None:
            np.matmul(dT, xb[:, lo:hi], out=G[:, lo:hi])

        self._each(gradient_columns, self._columns)
        return self._finish(W, value, G, g0)

    # -- the whole split

    def full(self, W: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and dW (C, D) over all N rows (gradient descent), block by block."""
        self._check_W(W)
        N = len(self.y)
        if N == 0:
            raise ValueError("the loss of an empty set of rows is undefined")
        A, b = fold(W, self.mean, self.scale, self.bias)

        def group(lo: int, hi: int) -> tuple[float, np.ndarray, np.ndarray]:
            """Loss part, G and g0 of rows [lo, hi), its blocks added in order."""
            G = np.zeros((self.C, self.P), dtype=self.dtype)
            g0 = np.zeros(self.C, dtype=np.float64)
            value = 0.0
            buf = None
            for start in range(lo, hi, self.block):
                stop = min(start + self.block, hi)
                xb, buf = _converted(self.X[start:stop], self.dtype, buf)
                S = xb @ A.T                                                # (n, C)
                S += b
                part, dS = self.loss(S, self.y[start:stop], N)
                value += part
                G += dS.T @ xb
                g0 += dS.sum(axis=0, dtype=np.float64)
            return value, G, g0

        parts = self._each(group, _cuts(N, -(-N // (self.block * _GROUP)), self.block))
        value, G, g0 = parts[0]
        for part, G_i, g0_i in parts[1:]:
            value += part
            G += G_i
            g0 += g0_i
        return self._finish(W, value, G, g0)


def _converted(X: np.ndarray, dtype: np.dtype, buf: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """X (n, P) as ``dtype``: X itself when it already is (C-contiguous), else converted into ``buf`` (reused)."""
    if X.dtype == dtype and X.flags.c_contiguous:
        return X, buf
    if buf is None or buf.shape[0] < len(X):
        buf = np.empty(X.shape, dtype=dtype)
    xb = buf[:len(X)]
    np.copyto(xb, X, casting="unsafe")
    return xb, buf


def scores(X: np.ndarray, A: np.ndarray, b: np.ndarray, *, block: int = 1024,
           out: np.ndarray | None = None) -> np.ndarray:
    """Scores (N, C) = X A.T + b of rows X (N, P) in A's dtype, block by block (X is never converted whole)."""
    if X.ndim != 2 or A.ndim != 2 or X.shape[1] != A.shape[1]:
        raise ValueError(f"X must be (N, {A.shape[1]}) for A {A.shape}, got {X.shape}")
    out = np.empty((len(X), A.shape[0]), dtype=A.dtype) if out is None else out
    buf = None
    for start in range(0, len(X), block):
        xb, buf = _converted(X[start:start + block], A.dtype, buf)
        np.matmul(xb, A.T, out=out[start:start + len(xb)])
    out += b
    return out


def data_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str = "svm", *, delta: float = 1.0,
              mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
              block: int | None = None, workers: int | None = None) -> tuple[float, np.ndarray]:
    """Data loss (mean over N, no regularisation) and dW (C, P + bias) on RAW rows X (N, P), in W's dtype.

    Equals ``svm_loss(W, X_pre, y, reg=0)`` (``softmax_loss`` for
    loss="softmax") with ``X_pre = [(X - mean) * scale, 1]`` (mean None = 0,
    scale None = 1, the 1 column only if ``bias``), without building X_pre:
    ``Objective.full`` with the preprocessing folded into W. ``workers``
    threads share the blocks (default: $LINCLF_WORKERS, else the usable CPUs).
    """
    W, X = np.asarray(W), np.asarray(X)
    if X.ndim != 2 or W.ndim != 2 or W.shape[1] != X.shape[1] + int(bias):
        raise ValueError(f"W must be (C, {X.shape[-1] + int(bias)}) for X of shape {X.shape} "
                         f"with bias={bias}; got W {W.shape}")
    dtype = float_dtype(W)
    with Objective(X, y, W.shape[0], loss=loss, delta=delta, mean=mean, scale=scale, bias=bias, dtype=dtype,
                   workers=workers, block=DEFAULT_BLOCK if block is None else int(block)) as f:
        return f.full(W.astype(dtype, copy=False))      # its dW buffer is ours: f is not called again


def loss_values(Ws: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str = "svm", *, delta: float = 1.0,
                mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
                block: int | None = None) -> np.ndarray:
    """Data losses (K,) of K weight matrices Ws (K, C, P + bias) on RAW rows X (N, P): no gradients.

    One pass over X serves all K candidates (derivative-free search evaluates
    many W on the whole training split); each value equals
    ``data_loss(Ws[k], X, y, loss, ...)[0]`` up to rounding.
    """
    Ws, X = np.asarray(Ws), np.asarray(X)
    if Ws.ndim != 3 or X.ndim != 2 or Ws.shape[2] != X.shape[1] + int(bias):
        raise ValueError(f"Ws must be (K, C, {X.shape[-1] + int(bias)}) for X {X.shape}, got {Ws.shape}")
    _check_rows(X, mean, scale)
    K, C, _ = Ws.shape
    N = X.shape[0]
    y = check_labels(y, N, C)
    if loss not in SCORE_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(SCORE_LOSSES)}")
    folded = [fold(W, mean, scale, bias) for W in Ws]
    A = np.concatenate([A for A, _ in folded])                             # (K*C, P)
    b = np.concatenate([b for _, b in folded])                             # (K*C,)
    block = DEFAULT_BLOCK if block is None else int(block)
    totals = np.zeros(K, dtype=np.float64)
    buf = None
    for start in range(0, N, block):
        xb, buf = _converted(X[start:start + block], A.dtype, buf)
        S = (xb @ A.T + b).reshape(len(xb), K, C)                          # (n, K, C)
        yb = y[start:start + block]
        correct = np.take_along_axis(S, yb[:, None, None].repeat(K, axis=1), axis=2)  # (n, K, 1)
        if loss == "svm":
            margins = np.maximum(S - correct + delta, 0)                   # the correct class adds delta
            totals += margins.sum(axis=(0, 2), dtype=np.float64) - len(xb) * delta
        elif loss == "squared_hinge":
            rest = np.maximum(S + delta, 0)                                # every class taken as a wrong one,
            own = np.maximum(delta - correct, 0)                           # then the correct class's term
            as_rest = np.maximum(correct + delta, 0)                       # swapped in for its wrong-class one
            totals += np.einsum("nkc,nkc->k", rest, rest, dtype=np.float64)
            totals += (own * own - as_rest * as_rest).sum(axis=(0, 2), dtype=np.float64)
        else:
            top = S.max(axis=2, keepdims=True)
            lse = np.log(np.exp(S - top).sum(axis=2, keepdims=True)) + top
            totals += (lse - correct).sum(axis=(0, 2), dtype=np.float64)
    return totals / max(N, 1)

"""The training engine: loss and gradient of a linear classifier over stored rows, preprocessing folded in.

Rows X (N, P) stay in their stored dtype (uint8 pixels, float16 or float32
features, often a read-only memory map). W (C, D), D = P + bias, acts on the
preprocessed rows ``[(x - mean) * scale, 1]``; that map is affine, so it is
folded into the weights, ``A, b = fold(W)`` with A (C, P) and b (C,), and the
rows are only ever converted, never preprocessed.

A row's loss depends on its own scores only, so a minibatch step
(``Objective.batch``) takes its rows through the whole step a chunk at a
time, while the chunk is in the core's cache:

    1. gather X[idx] into a reused buffer, converted to the compute dtype     xb (r, P)
    2. S = xb @ A.T + b                                   the first product     S  (r, C)
    3. loss, dS = the score loss (svm, softmax, ...) of S                      dS (r, C)
    4. G += dS.T @ xb, g0 += dS.sum(0)                    the second product    G  (C, P)

then dW = unfold(G, g0) + 2 reg W (C, D). Narrow rows (pixels) go 32 at a
time on the calling thread: a product that small runs in OpenBLAS's
small-matrix kernels, and two threads would spend more handing the GIL to
each other than they gain. Wide rows (features) go 64 at a time in two
lanes, each half of the chunks summing into its own G; with ``workers`` >= 2
the second lane runs on a pool thread (NumPy releases the GIL in the gather,
the conversion and ``np.dot``; ``np.matmul`` of these shapes holds it). The
cut depends on the shapes alone, so the weights do not depend on
``workers``. BLAS runs on one thread: a chunk's products are far too small
for BLAS's own threads. ``scripts/bench.py --only chunks`` times other chunk
sizes and lanes against these.

Full-split passes (``Objective.full`` for gradient descent, ``scores`` for
evaluation, ``loss_values`` for the derivative-free search) go block by block
of rows, partial sums added in order.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import numpy as np

from ..threads import blas_threads, resolve_workers
from .checks import check_labels, check_reg, float_dtype
from .losses import l2_reg, score_loss
from .preprocess import fold, unfold
from .rows import convert_rows

__all__ = ["Objective", "data_loss", "loss_values", "scores", "chunk_rows", "DEFAULT_BLOCK"]

DEFAULT_BLOCK = 256          # rows per block of a full-split pass
SEARCH_BLOCK = 1024          # rows per block of ``loss_values`` (K candidates' scores of a block are small)
CHUNK_ROWS = 32              # rows per chunk of narrow rows
WIDE_CHUNK_ROWS = 64         # rows per chunk of wide rows
WIDE_ROW_BYTES = 16 << 10    # rows of more compute bytes than this are wide (pixels are 12 KB in float32)


def chunk_rows(P: int, dtype: np.dtype | type = np.float32) -> int:
    """Rows per chunk for rows of P values computed in ``dtype``: see the module docstring."""
    return WIDE_CHUNK_ROWS if P * np.dtype(dtype).itemsize > WIDE_ROW_BYTES else CHUNK_ROWS


def _check_rows(X: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> None:
    """Raise ValueError unless X is (N, P) of a stored dtype and mean/scale are (P,)."""
    if X.ndim != 2:
        raise ValueError(f"X must be (N, P) rows, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers (uint8 pixels, float features), got {X.dtype}")
    for name, v in (("mean", mean), ("scale", scale)):
        if v is not None and np.shape(v) != (X.shape[1],):
            raise ValueError(f"{name} must have shape ({X.shape[1]},) to match X, got {np.shape(v)}")


class _Lane:
    """One lane's reused buffers: a chunk's stored and converted rows and scores, the lane's G (C, P) and g0 (C,)."""

    def __init__(self, rows: int, P: int, C: int, stored: np.dtype, dtype: np.dtype) -> None:
        self.raw = None if stored == dtype else np.empty((rows, P), dtype=stored)
        self.xb = np.empty((rows, P), dtype=dtype)
        self.S = np.empty((rows, C), dtype=dtype)
        self.G, self.part = np.empty((C, P), dtype=dtype), np.empty((C, P), dtype=dtype)
        self.g0 = np.zeros(C, dtype=np.float64)


class Objective:
    """Data loss + L2 of W (C, P + bias) on rows X (N, P), y (N,), as the training loop needs it.

    ``batch(W, idx)`` is a minibatch step (at most ``max(block, batch_size)``
    rows, and at most N), ``full(W)`` the whole split; both return
    ``(loss, dW)`` where dW is a buffer the next call overwrites. Use as a
    context manager (or call ``close``): inside, BLAS runs on one thread and,
    when ``workers`` (None: $LINCLF_WORKERS, else all usable CPUs) is 2 or
    more, the second lane of wide rows on a thread of its own.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, num_classes: int, *, loss: str = "svm", delta: float = 1.0,
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
                 reg: float = 0.0, reg_bias: bool = True, dtype: np.dtype | type = np.float32,
                 block: int = DEFAULT_BLOCK, batch_size: int | None = None, workers: int | None = None) -> None:
        _check_rows(X, mean, scale)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f" or self.dtype.itemsize < 4:
            raise ValueError(f"the compute dtype must be float32 or float64, got {self.dtype}")
        if block < 1:
            raise ValueError(f"block must be a positive number of rows, got {block}")
        self.loss = score_loss(loss, delta)
        self.X, self.y = X, check_labels(y, X.shape[0], num_classes)
        self.C, self.P = int(num_classes), X.shape[1]
        self.mean = None if mean is None else np.asarray(mean, dtype=self.dtype)
        self.scale = None if scale is None else np.asarray(scale, dtype=self.dtype)
        # without a bias column every column is a weight: reg_bias=False has nothing to leave out
        self.bias, self.reg, self.block = bool(bias), check_reg(reg), int(block)
        self.reg_bias = bool(reg_bias) or not bias
        self.max_rows = max(1, min(max(self.block, batch_size or 0), X.shape[0]))
        wide = self.P * self.dtype.itemsize > WIDE_ROW_BYTES and self.max_rows > WIDE_CHUNK_ROWS
        self.chunk = min(chunk_rows(self.P, self.dtype), self.max_rows)
        self._lanes = [_Lane(self.chunk, self.P, self.C, X.dtype, self.dtype) for _ in range(2 if wide else 1)]
        self._dW = np.empty((self.C, self.P + int(self.bias)), dtype=self.dtype)
        self._threaded = resolve_workers(workers) >= 2 and wide     # a bad workers value is refused either way
        self._limits = ExitStack()
        self._pool = None

    def __enter__(self) -> "Objective":
        self._limits.enter_context(blas_threads(1))
        if self._threaded:
            self._pool = self._limits.enter_context(ThreadPoolExecutor(1, thread_name_prefix="linclf-lane"))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the lane thread and restore BLAS's threads (idempotent)."""
        self._limits.close()
        self._pool = None

    def _check_W(self, W: np.ndarray) -> None:
        if W.shape != self._dW.shape or W.dtype != self.dtype:
            raise ValueError(f"W must be {self.dtype} of shape {self._dW.shape}, got {W.dtype} {W.shape}")

    def _lane(self, lane: _Lane, A: np.ndarray, b: np.ndarray, idx: np.ndarray, count: int) -> float:
        """Steps 1-4 for the rows X[idx] (n,), chunk by chunk: the data loss; G and g0 left in the lane."""
        value = 0.0
        lane.g0[:] = 0
        for lo in range(0, len(idx), self.chunk):
            rows = idx[lo:lo + self.chunk]
            r = len(rows)
            xb = lane.xb[:r]
            if lane.raw is None:
                np.take(self.X, rows, axis=0, out=xb, mode="clip")
            else:
                convert_rows(np.take(self.X, rows, axis=0, out=lane.raw[:r], mode="clip"), xb)
            S = np.dot(xb, A.T, out=lane.S[:r])                          # (r, C)
            S += b
            part, dS = self.loss(S, self.y[rows], count)
            value += part
            lane.g0 += dS.sum(axis=0, dtype=np.float64)
            if lo == 0:
                np.dot(dS.T, xb, out=lane.G)                             # (C, P)
            else:
                lane.G += np.dot(dS.T, xb, out=lane.part)
        return value

    def _pass(self, A: np.ndarray, b: np.ndarray, idx: np.ndarray, count: int) -> tuple[float, _Lane]:
        """The data loss of rows X[idx] over ``count``; their G and g0 in the first lane's buffers."""
        if len(self._lanes) == 1 or len(idx) <= self.chunk:
            return self._lane(self._lanes[0], A, b, idx, count), self._lanes[0]
        first, second = self._lanes
        cut = -(-len(idx) // (2 * self.chunk)) * self.chunk               # the first half of the chunks
        if self._pool is None:
            other = self._lane(second, A, b, idx[cut:], count)
        else:
            future = self._pool.submit(self._lane, second, A, b, idx[cut:], count)
        value = self._lane(first, A, b, idx[:cut], count)
        if self._pool is not None:
            other = future.result()
        first.G += second.G
        first.g0 += second.g0
        return value + other, first

    def _finish(self, W: np.ndarray, value: float, G: np.ndarray, g0: np.ndarray) -> tuple[float, np.ndarray]:
        """loss + L2 and dW = unfold(G, g0) + 2 reg W, written into the dW buffer."""
        dW = unfold(G, g0.astype(self.dtype), self.mean, self.scale, self.bias, out=self._dW)
        if self.reg:
            reg_value, reg_dW = l2_reg(W, self.reg, self.reg_bias)
            value += reg_value
            dW += reg_dW
        return value, dW

    def batch(self, W: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and dW (C, D) on the rows X[idx] (idx (n,) ints, n at most the batch size): steps 1-4 above."""
        self._check_W(W)
        idx = np.asarray(idx)
        n = len(idx)
        if not 1 <= n <= self.max_rows or idx.dtype.kind not in "iu":
            raise ValueError(f"idx must hold 1 to {self.max_rows} row indices, got {n} of dtype {idx.dtype}")
        if idx.min() < 0 or idx.max() >= len(self.y):
            raise ValueError(f"row indices must be in [0, {len(self.y)}), got [{idx.min()}, {idx.max()}]")
        A, b = fold(W, self.mean, self.scale, self.bias)                    # (C, P), (C,)
        value, lane = self._pass(A, b, idx, n)
        return self._finish(W, value, lane.G, lane.g0)

    def full(self, W: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and dW (C, D) over all N rows (gradient descent), block by block."""
        self._check_W(W)
        N = len(self.y)
        if N == 0:
            raise ValueError("the loss of an empty set of rows is undefined")
        A, b = fold(W, self.mean, self.scale, self.bias)
        G = np.zeros((self.C, self.P), dtype=self.dtype)
        g0 = np.zeros(self.C, dtype=np.float64)
        value = 0.0
        for start in range(0, N, self.block):
            part, lane = self._pass(A, b, np.arange(start, min(start + self.block, N)), N)
            value += part
            G += lane.G
            g0 += lane.g0
        return self._finish(W, value, G, g0)


def scores(X: np.ndarray, A: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None,
           chunk: int | None = None) -> np.ndarray:
    """Scores (N, C) = X A.T + b of rows X (N, P) in A's dtype, ``chunk`` rows at a time (X is never converted whole).

    The default chunk is the engine's (``chunk_rows``): the products of a few
    classes stay in BLAS's small-matrix kernels. Many columns (K candidates'
    classes at once) run faster in bigger chunks.
    """
    if X.ndim != 2 or A.ndim != 2 or X.shape[1] != A.shape[1]:
        raise ValueError(f"X must be (N, {A.shape[1]}) for A {A.shape}, got {X.shape}")
    out = np.empty((len(X), A.shape[0]), dtype=A.dtype) if out is None else out
    step = chunk_rows(X.shape[1], A.dtype) if chunk is None else int(chunk)
    if step < 1:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")
    buf = None if X.dtype == A.dtype else np.empty((min(step, len(X)), X.shape[1]), dtype=A.dtype)
    for start in range(0, len(X), step):
        rows = X[start:start + step]
        xb = rows if buf is None else convert_rows(rows, buf[:len(rows)])
        np.dot(xb, A.T, out=out[start:start + len(rows)])
    out += b
    return out


def data_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str = "svm", *, delta: float = 1.0,
              mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
              block: int | None = None, workers: int | None = None) -> tuple[float, np.ndarray]:
    """Data loss (mean over N, no regularisation) and dW (C, P + bias) on RAW rows X (N, P), in W's dtype.

    Equals ``svm_loss(W, X_pre, y, reg=0)`` (``softmax_loss`` for
    loss="softmax") with ``X_pre = [(X - mean) * scale, 1]`` (mean None = 0,
    scale None = 1, the 1 column only if ``bias``), without building X_pre:
    ``Objective.full`` with the preprocessing folded into W.
    """
    W, X = np.asarray(W), np.asarray(X)
    if X.ndim != 2 or W.ndim != 2 or W.shape[1] != X.shape[1] + int(bias):
        raise ValueError(f"W must be (C, {X.shape[-1] + int(bias)}) for X of shape {X.shape} "
                         f"with bias={bias}; got W {W.shape}")
    dtype = float_dtype(W)
    with Objective(X, y, W.shape[0], loss=loss, delta=delta, mean=mean, scale=scale, bias=bias, dtype=dtype,
                   block=DEFAULT_BLOCK if block is None else int(block), workers=workers) as f:
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
    y = check_labels(y, len(X), C)
    kernel = score_loss(loss, delta)
    folded = [fold(W, mean, scale, bias) for W in Ws]
    A = np.concatenate([A for A, _ in folded])                             # (K*C, P)
    b = np.concatenate([b for _, b in folded])                             # (K*C,)
    block = SEARCH_BLOCK if block is None else int(block)
    totals = np.zeros(K, dtype=np.float64)
    for start in range(0, len(X), block):
        S = scores(X[start:start + block], A, b, chunk=None if K == 1 else block).reshape(-1, K, C)   # (n, K, C)
        yb = y[start:start + block]
        totals += [kernel(S[:, k], yb, len(X))[0] for k in range(K)]       # a loop over candidates, not rows
    return totals

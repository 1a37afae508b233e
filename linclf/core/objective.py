"""The training engine: loss and gradient of a linear classifier over stored rows, preprocessing folded in.

Rows X (N, P) stay in their stored dtype (uint8 pixels, float16 or float32
features, often a read-only memory map). W (C, D), D = P + bias, acts on the
preprocessed rows ``[(x - mean) * scale, 1]``; that map is affine, so it is
folded into the weights once per call, ``A, b = fold(W)`` with A (C, P) and
b (C,), and the rows are only ever converted, never preprocessed.

A minibatch step (``Objective.batch``), top to bottom:

    1. gather X[idx] into a reused buffer, converting it to the compute dtype   xb (n, P)
       (``rows.convert_rows``: float16 by its bits, NumPy's cast has no SIMD)
    2. S = xb @ A.T + b                                   the first product     S  (n, C)
    3. loss, dS = the score loss (svm or softmax) of S                         dS (n, C)
    4. G = dS.T @ xb, g0 = dS.sum(0)                      the second product    G  (C, P)
    5. dW = unfold(G, g0) + 2 reg W                                            dW (C, D)

Step 1 goes a tile of rows at a time, at most ``TILE_BYTES`` of them and at
least ``MIN_TILE_ROWS`` (``rows.tile_rows``): each tile is gathered and
converted while it is in the core's cache. Where the BLAS has small-matrix
kernels (``threads.blas_small_kernels``: OpenBLAS on its AVX-512 cores), the
products are tiled too, step 2 with each row tile while it is in cache and
step 4 a few columns at a time: a tile of that size is under the size where
OpenBLAS leaves its small-matrix kernel, and with a skinny W the tiled products
ran about twice as fast as whole ones. On other BLAS (OpenBLAS's Haswell
kernels) tiled products ran slower than whole ones, so both are whole
(``scripts/bench.py --only tiles`` measures both on the BLAS at hand). The
tiles are fixed by the shapes and the BLAS alone.

Everything runs on the calling thread, BLAS limited to one thread inside the
context manager: a minibatch's products are far too small for BLAS's own
threads, and a thread pool running the tiles side by side was slower than one
thread on both pixels and 6,400-wide rows (its threads hand the GIL to each
other between tiles of a few microseconds; ``--only tiles`` times the tiles
on one and on two threads). Results therefore do not depend on ``workers``.

Full-split passes (``Objective.full`` for gradient descent, ``scores`` for
evaluation, ``loss_values`` for the derivative-free search) go block by block
of rows, partial sums added in order.
"""
from __future__ import annotations

from contextlib import ExitStack

import numpy as np

from ..threads import blas_small_kernels, blas_threads, resolve_workers
from .losses import SCORE_LOSSES, check_labels, float_dtype, l2_reg, score_loss
from .preprocess import fold, unfold
from .rows import TILE_BYTES, convert_rows, tile_rows

__all__ = ["Objective", "data_loss", "loss_values", "scores", "DEFAULT_BLOCK", "tile_columns", "matmul_tiled"]

DEFAULT_BLOCK = 256      # rows per block: a block of float32 pixels is 3 MB, a cache's worth
_COLUMN_ALIGN = 64       # column tiles start on multiples of this (whole cache lines of float32)


def tile_columns(n: int, dtype: np.dtype) -> int:
    """Columns of n rows of ``dtype`` in one column tile of a product (a multiple of the alignment)."""
    return max(_COLUMN_ALIGN, TILE_BYTES // (n * np.dtype(dtype).itemsize) // _COLUMN_ALIGN * _COLUMN_ALIGN)


def matmul_tiled(a: np.ndarray, b: np.ndarray, out: np.ndarray, *, rows: int = 0, columns: int = 0) -> np.ndarray:
    """out = a @ b for a (n, k), b (k, m), tile by tile: ``rows`` rows of a, or ``columns`` columns of b, at a time
    (neither: whole).

    Each tile is its own product, so a tile's values do not depend on the
    other tiles (the cut is the caller's, fixed by the shapes).
    """
    if rows:
        for lo in range(0, a.shape[0], rows):
            np.matmul(a[lo:lo + rows], b, out=out[lo:lo + rows])
    elif columns:
        for lo in range(0, b.shape[1], columns):
            np.matmul(a, b[:, lo:lo + columns], out=out[:, lo:lo + columns])
    else:
        np.matmul(a, b, out=out)
    return out


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
    ``(loss, dW)`` where dW is a buffer the next call overwrites. Use as a context manager (or call ``close``):
    inside, BLAS runs on one thread. ``tiled``: products in tiles (default: where the BLAS has small-matrix
    kernels, see the module docstring).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, num_classes: int, *, loss: str = "svm", delta: float = 1.0,
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
                 reg: float = 0.0, reg_bias: bool = True, dtype: np.dtype | type = np.float32,
                 block: int = DEFAULT_BLOCK, batch_size: int | None = None, tiled: bool | None = None) -> None:
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
        self._limits = ExitStack()
        # the minibatch's buffers
        n = max(1, min(max(self.block, batch_size or 0), X.shape[0]))
        self._xb = np.empty((n, self.P), dtype=self.dtype)
        self._raw = None if X.dtype == self.dtype else np.empty((n, self.P), dtype=X.dtype)
        self._S = np.empty((n, self.C), dtype=self.dtype)
        self._G = np.empty((self.C, self.P), dtype=self.dtype)
        self._dW = np.empty((self.C, self.P + int(self.bias)), dtype=self.dtype)
        self._tile = tile_rows(self.P, self.dtype)
        self.tiled = blas_small_kernels() if tiled is None else bool(tiled)

    # -- lifecycle

    def __enter__(self) -> "Objective":
        self._limits.enter_context(blas_threads(1))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Restore BLAS's threads (idempotent)."""
        self._limits.close()

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
        t = self._tile

        for lo in range(0, n, t):                                           # a tile: gathered, converted, multiplied
            hi = min(lo + t, n)
            if self._raw is None:
                np.take(self.X, idx[lo:hi], axis=0, out=xb[lo:hi], mode="clip")
            else:
                raw = np.take(self.X, idx[lo:hi], axis=0, out=self._raw[lo:hi], mode="clip")
                convert_rows(raw, xb[lo:hi])                                # the one conversion
            if self.tiled:
                np.matmul(xb[lo:hi], A.T, out=S[lo:hi])
        if not self.tiled:
            np.matmul(xb, A.T, out=S)
        S += b
        value, dS = self.loss(S, self.y[idx], n)
        dT = np.ascontiguousarray(dS.T)                                     # (C, n)
        g0 = dS.sum(axis=0, dtype=np.float64)                               # (C,)
        matmul_tiled(dT, xb, G, columns=self._columns(n))
        return self._finish(W, value, G, g0)

    def _rows(self) -> int:
        """Rows per tile of the scores' product (0: whole)."""
        return self._tile if self.tiled else 0

    def _columns(self, n: int) -> int:
        """Columns per tile of the gradient's product for n rows (0: whole)."""
        return tile_columns(n, self.dtype) if self.tiled else 0

    # -- the whole split

    def full(self, W: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and dW (C, D) over all N rows (gradient descent), block by block."""
        self._check_W(W)
        N = len(self.y)
        if N == 0:
            raise ValueError("the loss of an empty set of rows is undefined")
        A, b = fold(W, self.mean, self.scale, self.bias)
        G = np.zeros((self.C, self.P), dtype=self.dtype)
        G_block = np.empty_like(G)
        g0 = np.zeros(self.C, dtype=np.float64)
        value = 0.0
        buf = None
        for start in range(0, N, self.block):
            stop = min(start + self.block, N)
            xb, buf = _converted(self.X[start:stop], self.dtype, buf)
            S = matmul_tiled(xb, A.T, self._S[:len(xb)], rows=self._rows())     # (n, C)
            S += b
            part, dS = self.loss(S, self.y[start:stop], N)
            value += part
            G += matmul_tiled(np.ascontiguousarray(dS.T), xb, G_block, columns=self._columns(len(xb)))
            g0 += dS.sum(axis=0, dtype=np.float64)
        return self._finish(W, value, G, g0)


def _converted(X: np.ndarray, dtype: np.dtype, buf: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """X (n, P) as ``dtype``: X itself when it already is (C-contiguous), else converted into ``buf`` (reused)."""
    if X.dtype == dtype and X.flags.c_contiguous:
        return X, buf
    if buf is None or buf.shape[0] < len(X):
        buf = np.empty(X.shape, dtype=dtype)
    return convert_rows(X, buf[:len(X)]), buf


def scores(X: np.ndarray, A: np.ndarray, b: np.ndarray, *, block: int = 1024,
           out: np.ndarray | None = None) -> np.ndarray:
    """Scores (N, C) = X A.T + b of rows X (N, P) in A's dtype, block by block (X is never converted whole)."""
    if X.ndim != 2 or A.ndim != 2 or X.shape[1] != A.shape[1]:
        raise ValueError(f"X must be (N, {A.shape[1]}) for A {A.shape}, got {X.shape}")
    out = np.empty((len(X), A.shape[0]), dtype=A.dtype) if out is None else out
    buf = None
    t = tile_rows(X.shape[1], A.dtype) if blas_small_kernels() else 0
    for start in range(0, len(X), block):
        xb, buf = _converted(X[start:start + block], A.dtype, buf)
        matmul_tiled(xb, A.T, out[start:start + len(xb)], rows=t)
    out += b
    return out


def data_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str = "svm", *, delta: float = 1.0,
              mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
              block: int | None = None, workers: int | None = None) -> tuple[float, np.ndarray]:
    """Data loss (mean over N, no regularisation) and dW (C, P + bias) on RAW rows X (N, P), in W's dtype.

    Equals ``svm_loss(W, X_pre, y, reg=0)`` (``softmax_loss`` for
    loss="softmax") with ``X_pre = [(X - mean) * scale, 1]`` (mean None = 0,
    scale None = 1, the 1 column only if ``bias``), without building X_pre:
    ``Objective.full`` with the preprocessing folded into W. ``workers`` is
    checked as everywhere (a positive integer) but no longer changes anything:
    the pass runs on one thread (see the module docstring).
    """
    W, X = np.asarray(W), np.asarray(X)
    if X.ndim != 2 or W.ndim != 2 or W.shape[1] != X.shape[1] + int(bias):
        raise ValueError(f"W must be (C, {X.shape[-1] + int(bias)}) for X of shape {X.shape} "
                         f"with bias={bias}; got W {W.shape}")
    resolve_workers(workers)
    dtype = float_dtype(W)
    with Objective(X, y, W.shape[0], loss=loss, delta=delta, mean=mean, scale=scale, bias=bias, dtype=dtype,
                   block=DEFAULT_BLOCK if block is None else int(block)) as f:
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

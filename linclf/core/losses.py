"""Losses of a linear classifier ``s = W x``: multiclass SVM (hinge) and softmax cross-entropy.

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
- Data losses are means over the N examples; ``l2_reg`` is ``reg * sum(W*W)``.
- Arithmetic runs in the floating dtype of the data (float32 stays float32).

Speed (measured by ``scripts/bench.py``): the products are skinny
(N x D) @ (D x C) with C = 10. The OpenBLAS in NumPy's wheels (SkylakeX
kernels) runs a product with M*N*K <= 1e6 through an unpacked, single-threaded
small-matrix path that is about twice as fast per core as its general path
(measured: 32 rows x 3072 x 10 vs 33 rows), so the scores are one stacked
``np.matmul`` over 32-row groups and the gradient one stacked call over column
chunks written straight into dW. ``data_loss`` folds the preprocessing into
the weights, converts raw uint8 rows a block at a time into a reused
per-thread buffer, and from 512 rows on splits the rows between worker threads
(``np.matmul`` releases the GIL; the small path does not wake OpenBLAS's own
threads, so the two do not fight). A single block (a minibatch, <= 256 rows)
is shared with one helper thread instead (``_block``): rows for the scores,
columns for the gradient, so every number is what one thread computes.
The training loop's minibatch form, shared with a worker process, is
``minibatch.MinibatchLoss``.
"""
from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "svm_loss", "softmax_loss", "svm_loss_naive", "softmax_loss_naive",
    "svm_scores_loss", "softmax_scores_loss", "softmax", "SCORE_LOSSES", "l2_reg",
    "data_loss", "loss_values", "set_default_workers", "default_workers", "usable_cpus", "fold", "svm_hinge_kink", "hinge_margins",
    "DEFAULT_BLOCK",
]

DEFAULT_BLOCK = 256          # raw rows converted per block (3 MB of float32); measured best of 32..2048
_SMALL_GEMM_MNK = 1_000_000  # OpenBLAS's small-matrix path takes products with M*N*K up to this
_ALIGN = 32                  # worker ranges start on multiples of this many rows
_MIN_ROWS_PER_WORKER = 256   # below this a thread costs more than it saves (measured: 256 rows no gain, 512 1.3x)
_MAX_WORKERS = 8
_SCRATCH_BYTES = 32 << 20    # larger scratch buffers are not kept between calls

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()   # per-thread scratch buffers


# ----------------------------------------------------------------------------- helpers

def _float_dtype(*arrays: np.ndarray) -> np.dtype:
    """The first floating dtype among ``arrays`` (float64 if none is floating)."""
    for a in arrays:
        if a.dtype.kind == "f":
            return a.dtype
    return np.dtype(np.float64)


def _check_labels(y: np.ndarray, N: int, C: int) -> np.ndarray:
    """y as an (N,) integer array with values in [0, C); raises ValueError otherwise."""
    y = np.asarray(y)
    if y.shape != (N,):
        raise ValueError(f"y must have shape ({N},) to match the {N} rows of X, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    if N and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"labels must be in [0, {C}), got values in [{y.min()}, {y.max()}]")
    return y


def _check_count(count: int | None, N: int) -> int:
    """The divisor of the data loss: ``count`` or N; must be positive."""
    count = N if count is None else int(count)
    if count <= 0:
        raise ValueError(f"the loss averages over count={count} examples; it must be positive (N={N})")
    return count


# ----------------------------------------------------------------------------- score-level losses

def _svm(scores: np.ndarray, y: np.ndarray, delta: float, count: int) -> tuple[float, np.ndarray]:
    """svm_scores_loss without argument checks (scores float (N, C), y valid, count > 0)."""
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


def _softmax(scores: np.ndarray, y: np.ndarray, count: int) -> tuple[float, np.ndarray]:
    """softmax_scores_loss without argument checks (scores float (N, C), y valid, count > 0)."""
    rows = np.arange(scores.shape[0])
    top = np.maximum.reduce(np.ascontiguousarray(scores.T), axis=0)  # (N,) row maxima: exact, 4x faster than max(1)
    shifted = scores - top[:, None]                              # (N, C), max 0 per row
    correct = shifted[rows, y]                                   # (N,)
    probs = np.exp(shifted, out=shifted)                         # (N, C) unnormalised
    sums = probs.sum(axis=1)                                     # (N,) in [1, C]
    loss = float((np.log(sums) - correct).sum(dtype=np.float64)) / count
    probs *= (1.0 / (sums * count))[:, None]                     # (N, C) probabilities / count
    probs[rows, y] -= probs.dtype.type(1.0 / count)
    return loss, probs


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax (N, C) float64 of scores (N, C): class probabilities, computed stably."""
    s = np.array(scores, dtype=np.float64)
    s -= s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    return s


def _checked_scores(scores: np.ndarray, y: np.ndarray, count: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """scores as float (N, C), y checked, count (default N) checked."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    N, C = scores.shape
    return scores, _check_labels(y, N, C), _check_count(count, N)


def svm_scores_loss(scores: np.ndarray, y: np.ndarray, delta: float = 1.0,
                    count: int | None = None) -> tuple[float, np.ndarray]:
    """Hinge data loss SUM/count and dscores (N, C) / count from scores (N, C); margins of exactly 0 count as 0."""
    scores, y, count = _checked_scores(scores, y, count)
    return _svm(scores, y, delta, count)


def softmax_scores_loss(scores: np.ndarray, y: np.ndarray, count: int | None = None) -> tuple[float, np.ndarray]:
    """Cross-entropy data loss SUM/count (log-sum-exp) and dscores (N, C) / count from scores (N, C)."""
    scores, y, count = _checked_scores(scores, y, count)
    return _softmax(scores, y, count)


SCORE_LOSSES: dict[str, Callable[..., tuple[float, np.ndarray]]] = {
    "svm": svm_scores_loss,
    "softmax": softmax_scores_loss,
}

ScoreLoss = Callable[[np.ndarray, np.ndarray, int], tuple[float, np.ndarray]]


def _score_loss(loss: str, delta: float) -> ScoreLoss:
    """(scores, y, count) -> (loss, dscores), unchecked, for the loss named ``loss``."""
    if loss == "svm":
        return lambda s, y, count: _svm(s, y, delta, count)
    if loss == "softmax":
        return _softmax
    raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(SCORE_LOSSES)}")


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
    W = np.asarray(W)
    loss = _l2_value(W, reg, reg_bias)
    dW = (2.0 * float(reg)) * W                                  # (C, D), keeps a float32 W float32
    if not reg_bias:
        dW[:, -1] = 0
    return loss, dW


# ----------------------------------------------------------------------------- the row engine

def _gemm_rows(C: int, D: int) -> int:
    """Rows per BLAS call so a (rows, D) @ (D, C) product takes OpenBLAS's small-matrix path; 0: don't split."""
    rows = _SMALL_GEMM_MNK // max(C * D, 1)
    return rows if rows >= 8 else 0


def _scratch(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread buffer of ``shape`` reused across calls (fresh if it would exceed _SCRATCH_BYTES)."""
    size = math.prod(shape)                                      # (np.prod costs ~4 us)
    if size * np.dtype(dtype).itemsize > _SCRATCH_BYTES:
        return np.empty(shape, dtype=dtype)
    store = _local.__dict__
    arr = store.get(name)
    if arr is None or arr.dtype != dtype or arr.size < size:
        arr = store[name] = np.empty(size, dtype=dtype)
    return arr[:size].reshape(shape)


def _scores_into(Xb: np.ndarray, At: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (n, C) = Xb (n, D) @ At (D, C), as one stacked call of small products."""
    n, D = Xb.shape
    r = _gemm_rows(At.shape[1], D)
    m = (n // r) * r if r and Xb.flags.c_contiguous else 0
    if m:
        np.matmul(Xb[:m].reshape(-1, r, D), At, out=out[:m].reshape(-1, r, At.shape[1]))  # (k, r, C)
    if m < n:
        np.matmul(Xb[m:], At, out=out[m:])
    return out


def _column_chunks(a: np.ndarray, k: int, w: int) -> np.ndarray:
    """View (k, R, w) of the first k*w columns of a (R, >= k*w) array with unit column stride.

    Splitting the last axis of a view never copies; this costs ~1 us where
    ``as_strided`` costs ~13 us per call.
    """
    return a[:, :k * w].reshape(a.shape[0], k, w).transpose(1, 0, 2)


def _grad_into(dS: np.ndarray, Xb: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (C, D) = dS (n, C).T @ Xb (n, D), as one stacked call of small products over column chunks.

    Chunks of w columns keep each (C, n) @ (n, w) product on the small-matrix
    path and write straight into ``out``; measured 25% faster than stacking
    row groups and summing their partial gradients.
    """
    n, D = Xb.shape
    C = dS.shape[1]
    dT = np.ascontiguousarray(dS.T)                              # (C, n)
    w = min(D, _SMALL_GEMM_MNK // max(C * n, 1) // 64 * 64)
    if w < 64 or Xb.strides[1] != Xb.itemsize or not out.flags.c_contiguous:
        return np.matmul(dT, Xb, out=out)
    k = D // w
    m = k * w
    np.matmul(dT, _column_chunks(Xb, k, w), out=_column_chunks(out, k, w))  # (k, C, w)
    if m < D:
        np.matmul(dT, Xb[:, m:], out=out[:, m:])
    return out


def _rows(X: np.ndarray, y: np.ndarray, At: np.ndarray, b: np.ndarray | None, lo: int, hi: int,
          block: int, count: int, score_loss: ScoreLoss) -> tuple[float, np.ndarray, np.ndarray]:
    """Loss, G = dS.T @ Xf (C, D) and g0 = dS.sum(0) (C,) float64 over rows [lo, hi) of X, block by block.

    Xf is X converted to At's dtype; rows already in that dtype (C-contiguous)
    are used in place, others are converted into one reused buffer.
    """
    D, C = At.shape
    dtype = At.dtype
    direct = X.dtype == dtype and X.flags.c_contiguous
    n_max = min(block, hi - lo)
    buf = None if direct else _scratch("buf", (n_max, D), dtype)
    scores = _scratch("scores", (n_max, C), dtype)
    G = np.zeros((C, D), dtype=dtype)
    tmp = G if hi - lo <= block else np.empty((C, D), dtype=dtype)
    g0 = np.zeros(C, dtype=np.float64)
    loss = 0.0
    for start in range(lo, hi, block):
        stop = min(start + block, hi)
        if direct:
            xf = X[start:stop]
        else:
            xf = buf[:stop - start]
            np.copyto(xf, X[start:stop], casting="unsafe")      # uint8 -> float, the one pass over X
        s = _scores_into(xf, At, scores[:stop - start])         # (n, C)
        if b is not None:
            s += b
        part, dS = score_loss(s, y[start:stop], count)
        loss += part
        _grad_into(dS, xf, tmp)
        if tmp is not G:
            G += tmp
        g0 += dS.sum(axis=0, dtype=np.float64)
    return loss, G, g0


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_default_workers: int | None = None


def set_default_workers(workers: int | None) -> None:
    """CPUs ``data_loss`` and the training loop use when not told (None: $LINCLF_WORKERS, else the usable
    CPUs); 1 in parallel worker processes. 1 also keeps training steps in one process."""
    global _default_workers
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    _default_workers = None if workers is None else int(workers)


def default_workers() -> int | None:
    """The CPU count set by ``set_default_workers``, else $LINCLF_WORKERS, else None (the usable CPUs)."""
    if _default_workers is not None:
        return _default_workers
    env = os.environ.get("LINCLF_WORKERS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise ValueError(f"LINCLF_WORKERS must be a positive integer, got {env!r}")
    return int(env)


def _split(N: int, workers: int | None) -> list[tuple[int, int]]:
    """Row ranges, one per worker thread: 1 below _MIN_ROWS_PER_WORKER rows each; aligned to 32 rows."""
    if workers is None:
        workers = default_workers()
    if workers is None:
        k = min(usable_cpus(), _MAX_WORKERS, N // _MIN_ROWS_PER_WORKER)
    else:
        k = min(int(workers), -(-N // _ALIGN))
    k = max(k, 1)
    bounds = [min(N, round(N * i / k / _ALIGN) * _ALIGN) for i in range(k)] + [N]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _forget_pool_after_fork() -> None:
    """In a forked child the parent's worker threads do not exist: make a new pool when one is needed."""
    global _pool, _pool_lock, _helper, _helper_lock
    _pool = None
    _pool_lock = threading.Lock()
    _helper = None
    _helper_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _get_pool() -> ThreadPoolExecutor:
    """The module's worker threads, created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="linclf-loss")
        return _pool


def _run(X: np.ndarray, y: np.ndarray, At: np.ndarray, b: np.ndarray | None, score_loss: ScoreLoss,
         block: int, workers: int | None) -> tuple[float, np.ndarray, np.ndarray]:
    """Loss (mean over N), G (C, D) and g0 (C,) over all rows of X, the row ranges spread over worker threads."""
    N = X.shape[0]
    count = _check_count(None, N)
    if block < 1:
        raise ValueError(f"block must be a positive number of rows, got {block}")
    ranges = _split(N, workers)
    if len(ranges) == 1:
        if N <= block:
            D, C = At.shape
            direct = X.dtype == At.dtype and X.flags.c_contiguous
            xf = X if direct else _scratch("buf", (N, D), At.dtype)
            return _block(X, y, lambda: (At, b), count, score_loss, _pair_allowed(workers, N), xf,
                          _scratch("scores", (N, C), At.dtype), np.zeros((C, D), dtype=At.dtype))
        return _rows(X, y, At, b, 0, N, block, count, score_loss)
    pool = _get_pool()
    futures = [pool.submit(_rows, X, y, At, b, lo, hi, block, count, score_loss) for lo, hi in ranges[1:]]
    lo, hi = ranges[0]
    results = [_rows(X, y, At, b, lo, hi, block, count, score_loss)]   # the calling thread takes a share too
    results += [f.result() for f in futures]
    loss, G, g0 = results[0]
    for part, G_i, g0_i in results[1:]:
        loss += part
        G += G_i
        g0 += g0_i
    return loss, G, g0


# ----------------------------------------------------------------------------- one block on two threads

_PAIR_MIN_ROWS = 128         # smaller blocks run on the calling thread alone (two ~30 us handoffs cost more)

_helper: "_Helper | None" = None
_helper_lock = threading.Lock()


class _Task:
    """A function queued for the helper thread; ``wait()`` returns when it has run and re-raises its exception."""

    __slots__ = ("fn", "error", "_done")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as e:  # handed to the waiter
            self.error = e
        finally:
            self._done.release()

    def wait(self) -> None:
        with self._done:
            pass
        if self.error is not None:
            raise self.error


class _Helper:
    """One persistent thread running queued tasks in order, for ``_block``.

    A lock handoff costs about half a ThreadPoolExecutor round trip (measured
    12 vs 22 us; ~30 us to wake a thread that slept a while), which matters
    for a 0.5 ms minibatch.
    """

    def __init__(self) -> None:
        self.busy = threading.Lock()          # held by the caller sharing its work with the helper
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="linclf-loss-helper", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._tasks.get().run()

    def submit(self, fn: Callable[[], None]) -> _Task:
        """Queue ``fn`` to run on the helper thread after the tasks queued before it."""
        task = _Task(fn)
        self._tasks.put(task)
        return task


def _reserve_helper() -> _Helper | None:
    """The helper thread, reserved for the caller (release ``busy`` after use); None if another caller has it."""
    global _helper
    helper = _helper
    if helper is None:
        with _helper_lock:
            if _helper is None:
                _helper = _Helper()
            helper = _helper
    return helper if helper.busy.acquire(blocking=False) else None


def _pair_allowed(workers: int | None, n: int) -> bool:
    """May a block of n rows use the helper thread? Not when told to use one thread, nor on one CPU."""
    return workers is None and default_workers() is None and n >= _PAIR_MIN_ROWS and usable_cpus() > 1


def _unfold_columns(dW: np.ndarray, G: np.ndarray, g0: np.ndarray, mean: np.ndarray | None,
                    scale: np.ndarray | None, c0: int, c1: int) -> None:
    """Columns [c0, c1) of ``_unfold``'s body, elementwise the same: dW[:, c] = (G[:, c] - g0 mean[c]) * scale[c]."""
    body = dW[:, c0:c1]
    if mean is not None:
        np.multiply.outer(g0, mean[c0:c1], out=body)
        np.subtract(G[:, c0:c1], body, out=body)
    else:
        body[...] = G[:, c0:c1]
    if scale is not None:
        body *= scale[c0:c1]


def _convert_rows(X: np.ndarray, xf: np.ndarray, lo: int, hi: int) -> None:
    """xf[lo:hi] = X[lo:hi] in xf's dtype (nothing to do when xf is X)."""
    if xf is not X:
        np.copyto(xf[lo:hi], X[lo:hi], casting="unsafe")      # uint8 -> float, the one pass over X


def _block(X: np.ndarray, y: np.ndarray, fold_fn: Callable[[], tuple[np.ndarray, np.ndarray | None]], count: int,
           score_loss: ScoreLoss, pair: bool, xf: np.ndarray, S: np.ndarray, G: np.ndarray,
           unfold: tuple | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """``_rows`` for a single block, all of X (n, P), bit for bit the same result.

    ``fold_fn()`` gives At (D, C) and b (C,) or None. ``xf`` (n, D) receives
    the rows converted to At's dtype (it is X itself when X needs no
    conversion), ``S`` (n, C) the scores, ``G`` (C, D) the gradient product.
    ``unfold = (dW, mean, scale, bias)`` also writes ``_unfold``'s result into
    dW (mean, scale in At's dtype).

    With ``pair`` the helper thread shares the work: first the rows (their
    conversion and scores, in whole groups of small-GEMM rows),
    then the gradient's columns (and their unfolding). Every output element
    comes from the same BLAS call or elementwise operation as on one thread,
    so the result does not depend on ``pair``. The helper gets the smaller
    share: it starts ~30 us late (a sleeping thread's wake-up on these VMs),
    and a caller that finishes last waits for nothing.
    """
    n = S.shape[0]
    D, C = G.shape[1], G.shape[0]
    r = _gemm_rows(C, D)
    helper = _reserve_helper() if pair and r and xf.flags.c_contiguous and n >= 2 * r else None
    folded: list = []                                            # [At, b] once fold_fn has run

    def scores(lo: int, hi: int) -> None:
        At, b = folded
        s = _scores_into(xf[lo:hi], At, S[lo:hi])
        if b is not None:
            s += b

    try:
        if helper is None:
            folded.extend(fold_fn())
            _convert_rows(X, xf, 0, n)
            scores(0, n)
        else:
            h = max(r, (n * 5 // 8) // r * r)                    # the caller's rows [0, h), whole groups
            folded.extend(fold_fn())

            def helper_rows() -> None:
                _convert_rows(X, xf, h, n)
                scores(h, n)

            task = helper.submit(helper_rows)
            try:
                _convert_rows(X, xf, 0, h)
                scores(0, h)
            finally:
                task.wait()
        part, dS = score_loss(S, y, count)
        loss = 0.0 + part
        g0 = np.zeros(C, dtype=np.float64)
        g0 += dS.sum(axis=0, dtype=np.float64)
        if unfold is not None:
            dW, mean, scale, bias = unfold
            g0f = g0.astype(G.dtype) if mean is not None else None
        dT = np.ascontiguousarray(dS.T)                              # (C, n)
        w = min(D, _SMALL_GEMM_MNK // max(C * n, 1) // 64 * 64)      # as in _grad_into
        if w < 64 or xf.strides[1] != xf.itemsize:
            np.matmul(dT, xf, out=G)
            if unfold is not None:
                _unfold_columns(dW, G, g0f, mean, scale, 0, D)
        else:
            rest = D // w * w                                    # columns [rest, D): one product, as ever

            def columns(c0: int, c1: int) -> None:
                """G[:, c0:c1] as stacked chunks of w columns, a narrower chunk, the rest; then their unfolding."""
                k = (min(c1, rest) - c0) // w
                m = c0 + k * w
                np.matmul(dT, _column_chunks(xf[:, c0:], k, w), out=_column_chunks(G[:, c0:], k, w))
                if m < min(c1, rest):
                    np.matmul(dT, xf[:, m:min(c1, rest)], out=G[:, m:min(c1, rest)])
                if c1 > rest:
                    np.matmul(dT, xf[:, rest:], out=G[:, rest:])
                if unfold is not None:
                    _unfold_columns(dW, G, g0f, mean, scale, c0, c1)

            # the caller's columns [0, cs): more than half, as the helper starts ~30 us late (measured
            # best 9/16); a multiple of 64 (a product's elements do not depend on how its columns are chunked)
            cs = D
            if helper is not None and rest >= 128:
                cs = min(rest - 64, max(64, (D * 9 // 16) // 64 * 64))
            if cs < D:
                task = helper.submit(lambda: columns(cs, D))
                try:
                    columns(0, cs)
                finally:
                    task.wait()
            else:
                columns(0, D)
        if unfold is not None and bias:
            dW[:, D] = g0
    finally:
        if helper is not None:
            helper.busy.release()
    return loss, G, g0


# ----------------------------------------------------------------------------- losses on preprocessed X

def _linear_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float,
                 score_loss: ScoreLoss) -> tuple[float, np.ndarray]:
    """Data loss of ``score_loss`` on scores X @ W.T plus reg*sum(W*W); gradient (C, D) in X's dtype."""
    X, W = np.asarray(X), np.asarray(W)
    if X.ndim != 2 or W.ndim != 2 or W.shape[1] != X.shape[1]:
        raise ValueError(f"W must be (C, D) and X (N, D) with the same D; got W {W.shape}, X {X.shape}")
    dtype = _float_dtype(X, W)
    W = W.astype(dtype, copy=False)
    y = _check_labels(y, X.shape[0], W.shape[0])
    loss, dW, _ = _run(X, y, W.T, None, score_loss, DEFAULT_BLOCK, None)
    if reg:
        reg_loss, reg_dW = l2_reg(W, reg)
        loss += reg_loss
        dW += reg_dW
    return loss, dW


def svm_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
             delta: float = 1.0) -> tuple[float, np.ndarray]:
    """Weston-Watkins hinge loss (mean over N) + reg*sum(W*W) and dW (C, D); W (C, D), X (N, D), y (N,)."""
    return _linear_loss(W, X, y, reg, _score_loss("svm", delta))


def softmax_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy (mean over N) + reg*sum(W*W) and dW (C, D); W (C, D), X (N, D), y (N,)."""
    return _linear_loss(W, X, y, reg, _score_loss("softmax", 1.0))


# ----------------------------------------------------------------------------- naive references

def svm_loss_naive(W: np.ndarray, X: np.ndarray, y: np.ndarray, reg: float = 0.0,
                   delta: float = 1.0) -> tuple[float, np.ndarray]:
    """The SVM loss with loops over examples and classes: the reference; W (C, D), X (N, D)."""
    dtype = _float_dtype(X, W)
    W, X = np.asarray(W, dtype=dtype), np.asarray(X, dtype=dtype)
    N, C = X.shape[0], W.shape[0]
    loss, dW = 0.0, np.zeros(W.shape, dtype=dtype)
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
    dtype = _float_dtype(X, W)
    W, X = np.asarray(W, dtype=dtype), np.asarray(X, dtype=dtype)
    N, C = X.shape[0], W.shape[0]
    loss, dW = 0.0, np.zeros(W.shape, dtype=dtype)
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


# ----------------------------------------------------------------------------- raw data, folded preprocessing

def fold(W: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None,
         bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """A (C, P), b (C,) with W @ [(x - mean) * scale, 1] == A @ x + b; in W's (floating) dtype."""
    W = np.asarray(W)
    dtype = _float_dtype(W)
    P = W.shape[1] - int(bias)
    A = np.ascontiguousarray(W[:, :P], dtype=dtype)
    if scale is not None:
        A = A * np.asarray(scale, dtype=dtype)                   # (C, P)
    b = W[:, P].astype(dtype) if bias else np.zeros(W.shape[0], dtype=dtype)
    if mean is not None:
        b = b - np.einsum("cp,p->c", A, np.asarray(mean, dtype=dtype))  # (C,); einsum: no BLAS threads woken
    return A, b


def _unfold(G: np.ndarray, g0: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None,
            bias: bool, out: np.ndarray | None = None) -> np.ndarray:
    """dW (C, P + bias) from G (C, P) = dS.T @ X and g0 (C,) = dS.sum(0): the chain rule through ``fold``.

    ``out``: a (C, P + bias) array of G's dtype to write dW into.
    """
    C, P = G.shape
    dW = np.empty((C, P + int(bias)), dtype=G.dtype) if out is None else out
    body = dW[:, :P]
    if mean is not None:
        np.multiply.outer(g0.astype(G.dtype), np.asarray(mean, dtype=G.dtype), out=body)   # (C, P)
        np.subtract(G, body, out=body)
    else:
        body[...] = G
    if scale is not None:
        body *= np.asarray(scale, dtype=G.dtype)
    if bias:
        dW[:, P] = g0
    return dW


def data_loss(W: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str = "svm", *, delta: float = 1.0,
              mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
              block: int | None = None, workers: int | None = None) -> tuple[float, np.ndarray]:
    """Data loss (mean over N, no regularisation) and dW (C, P + bias) on RAW rows X (N, P), in W's dtype.

    Equals ``svm_loss(W, X_pre, y, reg=0)`` (``softmax_loss`` for
    loss="softmax") with ``X_pre = [(X - mean) * scale, 1]`` (mean None = 0,
    scale None = 1, the 1 column only if ``bias``), but never builds X_pre: the
    preprocessing is folded into the weights (``fold``: scores = X A.T + b),
    X (uint8 or float) is converted to W's dtype ``block`` rows at a time
    (default DEFAULT_BLOCK) into one reused buffer, so X is read from memory
    once, and the gradient is unfolded at the end: ``dW[:, :P] = (G - g0 mean)
    * scale``, ``dW[:, P] = g0`` with ``G = dS.T @ X``, ``g0 = dS.sum(0)``.
    ``workers`` threads share the rows (default: the usable CPUs, at most 8,
    and one thread per 128 rows at least); pass 1 where processes already fill
    the CPUs. The add-on of the L2 term is the caller's (``l2_reg``).
    """
    W, X = np.asarray(W), np.asarray(X)
    if X.ndim != 2 or W.ndim != 2 or W.shape[1] != X.shape[1] + int(bias):
        raise ValueError(f"W must be (C, {X.shape[-1] + int(bias)}) for X of shape {X.shape} "
                         f"with bias={bias}; got W {W.shape}")
    for name, v in (("mean", mean), ("scale", scale)):
        if v is not None and np.shape(v) != (X.shape[1],):
            raise ValueError(f"{name} must have shape ({X.shape[1]},) to match X, got {np.shape(v)}")
    y = _check_labels(y, X.shape[0], W.shape[0])
    block = DEFAULT_BLOCK if block is None else int(block)
    score_loss = _score_loss(loss, delta)
    N, P = X.shape
    if 0 < N <= block and len(_split(N, workers)) == 1:
        # one block: as _run would compute it, with the folding overlapped and the unfolding shared (_block)
        C = W.shape[0]
        dtype = _float_dtype(W)

        def fold_fn() -> tuple[np.ndarray, np.ndarray | None]:
            A, b = fold(W, mean, scale, bias)
            return A.T, b if (bias or mean is not None) else None

        direct = X.dtype == dtype and X.flags.c_contiguous
        dW = np.empty((C, P + int(bias)), dtype=dtype)
        unfold = (dW, None if mean is None else np.asarray(mean, dtype=dtype),
                  None if scale is None else np.asarray(scale, dtype=dtype), bias)
        total, _, _ = _block(X, y, fold_fn, N, score_loss, _pair_allowed(workers, N),
                             X if direct else _scratch("buf", (N, P), dtype), _scratch("scores", (N, C), dtype),
                             np.empty((C, P), dtype=dtype), unfold)
        return total, dW
    A, b = fold(W, mean, scale, bias)
    total, G, g0 = _run(X, y, A.T, b if (bias or mean is not None) else None, score_loss, block, workers)
    return total, _unfold(G, g0, mean, scale, bias)


def loss_values(Ws: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str = "svm", *, delta: float = 1.0,
                mean: np.ndarray | None = None, scale: np.ndarray | None = None, bias: bool = True,
                block: int | None = None) -> np.ndarray:
    """Data losses (K,) of K weight matrices Ws (K, C, P + bias) on RAW rows X (N, P): no gradients.

    One pass over X serves all K candidates (derivative-free search evaluates
    many W on the whole training split); each value equals
    ``data_loss(Ws[k], X, y, loss, ...)[0]`` up to rounding.
    """
    Ws = np.asarray(Ws)
    X = np.asarray(X)
    if Ws.ndim != 3 or Ws.shape[2] != X.shape[1] + int(bias):
        raise ValueError(f"Ws must be (K, C, {X.shape[1] + int(bias)}) for X {X.shape}, got {Ws.shape}")
    K, C, _ = Ws.shape
    N = X.shape[0]
    y = _check_labels(y, N, C)
    if loss not in SCORE_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(SCORE_LOSSES)}")
    folded = [fold(W, mean, scale, bias) for W in Ws]
    At = np.ascontiguousarray(np.concatenate([A for A, _ in folded]).T)    # (P, K*C)
    b = np.concatenate([b for _, b in folded])                             # (K*C,)
    block = DEFAULT_BLOCK if block is None else int(block)
    buf = np.empty((min(block, N), X.shape[1]), dtype=At.dtype)
    totals = np.zeros(K, dtype=np.float64)
    for start in range(0, N, block):
        xb = X[start:start + block]
        xf = buf[:len(xb)]
        np.copyto(xf, xb, casting="unsafe")
        S = (xf @ At + b).reshape(len(xb), K, C)                          # (n, K, C)
        yb = y[start:start + block]
        correct = np.take_along_axis(S, yb[:, None, None].repeat(K, axis=1), axis=2)  # (n, K, 1)
        if loss == "svm":
            margins = np.maximum(S - correct + delta, 0)                   # the correct class adds delta
            totals += margins.sum(axis=(0, 2), dtype=np.float64) - len(xb) * delta
        else:
            top = S.max(axis=2, keepdims=True)
            lse = np.log(np.exp(S - top).sum(axis=2, keepdims=True)) + top
            totals += (lse - correct).sum(axis=(0, 2), dtype=np.float64)
    return totals / max(N, 1)


# ----------------------------------------------------------------------------- kinks

def _hinge_kink(margins: np.ndarray, X: np.ndarray, y: np.ndarray, index: tuple[int, ...], h: float) -> bool:
    """svm_hinge_kink given the margins (N, C) at W."""
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
    """Margins s_j - s_{y_i} + delta (N, C) at W (the correct class's entry is delta)."""
    scores = np.asarray(X) @ np.asarray(W).T                     # (N, C)
    return scores - scores[np.arange(len(y)), y][:, None] + delta


def svm_hinge_kink(W: np.ndarray, X: np.ndarray, y: np.ndarray, index: tuple[int, ...], h: float,
                   delta: float = 1.0) -> bool:
    """True if moving W[index] by +-h moves some margin s_j - s_{y_i} + delta (j != y_i) across 0 (or onto it).

    There the hinge has a kink inside [W - h, W + h] and a finite-difference
    gradient of the SVM loss is not trustworthy. W (C, D), X (N, D), y (N,).
    """
    X, W = np.asarray(X), np.asarray(W)
    dtype = _float_dtype(X, W)
    X, W = X.astype(dtype, copy=False), W.astype(dtype, copy=False)
    y = _check_labels(y, X.shape[0], W.shape[0])
    return _hinge_kink(hinge_margins(W, X, y, delta), X, y, index, h)

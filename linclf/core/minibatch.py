"""The training loop's minibatch loss: data loss + L2 on raw rows X[idx], shared with a worker process.

``f = MinibatchLoss(X, y, C, dtype, loss, mean=..., scale=..., bias=..., reg=..., reg_bias=...)``;
``loss, dW = f(W, idx, next_idx)`` gives ``data_loss(W, X[idx], y[idx], ...)`` plus ``l2_reg(W, reg,
reg_bias)`` (W (C, P + bias), dW the same shape, a buffer the next call overwrites), equal to float
rounding: the products are summed in the same order whatever the number of processes, so the
result does not depend on whether the worker runs.

Shapes per call: idx (n,) row indices, n <= DEFAULT_BLOCK; a share of r rows: xf (r, P) the rows
converted to ``dtype``, scores S (r, C), G (C, P) = dS.T @ xf, g0 (C,) = dS.sum(0).

Why a process, and how the work is cut (measured on the 2-core development machine, a 256-row
step): the two products cost about 0.17 and 0.15 ms on one core, the gather and conversion
0.16 ms, the loss, the folding and unfolding, the update and the loop about 0.15 ms. Handing
work to a second *thread* costs a ~30 us futex wake-up each way, and the two threads then queue
for the GIL between their small NumPy calls: the two-thread version this replaces was no faster
than one thread in the real loop (860-930 us a step either way). A forked worker has its own
interpreter; both sides spin on counters in shared memory (yielding the CPU each turn, napping
after 2 ms), and a round trip costs about 2 us. Each process takes whole rows of the minibatch
(the loss of a row needs only its own scores), so a step needs one handoff and the converted
rows never cross to the other core; only A, b, the worker's G and g0 do (about 250 KB):

    main                                        worker
    fold W into A (C, P), b (C,)
    post ROWS --------------------------------> its rows [h, n): scores, loss part, G_w, g0_w
    its rows [0, h): scores, loss part, G_m      then gathers + converts its share of the
    gathers + converts its share of the next     next minibatch (given by the post)
    wait; G = G_m + G_w; unfold into dW, + 2 reg W
    (the update, the loop)

Without the worker (one CPU, ``workers=1``, no ``fork``, or not x86-64: the counters rely on
x86's ordered stores) the same calls run in the same order in this process, so the weights do
not depend on it.
"""
from __future__ import annotations

import math
import mmap
import os
import platform
import signal
import time
import weakref
from collections.abc import Callable

import numpy as np

from . import losses
from ..threads import limit_blas_threads
from ..errors import LinclfError

__all__ = ["MinibatchLoss", "WorkerError"]

_ROWS = losses.DEFAULT_BLOCK
_ROW_ALIGN = 32               # row shares are whole groups of the small-GEMM scoring
_MAIN_ROWS = 3 / 8            # main's share of a minibatch's rows (it also does the loss, the unfolding, the update)
_MIN_SHARED_ROWS = 128        # smaller minibatches are not worth a handoff
_SPIN_S = 0.002              # a waiting side spins this long (a step's waits are < 0.3 ms), then naps:
_NAP_S = 0.0002               # so a machine with more processes than CPUs is not starved by spinners
_IDLE_S = 0.05                # after this long, the naps grow to _IDLE_NAP_S (the idle worker: ~0% CPU)
_IDLE_NAP_S = 0.002
_CHECK_S = 0.1                # seconds between liveness checks while waiting

# the control block: commands on one cache line, the worker's replies on another
_SEQ, _OP, _K, _N, _H, _GATHER, _NEXT, _NEXT_H = range(8)
_ROWS_DONE, _PREFETCH_DONE, _FAILED = 16, 17, 18
_OP_ROWS, _OP_STOP = 1, 2


class WorkerError(LinclfError):
    """The minibatch worker process died or failed (exit code 1)."""


def _buffer(shape: tuple[int, ...], dtype: np.dtype | type, shared: bool = False) -> np.ndarray:
    """A zeroed array of ``shape``, page aligned (the gradient product runs ~25% faster on 64-byte
    aligned rows than on NumPy's 16-byte alignment); ``shared``: mapped shared, so a forked worker
    writes into the same memory."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    if shared:
        mem = mmap.mmap(-1, max(count * dtype.itemsize, 1))
        return np.frombuffer(mem, dtype=dtype, count=count).reshape(shape)
    raw = np.zeros(count * dtype.itemsize + 4096, dtype=np.uint8)
    start = -raw.ctypes.data % 4096
    return raw[start:start + count * dtype.itemsize].view(dtype).reshape(shape)


def _populate(X: np.ndarray) -> None:
    """Map the pages of a memory-mapped X at once (MADV_POPULATE_READ, Linux 5.14+); a no-op elsewhere.

    Random rows would otherwise fault the pages in one by one during the first
    epoch: measured 2,000 faults costing 40-120 ms on the 39,000-image split,
    against 10 ms for the one call.
    """
    base = X
    while base is not None:
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            try:
                mm.madvise(getattr(mmap, "MADV_POPULATE_READ", 22))
            except (AttributeError, OSError, ValueError):
                pass
            return
        base = getattr(base, "base", None)


def _gather(X: np.ndarray, idx: np.ndarray, xf: np.ndarray, raw: np.ndarray | None) -> None:
    """xf[:m] = X[idx] in xf's dtype (m = len(idx)); ``raw`` (X's dtype) holds the rows before the cast."""
    m = len(idx)
    if raw is None:
        np.take(X, idx, axis=0, out=xf[:m], mode="clip")
    else:
        np.take(X, idx, axis=0, out=raw[:m], mode="clip")
        np.copyto(xf[:m], raw[:m], casting="unsafe")          # uint8 -> float: the one pass over the rows


def _rows_loss(run: "MinibatchLoss", xf: np.ndarray, y: np.ndarray, count: int, S: np.ndarray, G: np.ndarray,
               g0: np.ndarray) -> float:
    """The loss part (sum over these rows / count) of rows xf (r, P), labels y (r,); G (C, P) and g0 (C,)
    float64 receive their gradient parts dS.T @ xf and dS.sum(0); S (r, C) the scores."""
    losses._scores_into(xf, run.A.T, S)
    if run.use_b:
        S += run.b
    part, dS = run.score_loss(S, y, count)
    losses._grad_into(dS, xf, G)
    np.sum(dS, axis=0, dtype=np.float64, out=g0)
    return part


def _share(n: int) -> int:
    """Rows [0, h) of an n-row minibatch are main's, [h, n) the worker's (h = n: all main's)."""
    if n < _MIN_SHARED_ROWS:
        return n
    return min(n - _ROW_ALIGN, max(_ROW_ALIGN, round(n * _MAIN_ROWS / _ROW_ALIGN) * _ROW_ALIGN))


# the counters are plain stores read by a spinning process: x86-64 keeps stores in order, other
# architectures would need fences that Python cannot issue
CAN_FORK_WORKER = hasattr(os, "fork") and platform.machine().lower() in ("x86_64", "amd64")


def worker_allowed(workers: int | None) -> bool:
    """May a MinibatchLoss fork a worker? Only where it can, and not when told to use one CPU."""
    if not CAN_FORK_WORKER:
        return False
    if workers is not None:
        return workers > 1
    default = losses.default_workers()
    return (default is None or default > 1) and losses.usable_cpus() > 1


def _wait_until(ready: Callable[[], bool], check: Callable[[], None]) -> None:
    """Return once ``ready()``: spin, yielding the CPU each turn, for _SPIN_S; then nap between polls.

    ``check()`` runs every _CHECK_S seconds (it raises or returns to stop waiting for a dead peer).
    """
    if ready():
        return
    start = last = time.monotonic()
    spins = 0
    while not ready():
        spins += 1
        if spins % 64:
            os.sched_yield()
            continue
        now = time.monotonic()
        if now - last > _CHECK_S:
            check()
            last = now
        waited = now - start
        if waited < _SPIN_S:
            os.sched_yield()
        else:
            time.sleep(_NAP_S if waited < _IDLE_S else _IDLE_NAP_S)


class _Worker:
    """The forked process and its control block; ``post`` a command, ``wait`` for a reply counter."""

    def __init__(self, run: "MinibatchLoss") -> None:
        self.ctl = run.ctl
        self.seq = 0
        self.pid = os.fork()
        if self.pid == 0:                                        # the child never returns from here
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
                limit_blas_threads(1)
                _serve(run)
                code = 0
            except BaseException:
                run.ctl[_FAILED] = 1
            finally:
                os._exit(code)

    def post(self, op: int, **fields: int) -> int:
        ctl = self.ctl
        for name, value in fields.items():
            ctl[_FIELD[name]] = value
        ctl[_OP] = op
        self.seq += 1
        ctl[_SEQ] = self.seq                                     # last: the worker reads the fields after it
        return self.seq

    def wait(self, slot: int, seq: int) -> None:
        ctl = self.ctl
        _wait_until(lambda: ctl[slot] >= seq, self.check)

    def check(self) -> None:
        if self.ctl[_FAILED]:
            raise WorkerError("the minibatch worker process failed; rerun in one process "
                              "(linclf --workers 1, or LINCLF_WORKERS=1)")
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done:
            self.pid = 0
            raise WorkerError(f"the minibatch worker process died ({_describe(status)}); rerun in one "
                              "process (linclf --workers 1, or LINCLF_WORKERS=1) or with more free memory")

    def stop(self) -> None:
        """Ask the worker to exit, wait up to 2 s, then kill it; always reap it."""
        if not self.pid:
            return
        pid, self.pid = self.pid, 0
        self.post(_OP_STOP)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.001)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


_FIELD = {"k": _K, "n": _N, "h": _H, "gather": _GATHER, "next": _NEXT, "next_h": _NEXT_H}


class _Orphaned(Exception):
    """The worker's parent exited without stopping it."""


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by signal {sig}" + (" (out of memory?)" if sig == signal.SIGKILL else "")
    return f"exit code {os.WEXITSTATUS(status)}"


def _serve(run: "MinibatchLoss") -> None:
    """The worker's loop: wait for a command, run it, post the reply counter; exit on STOP or an orphaning.

    Its rows of each minibatch live in buffers made here, in its own memory.
    """
    ctl = run.ctl
    parent = os.getppid()
    xw, raw = run._rows_buffers()
    seen = 0

    def orphaned() -> None:
        if os.getppid() != parent:
            raise _Orphaned

    while True:
        try:
            _wait_until(lambda: ctl[_SEQ] != seen, orphaned)
        except _Orphaned:
            return                                               # the parent is gone
        seen = int(ctl[_SEQ])
        op, k, n, h = int(ctl[_OP]), int(ctl[_K]), int(ctl[_N]), int(ctl[_H])
        if op == _OP_STOP:
            return
        if op == _OP_ROWS:
            xs = xw[k][:n - h]
            if ctl[_GATHER]:
                _gather(run.X, run.idx[h:n], xs, raw)
            run.part[0] = _rows_loss(run, xs, run.y[run.idx[h:n]], n, run.S[h:n], run.Gw, run.g0w)
            ctl[_ROWS_DONE] = seen
            m, mh = int(ctl[_NEXT]), int(ctl[_NEXT_H])
            if m:
                _gather(run.X, run.next_idx[mh:m], xw[1 - k], raw)
            ctl[_PREFETCH_DONE] = seen


class MinibatchLoss:
    """loss, dW = f(W, idx, next_idx=None): the training objective on the minibatch X[idx] (see the module doc).

    X (N, P) raw rows (uint8 or float), y (N,) labels in [0, num_classes); mean, scale (P,) the
    folded preprocessing; ``bias`` adds the bias column to W. ``next_idx`` names the next call's
    rows so they are converted ahead. ``workers=1`` keeps everything in this process. Use as a
    context manager or call ``close()``: it stops the worker process (a finalizer does too).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, num_classes: int, dtype: np.dtype | type, loss: str = "svm",
                 *, delta: float = 1.0, mean: np.ndarray | None = None, scale: np.ndarray | None = None,
                 bias: bool = True, reg: float = 0.0, reg_bias: bool = True, workers: int | None = None):
        if np.ndim(X) != 2:
            raise ValueError(f"X must be (N, P), got shape {np.shape(X)}")
        _populate(X)
        X = np.asarray(X)
        N, P = X.shape
        C = int(num_classes)
        self.dtype = dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"dtype must be floating, got {dtype}")
        for name, v in (("mean", mean), ("scale", scale)):
            if v is not None and np.shape(v) != (P,):
                raise ValueError(f"{name} must have shape ({P},) to match X, got {np.shape(v)}")
        self.X, self.y = X, losses._check_labels(y, N, C)
        self.C, self.P = C, P
        self.mean = None if mean is None else np.ascontiguousarray(mean, dtype=dtype)
        self.scale = None if scale is None else np.ascontiguousarray(scale, dtype=dtype)
        self.bias, self.reg, self.reg_bias = bool(bias), float(reg), bool(reg_bias)
        self.use_b = self.bias or mean is not None
        self.score_loss = losses._score_loss(loss, delta)
        self.shape = (C, P + int(bias))
        share = worker_allowed(workers)
        # shared with the worker (mapped before the fork): the folded weights and bias, the scores,
        # the worker's parts of G, g0 and the loss, the row indices, the control block
        self.A = _buffer((C, P), dtype, share)
        self.b = _buffer((C,), dtype, share)
        self.S = _buffer((_ROWS, C), dtype, share)
        self.Gw = _buffer((C, P), dtype, share)
        self.g0w = _buffer((C,), np.float64, share)
        self.part = _buffer((1,), np.float64, share)
        self.idx = _buffer((_ROWS,), np.intp, share)
        self.next_idx = _buffer((_ROWS,), np.intp, share)
        self.ctl = _buffer((32,), np.int64, share)
        # this process's: its rows (double buffered: this step, the next), its part of G, dW
        self.xm, self.raw = self._rows_buffers()
        self.xw: list[np.ndarray] | None = None                 # the worker's rows, when they are computed here
        self.G = _buffer((C, P), dtype)
        self.g0 = np.zeros(C, dtype=np.float64)
        self.Am = np.zeros(C, dtype=dtype)                       # A @ mean
        self.dW = np.empty(self.shape, dtype=dtype)
        self.tmp = np.empty(self.shape, dtype=dtype)
        self._k = 0                                             # the buffers holding this call's rows
        self._pending: tuple[np.ndarray, int] | None = None     # (indices, reply seq) of rows converted ahead
        self._share = share
        self._worker: _Worker | None = None
        self._finalizer: weakref.finalize | None = None

    def _rows_buffers(self) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Two aligned (DEFAULT_BLOCK, P) buffers for converted rows, and one for raw rows (None if X needs no cast)."""
        raw = None if self.X.dtype == self.dtype else np.empty((_ROWS, self.P), dtype=self.X.dtype)
        return [_buffer((_ROWS, self.P), self.dtype) for _ in range(2)], raw

    # -- lifecycle

    def _start(self) -> _Worker | None:
        if self._worker is None and self._share:
            self._share = False                                  # one attempt
            try:
                self._worker = _Worker(self)
            except OSError:
                return None
            self._finalizer = weakref.finalize(self, _Worker.stop, self._worker)
        return self._worker

    def close(self) -> None:
        """Stop the worker process (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "MinibatchLoss":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while it runs (tests), else None."""
        return self._worker.pid if self._worker is not None and self._worker.pid else None

    # -- one step

    def _fold(self, W: np.ndarray) -> None:
        """A = W[:, :P] * scale, b = W[:, P] - A @ mean (``losses.fold``), into the shared buffers."""
        A, b, P = self.A, self.b, self.P
        if self.scale is not None:
            np.multiply(W[:, :P], self.scale, out=A)
        else:
            np.copyto(A, W[:, :P])
        if self.bias:
            np.copyto(b, W[:, P])
        else:
            b.fill(0)
        if self.mean is not None:
            b -= np.dot(A, self.mean, out=self.Am)               # (C,); one BLAS thread in the loop

    def _unfold(self, W: np.ndarray, g0: np.ndarray) -> np.ndarray:
        """dW = the chain rule through the folding (``losses._unfold``) of G, plus l2_reg's gradient."""
        dW = losses._unfold(self.G, g0, self.mean, self.scale, self.bias, out=self.dW)
        if self.reg:
            reg_dW = np.multiply(W, 2.0 * self.reg, out=self.tmp)       # as l2_reg: (2 reg) * W
            if not self.reg_bias:
                reg_dW[:, -1] = 0
            dW += reg_dW
        return dW

    def __call__(self, W: np.ndarray, idx: np.ndarray, next_idx: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Loss (data mean + L2) and dW (C, P + bias), a buffer the next call overwrites, on rows X[idx]."""
        n = len(idx)
        if W.shape != self.shape or W.dtype != self.dtype or not 0 < n <= _ROWS:
            raise ValueError(f"W must be {self.dtype} {self.shape} and 1..{_ROWS} rows given; "
                             f"got W {W.dtype} {W.shape}, {n} rows")
        h = _share(n)
        worker = self._start() if h < n else self._worker
        k, gather = self._k, True
        pending, self._pending = self._pending, None
        if pending is not None:
            p_idx, p_seq = pending
            worker.wait(_PREFETCH_DONE, p_seq)                   # the worker is done with its other buffer
            if len(p_idx) == n and np.array_equal(p_idx, idx):
                k = self._k = 1 - k                              # both shares were converted ahead
                gather = False
        shared = worker is not None and h < n
        xm = self.xm[k]
        self._fold(W)
        self.idx[:n] = idx
        m = mh = 0
        if shared:
            if next_idx is not None and 0 < len(next_idx) <= _ROWS and _share(len(next_idx)) < len(next_idx):
                m, mh = len(next_idx), _share(len(next_idx))
                self.next_idx[:m] = next_idx
            seq = worker.post(_OP_ROWS, k=k, n=n, h=h, gather=int(gather), next=m, next_h=mh)
        if gather:
            _gather(self.X, idx[:h], xm, self.raw)
        y = self.y[idx]
        total = _rows_loss(self, xm[:h], y[:h], n, self.S[:h], self.G, self.g0)
        if m:
            _gather(self.X, self.next_idx[:mh], self.xm[1 - k], self.raw)   # this process's share of the next rows
            self._pending = (self.next_idx[:m].copy(), seq)
        if h < n:
            if shared:
                worker.wait(_ROWS_DONE, seq)
            else:
                if self.xw is None:
                    self.xw = self._rows_buffers()[0]
                xs = self.xw[k][:n - h]
                _gather(self.X, idx[h:], xs, self.raw)
                self.part[0] = _rows_loss(self, xs, y[h:], n, self.S[h:n], self.Gw, self.g0w)
            total += float(self.part[0])
            self.G += self.Gw
            self.g0 += self.g0w
        g0 = self.g0
        dW = self._unfold(W, g0)
        if self.reg:
            total += losses._l2_value(W, self.reg, self.reg_bias)
        return total, dW

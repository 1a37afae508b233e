"""The training loop's minibatch loss: values against data_loss + l2_reg, the worker process and its lifecycle."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from linclf.training import loop as train_mod
from linclf.config import Config, with_values
from linclf.data.cifar10 import Splits
from linclf.core.losses import DEFAULT_BLOCK, data_loss, l2_reg, set_default_workers
from linclf.core.minibatch import CAN_FORK_WORKER, MinibatchLoss, WorkerError
from linclf.core.preprocess import fit
from linclf.training.loop import train

pytestmark = pytest.mark.skipif(not CAN_FORK_WORKER, reason="the worker process needs os.fork on x86-64")

C = 10


def problem(N=600, P=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (N, P), dtype=np.uint8)
    y = rng.integers(0, C, N)
    mean = X.mean(axis=0)
    scale = 1.0 / (X.std(axis=0) + 1.0)
    return rng, X, y, mean, scale


def reference(W, X, y, idx, loss, reg, reg_bias, **kw):
    """data_loss + l2_reg on the gathered rows, in float64."""
    W64 = W.astype(np.float64)
    value, dW = data_loss(W64, X[idx], y[idx], loss, **kw)
    if reg:
        r, rdW = l2_reg(W64, reg, reg_bias)
        value, dW = value + r, dW + rdW
    return value, dW


def alive(pid: int) -> bool:
    """Is pid a running (not zombie) process?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("loss", ["svm", "softmax"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("prep", [dict(), dict(mean=True), dict(mean=True, scale=True), dict(bias=False)])
@pytest.mark.parametrize("reg_bias", [True, False])
def test_equals_data_loss_plus_l2(loss, dtype, prep, reg_bias):
    rng, X, y, mean, scale = problem()
    kw = dict(mean=mean if prep.get("mean") else None, scale=scale if prep.get("scale") else None,
              bias=prep.get("bias", True))
    W = (0.01 * rng.standard_normal((C, X.shape[1] + int(kw["bias"])))).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    with MinibatchLoss(X, y, C, dtype, loss, reg=0.5, reg_bias=reg_bias, workers=2, **kw) as f:
        for n in (1, 37, 128, 200, DEFAULT_BLOCK):
            idx = rng.integers(0, len(y), n)
            got, dW = f(W, idx)
            want, want_dW = reference(W, X, y, idx, loss, 0.5, reg_bias, **kw)
            assert got == pytest.approx(want, rel=tol)
            assert dW.dtype == dtype and dW.shape == W.shape
            assert np.max(np.abs(dW - want_dW)) <= tol * np.max(np.abs(want_dW))


@pytest.mark.parametrize("loss", ["svm", "softmax"])
def test_the_worker_process_changes_no_bit(loss):
    """The same calls with and without the worker, prefetches hit and missed: identical results."""
    rng, X, y, mean, scale = problem(seed=1)
    W0 = (0.01 * rng.standard_normal((C, X.shape[1] + 1))).astype(np.float32)
    batches = [rng.integers(0, len(y), n) for n in (256, 256, 256, 200, 256, 64, 256, 130)]
    nexts = [batches[1], rng.integers(0, len(y), 256), batches[3], batches[4], None, batches[6], batches[7], None]
    results = {}
    for workers in (2, 1):
        out = []
        W = W0.copy()
        with MinibatchLoss(X, y, C, np.float32, loss, mean=mean, scale=scale, reg=0.1, workers=workers) as f:
            for idx, nxt in zip(batches, nexts):
                value, dW = f(W, idx, nxt)
                out.append((value, dW.copy()))
                W = W - 0.01 * dW                               # a step, so each call sees new weights
            assert (f.worker_pid is not None) == (workers == 2)
        results[workers] = out
    for (v2, d2), (v1, d1) in zip(results[2], results[1]):
        assert v2 == v1
        np.testing.assert_array_equal(d2, d1)


def test_close_stops_the_worker_and_a_killed_worker_is_an_error():
    rng, X, y, mean, _ = problem()
    W = np.zeros((C, X.shape[1] + 1), dtype=np.float32)
    idx = rng.integers(0, len(y), 256)
    f = MinibatchLoss(X, y, C, np.float32, "svm", mean=mean, workers=2)
    f(W, idx)
    pid = f.worker_pid
    assert pid is not None and alive(pid)
    os.kill(pid, signal.SIGINT)                                 # Ctrl-C is the parent's business
    f(W, idx)
    assert alive(pid)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerError, match="killed by signal 9"):
        for _ in range(100):                                    # the next handoff notices
            f(W, idx)
    f.close()
    f.close()                                                   # idempotent
    g = MinibatchLoss(X, y, C, np.float32, "svm", mean=mean, workers=2)
    g(W, idx)
    pid = g.worker_pid
    g.close()
    assert not alive(pid) and g.worker_pid is None


def test_an_idle_worker_sleeps_and_an_orphaned_one_exits(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(
        "import os, sys, time, numpy as np\n"
        "from linclf.core.minibatch import MinibatchLoss\n"
        "X = np.zeros((300, 8), np.uint8); y = np.zeros(300, int)\n"
        "f = MinibatchLoss(X, y, 10, np.float32, workers=2)\n"
        "f(np.zeros((10, 9), np.float32), np.arange(256))\n"
        "print(f.worker_pid, flush=True)\n"
        "time.sleep(float(sys.argv[1]))\n"
        "os._exit(0)\n")                                        # no close(): the worker is orphaned
    proc = subprocess.Popen([sys.executable, str(script), "1.5"], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())

    def cpu_seconds() -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    time.sleep(0.3)                                             # past the idle threshold
    before = cpu_seconds()
    time.sleep(0.8)
    assert cpu_seconds() - before < 0.4                         # sleeping, not spinning a CPU
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_bad_arguments():
    _, X, y, mean, _ = problem()
    with pytest.raises(ValueError, match="mean must have shape"):
        MinibatchLoss(X, y, C, np.float32, mean=mean[:-1])
    with pytest.raises(ValueError, match="dtype must be floating"):
        MinibatchLoss(X, y, C, np.int32)
    with pytest.raises(ValueError, match="labels must be in"):
        MinibatchLoss(X, np.full(len(y), C), C, np.float32)
    with MinibatchLoss(X, y, C, np.float32, workers=1) as f:
        W = np.zeros((C, X.shape[1] + 1), dtype=np.float32)
        for bad_W, idx in ((W[:, :-1], np.arange(4)), (W.astype(np.float64), np.arange(4)),
                           (W, np.arange(0)), (W, np.arange(DEFAULT_BLOCK + 1))):
            with pytest.raises(ValueError, match="rows given"):
                f(bad_W, idx)


def splits_of(X, y, classes):
    return Splits(X, y, X[:50], y[:50], X[:0], y[:0], classes)


@pytest.mark.parametrize("sampling", ["replacement", "shuffle"])
def test_training_with_and_without_the_worker_gives_identical_weights_and_leaves_no_process(monkeypatch, sampling):
    rng, X, y, _, _ = problem(N=700, P=48, seed=3)
    splits = splits_of(X, y, tuple(f"c{i}" for i in range(C)))
    cfg = with_values(Config(), {"preprocess.std": True, "model.loss": "softmax", "optimizer.update": "adam",
                                 "optimizer.lr": 1e-3, "optimizer.batch_size": 256, "optimizer.epochs": 3,
                                 "optimizer.sampling": sampling})
    prep = fit(X, mean=True, std=True, bias=True)
    pids = []

    class Recording(MinibatchLoss):
        def __call__(self, *a, **k):
            out = super().__call__(*a, **k)
            if self.worker_pid:
                pids.append(self.worker_pid)
            return out

    monkeypatch.setattr(train_mod, "MinibatchLoss", Recording)
    monkeypatch.setattr("linclf.core.minibatch.worker_allowed", lambda workers: True)
    with_worker = train(cfg, splits, prep).W
    assert pids and not any(alive(p) for p in set(pids))
    set_default_workers(1)
    monkeypatch.undo()
    try:
        without = train(cfg, splits, prep).W
    finally:
        set_default_workers(None)
    np.testing.assert_array_equal(with_worker, without)


def test_linclf_workers_in_the_environment(monkeypatch):
    from linclf.core.minibatch import worker_allowed

    _, X, y, _, _ = problem()
    monkeypatch.setenv("LINCLF_WORKERS", "1")
    assert not worker_allowed(None)
    with MinibatchLoss(X, y, C, np.float32) as f:
        f(np.zeros((C, X.shape[1] + 1), np.float32), np.arange(DEFAULT_BLOCK))
        assert f.worker_pid is None
    monkeypatch.setenv("LINCLF_WORKERS", "two")
    with pytest.raises(ValueError, match="LINCLF_WORKERS must be a positive integer, got 'two'"):
        data_loss(np.zeros((C, X.shape[1] + 1)), X[:600], y[:600])

#!/usr/bin/env python3
"""Speed and memory of linclf against the textbook NumPy code, measured in the same run.

    .venv/bin/python scripts/bench.py [--data PATH] [--data-dir DIR] [--repeat N] [--quick] [--only NAME ...]

Prints one JSON object a line: our median figure, the baseline's median figure
on the same work, their ratio (> 1 means we are better), the target ratio (or
absolute target), whether it is met, and, where results can be compared, how
far the two differ (a speed figure of a wrong answer is worthless). Figures
are medians over repeated runs that alternate between ours and the baseline,
so slow phases of a noisy machine hit both.

The baseline is written here the way the course-assignment solutions write it:
W is (D, C), X is the preprocessed float64 (N, D) array (mean subtracted, bias
column appended), one fully vectorized pass with the usual temporaries; the
training loop draws X[idx] from that array and updates W in float64.

``--data`` is a binary-format cifar-10-binary.tar.gz or a linclf data folder
(one holding cifar-10-batches-bin/, e.g. /tmp/dl/data). The command and memory
benches need a data folder: ``--data-dir``, else ``--data`` when it is one,
else a temporary one built from the archive.

Benches (``--only NAME``, repeatable):

  convert       gathering 256 stored rows of 6,400 values into float32, for
                uint8, uint16, float16 (the engine's conversion by its bits,
                and NumPy's cast) and float32 storage (why features are
                cached as float16)
  chunks        the engine's minibatch step (256 rows of 3,072 uint8, 6,400
                float32 and 19,200 float16 values, softmax) with other chunk
                sizes, in one lane or two, on one worker or two (why the
                engine's chunks and lanes are what they are)
  checksum      SHA-256 against BLAKE2b over 256 MiB in memory (the feature
                cache's checksum, computed over every cached byte on a warm run)
  batch256      one 256-image minibatch, already gathered: ``data_loss`` on the
                uint8 rows and ``svm_loss``/``softmax_loss`` on a float32
                preprocessed batch vs the baseline on a float64 one (target 2x)
  sgd_batch256  the same plus drawing the minibatch, ``X[idx]``, from the uint8
                split vs from the float64 preprocessed copy (target 2x)
  split         the whole training split (39,000 images): ``data_loss`` on uint8
                vs the baseline on a float64 copy (target 4x) and on a float32
                copy (target 1.5x)
  train         the training phase, ``linclf.training.loop.train``, vs the textbook
                loop and (when installed) PyTorch CPU doing the same steps on the
                same minibatches: plain SGD, batch 256, 1,500 steps, svm and
                softmax; configs/softmax.yaml and configs/svm.yaml (Adam, cosine
                schedule); a 50,000 x 6,400 float32 matrix (softmax, Adam, batch
                256, 600 steps). Targets: 4x the textbook's samples/s, 2x
                PyTorch's (same threads: $LINCLF_WORKERS, else all usable CPUs)
  command       ``linclf train --config configs/{softmax,svm}.yaml --quiet`` as a
                subprocess, process start to exit, warm data cache (target
                <= 5 s), and the import time of ``linclf.cli``
  memory        peak resident memory of ``linclf train`` on a full-size
                (60,000-image) data folder, cold cache (first load: parse the
                batches, write the cache) and warm, vs the textbook pipeline
                (float64 copies of train/val/test) in a subprocess (target <= 600 MB)

  kmeans        Coates k-means features (k=1600, patch 6, stride 1, triangle,
                2x2 pooling): ``KMeansFeatures.fit`` on 400,000 patches x 50
                iterations (seconds), then extraction images/s against a float32
                GEMM of the same shape measured in the same run (target: 60% of
                its rate over the whole extraction), the plain whole-batch NumPy
                extractor and PyTorch conv2d doing the same steps (same threads);
                then the shipped configs' encoder (soft threshold, sign split)
                against the same GEMM and against two one-thread GEMMs at once
                (the most one product per thread can reach), and on one
                thread against a one-thread GEMM

Our loss figures include ``l2_reg`` (reg = 2.5e4), as the baseline's do. Benches
are functions in ``BENCHES`` (name -> function(Context) -> records).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from linclf.core.losses import l2_reg, softmax_loss, svm_loss  # noqa: E402
from linclf.core.objective import data_loss  # noqa: E402

DEFAULT_DATA = REPO / "data" / "dev" / "cifar-10-binary.tar.gz"
NUM_TRAIN = 39_000          # the training split: the first 39,000 of the 40,000 training images
NUM_VAL = 1_000             # the validation split: the 1,000 images after it (the config default)
BATCH = 256
REG = 2.5e4                 # the config default, so the L2 term is part of every figure
INIT_SCALE = 1e-4
RECORD = 3073               # 1 label byte + 3072 pixels
ROUNDS = 4                  # alternating runs of ours and the baseline per figure
INNER = 10                  # calls per timed sample for the 256-image batch
SETTLE = 0.15               # seconds of pause before each run (OpenBLAS threads spin ~0.1 s)
WARMUP = 0.1                # seconds of untimed calls that start each run (threads and clocks wake up)


# ----------------------------------------------------------------------------- the textbook baseline

def svm_loss_vectorized(W, X, y, reg):
    """Structured SVM loss, fully vectorized, as in the course assignment: W (D, C), X (N, D)."""
    loss = 0.0
    dW = np.zeros(W.shape)
    num_train = X.shape[0]
    scores = X.dot(W)
    correct_class_scores = scores[np.arange(num_train), y]
    margins = np.maximum(0, scores - correct_class_scores[:, np.newaxis] + 1)
    margins[np.arange(num_train), y] = 0
    loss = np.sum(margins) / num_train
    loss += reg * np.sum(W * W)
    binary = margins
    binary[margins > 0] = 1
    row_sum = np.sum(binary, axis=1)
    binary[np.arange(num_train), y] = -row_sum.T
    dW = X.T.dot(binary)
    dW /= num_train
    dW += 2 * reg * W
    return loss, dW


def softmax_loss_vectorized(W, X, y, reg):
    """Softmax loss, fully vectorized, as in the course assignment: W (D, C), X (N, D)."""
    loss = 0.0
    dW = np.zeros_like(W)
    num_train = X.shape[0]
    scores = X.dot(W)
    scores -= np.max(scores, axis=1, keepdims=True)
    exp_scores = np.exp(scores)
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
    loss = -np.sum(np.log(probs[np.arange(num_train), y])) / num_train
    loss += reg * np.sum(W * W)
    dscores = probs
    dscores[np.arange(num_train), y] -= 1
    dW = X.T.dot(dscores) / num_train
    dW += 2 * reg * W
    return loss, dW


BASELINES = {"svm": svm_loss_vectorized, "softmax": softmax_loss_vectorized}
OURS = {"svm": svm_loss, "softmax": softmax_loss}


# ----------------------------------------------------------------------------- data and timing

@dataclass
class Context:
    """What every bench may use: the raw training and validation splits, the mean, where the data is, settings."""

    X: np.ndarray                 # (N, 3072) uint8, the training split
    y: np.ndarray                 # (N,) int64
    repeat: int | None            # None: each bench's own default
    quick: bool
    X_val: np.ndarray | None = None   # (NUM_VAL, 3072) uint8, the validation split (the rows after X)
    y_val: np.ndarray | None = None
    data: Path | None = None          # the --data archive or folder (None: --synthetic)
    data_dir_arg: Path | None = None  # --data-dir
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __post_init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._data_dir: Path | None = None

    @property
    def tmp(self) -> Path:
        """A scratch folder removed when the bench ends."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="linclf-bench-")
        return Path(self._tmp.name)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def data_dir(self) -> Path:
        """A linclf data folder with a warm cache: --data-dir, else --data if a folder, else built from the archive."""
        if self._data_dir is None:
            import linclf

            if self.data_dir_arg is not None:
                d = self.data_dir_arg
            elif self.data is not None and self.data.is_dir():
                d = self.data
            elif self.data is not None:
                d = self.tmp / "data"
                linclf.load_cifar10(d, archive=self.data)            # extract and build the cache once
            else:
                raise SystemExit("bench: the command and memory benches need real data (--data or --data-dir)")
            linclf.load_cifar10(d)                                    # make sure the cache is there (warm)
            self._data_dir = d
        return self._data_dir

    def source_batches(self) -> tuple[list[bytes], bytes, bytes]:
        """The raw binary training batches, test batch and meta file of --data (archive or folder)."""
        names = [f"data_batch_{i}.bin" for i in range(1, 6)]
        if self.data is not None and self.data.is_dir():
            folder = self.data / "cifar-10-batches-bin"
            read = lambda name: (folder / name).read_bytes()  # noqa: E731
            return [read(n) for n in names], read("test_batch.bin"), read("batches.meta.txt")
        if self.data is None:
            raise SystemExit("bench: the memory bench needs real data (--data)")
        with tarfile.open(self.data, "r:gz") as tar:
            read = lambda name: tar.extractfile(f"cifar-10-batches-bin/{name}").read()  # noqa: E731
            return [read(n) for n in names], read("test_batch.bin"), read("batches.meta.txt")

    @property
    def mean(self) -> np.ndarray:
        """Mean training image (3072,) float32."""
        if not hasattr(self, "_mean"):
            self._mean = self.X.mean(axis=0, dtype=np.float64).astype(np.float32)
        return self._mean

    def reps(self, default: int) -> int:
        """Repeats for a bench whose default is ``default``."""
        if self.repeat is not None:
            return self.repeat
        return max(3, default // 4) if self.quick else default


def load_split(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n training images (uint8 (n, 3072)) and labels of a binary-format CIFAR-10 .tar.gz or data folder.

    A folder is loaded with linclf's own loader (its .npy cache, memory-mapped), then copied into memory.
    """
    if path.is_dir():
        import linclf

        data = linclf.load_cifar10(path)
        return np.array(data.X_train[:n]), np.array(data.y_train[:n])
    chunks = []
    with tarfile.open(path, "r:gz") as tar:
        for i in range(1, 6):
            f = tar.extractfile(f"cifar-10-batches-bin/data_batch_{i}.bin")
            chunks.append(np.frombuffer(f.read(), dtype=np.uint8).reshape(-1, RECORD))
    records = np.concatenate(chunks)[:n]
    return np.ascontiguousarray(records[:, 1:]), records[:, 0].astype(np.int64)


def preprocess(X: np.ndarray, mean: np.ndarray, dtype) -> np.ndarray:
    """The textbook preprocessed copy: (X - mean) with a bias column of ones, (N, 3073) in dtype."""
    out = np.empty((X.shape[0], X.shape[1] + 1), dtype=dtype)
    np.subtract(X, mean.astype(dtype), out=out[:, :-1], casting="unsafe")
    out[:, -1] = 1
    return out


def race(ours: Callable[[], object], base: Callable[[], object], repeat: int,
         inner: int = 1) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``base`` over ``repeat`` samples each.

    A sample is the mean time of ``inner`` back-to-back calls (as a training
    loop calls a loss; > 1 for sub-millisecond work, so one scheduler hiccup
    does not make a sample). Samples are taken in short runs that alternate
    between ours and the baseline, so slow phases of a noisy machine hit both
    alike. A pause before each run lets OpenBLAS's worker threads, which
    busy-wait about 0.1 s after a multithreaded call, go to sleep, so one
    side's spinning threads do not slow the other side down; then WARMUP
    seconds of untimed calls (at least one) start the run, as a training
    loop's calls follow one another: on these VMs a thread that slept for a
    while (an OpenBLAS worker, our loss's helper thread) runs its first ~50
    ms of work markedly slower (measured: a 256-row minibatch on two
    threads 0.70 ms for the first 50 calls after a 0.15 s pause, 0.48 ms
    after 100 calls; on one thread 0.57 ms throughout).
    """
    rounds = min(repeat, ROUNDS)
    t_ours: list[float] = []
    t_base: list[float] = []
    for r in range(rounds):
        samples = repeat // rounds + (r < repeat % rounds)
        for fn, times in ((ours, t_ours), (base, t_base)):
            time.sleep(SETTLE)
            end = time.perf_counter() + WARMUP
            fn()
            while time.perf_counter() < end:
                fn()
            for _ in range(samples):
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                times.append((time.perf_counter() - t0) / inner)
    return statistics.median(t_ours), statistics.median(t_base)


def rel_diff(ours: tuple[float, np.ndarray], base: tuple[float, np.ndarray]) -> float:
    """Largest of the relative differences of the losses and of the gradients (ours (C, D), base (D, C))."""
    dl = abs(ours[0] - base[0]) / abs(base[0])
    dg = np.linalg.norm(ours[1].astype(np.float64) - base[1].T) / np.linalg.norm(base[1])
    return float(max(dl, dg))


def record(bench: str, loss: str, n: int, ours: str, base: str, t: tuple[float, float], target: float,
           repeat: int, diff: float, inner: int = 1) -> dict:
    """One JSON line's content."""
    ratio = t[1] / t[0]
    return {"bench": bench, "loss": loss, "n": n, "ours": ours, "baseline": base,
            "ours_ms": round(t[0] * 1e3, 3), "baseline_ms": round(t[1] * 1e3, 3),
            "ratio": round(ratio, 2), "target": target, "met": ratio >= target,
            "repeat": repeat, "calls_per_sample": inner, "rel_diff": float(f"{diff:.2e}")}


def ours_raw(W: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str, mean: np.ndarray):
    """Our training-loop objective on raw uint8 rows: data_loss + l2_reg."""
    value, dW = data_loss(W, X, y, loss, mean=mean)
    reg_value, reg_dW = l2_reg(W, REG)
    dW += reg_dW
    return value + reg_value, dW


# ----------------------------------------------------------------------------- benches

def bench_batch(ctx: Context) -> Iterator[dict]:
    """A minibatch of 256 images: ours in float32 (from uint8, and on a float32 preprocessed batch) vs float64 baseline."""
    idx = ctx.rng.choice(len(ctx.y), size=BATCH, replace=False)
    Xb, yb = ctx.X[idx], ctx.y[idx]
    X64, X32 = preprocess(Xb, ctx.mean, np.float64), preprocess(Xb, ctx.mean, np.float32)
    W = (INIT_SCALE * ctx.rng.standard_normal((10, 3073))).astype(np.float32)
    W64 = W.T.astype(np.float64)
    reps = ctx.reps(20)
    for loss in ("svm", "softmax"):
        base = BASELINES[loss]
        ref = base(W64, X64, yb, REG)
        t = race(lambda: ours_raw(W, Xb, yb, loss, ctx.mean), lambda: base(W64, X64, yb, REG), reps, INNER)
        yield record("batch256", loss, BATCH, "data_loss+l2_reg float32 on uint8 batch",
                     f"{base.__name__} float64", t, 2.0, reps, rel_diff(ours_raw(W, Xb, yb, loss, ctx.mean), ref), INNER)
        ours = OURS[loss]
        t = race(lambda: ours(W, X32, yb, REG), lambda: base(W64, X64, yb, REG), reps, INNER)
        yield record("batch256", loss, BATCH, f"{ours.__name__} float32 on preprocessed batch",
                     f"{base.__name__} float64", t, 2.0, reps, rel_diff(ours(W, X32, yb, REG), ref), INNER)


def bench_split(ctx: Context) -> Iterator[dict]:
    """The whole training split: data_loss on uint8 vs the baseline on preprocessed float64 and float32 copies."""
    X, y = ctx.X, ctx.y
    W = (INIT_SCALE * ctx.rng.standard_normal((10, 3073))).astype(np.float32)
    reps = ctx.reps(7)
    for dtype, target in ((np.float64, 4.0), (np.float32, 1.5)):
        Xp = preprocess(X, ctx.mean, dtype)
        Wb = W.T.astype(dtype)
        name = np.dtype(dtype).name
        for loss in ("svm", "softmax"):
            base = BASELINES[loss]
            ref = base(Wb.astype(np.float64), Xp, y, REG) if dtype == np.float64 else None
            t = race(lambda: ours_raw(W, X, y, loss, ctx.mean), lambda: base(Wb, Xp, y, REG), reps)
            got = ours_raw(W, X, y, loss, ctx.mean)
            diff = rel_diff(got, ref if ref is not None else base(Wb, Xp, y, REG))
            yield record("split", loss, len(y), "data_loss+l2_reg float32 on uint8 split",
                         f"{base.__name__} {name} on preprocessed copy", t, target, reps, diff)
        Xp = None                   # frees the copy; not `del`: the lambdas above close over it
        gc.collect()


def bench_sgd_batch(ctx: Context) -> Iterator[dict]:
    """A minibatch step's loss work including sampling: X[idx] of the uint8 split vs of the float64 copy."""
    X64 = preprocess(ctx.X, ctx.mean, np.float64)     # what the textbook loop keeps in memory
    W = (INIT_SCALE * ctx.rng.standard_normal((10, 3073))).astype(np.float32)
    W64 = W.T.astype(np.float64)
    reps = ctx.reps(20)
    n = len(ctx.y)
    draws = np.random.default_rng(1)
    for loss in ("svm", "softmax"):
        base = BASELINES[loss]

        def ours_step():
            idx = draws.integers(0, n, BATCH)
            return ours_raw(W, ctx.X[idx], ctx.y[idx], loss, ctx.mean)

        def base_step():
            idx = draws.integers(0, n, BATCH)
            return base(W64, X64[idx], ctx.y[idx], REG)

        t = race(ours_step, base_step, reps, INNER)
        idx = draws.integers(0, n, BATCH)
        diff = rel_diff(ours_raw(W, ctx.X[idx], ctx.y[idx], loss, ctx.mean), base(W64, X64[idx], ctx.y[idx], REG))
        yield record("sgd_batch256", loss, BATCH, "X_u8[idx] + data_loss+l2_reg float32",
                     f"X64[idx] + {base.__name__} float64", t, 2.0, reps, diff, INNER)
    X64 = None                      # frees the copy; not `del`: the step functions close over it
    gc.collect()


# ----------------------------------------------------------------------------- training

TRAIN_STEPS = 1_500
TRAIN_TARGET = 4.0          # samples/s against the textbook loop
TORCH_TARGET = 2.0          # samples/s against PyTorch CPU with as many threads
WIDE_N, WIDE_D, WIDE_STEPS = 50_000, 6_400, 600   # the learned-features case: float32 rows
WIDE_CASES = ((WIDE_N, WIDE_D, np.float32),       # the 6,400-wide float32 matrix
              (20_000, 19_200, np.float16))       # kmeans_large's cached features (k = 2400), fewer rows


def adam_course(w, dw, config):
    """The course's Adam (cs231n optim.py), float64: returns next_w; config holds m, v, t and the rates."""
    config["t"] += 1
    config["m"] = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
    mt = config["m"] / (1 - config["beta1"] ** config["t"])
    config["v"] = config["beta2"] * config["v"] + (1 - config["beta2"]) * (dw ** 2)
    vt = config["v"] / (1 - config["beta2"] ** config["t"])
    return w - config["learning_rate"] * mt / (np.sqrt(vt) + config["epsilon"])


def minibatches(cfg, n: int, batch: int) -> Iterator[np.ndarray]:
    """The row indices linclf.training.loop draws, step after step (same stream, same sampling), for the textbook loop.

    The course draws ``np.random.choice(N, batch)``; drawing the same minibatches
    as ours costs the same and makes the final weights comparable.
    """
    from linclf.training.loop import rng_stream

    rng = rng_stream(cfg.seed, "sample")
    if cfg.optimizer.sampling == "shuffle":
        per_epoch = math.ceil(n / batch)
        step = 0
        while True:
            pos = step % per_epoch
            if pos == 0:
                perm = rng.permutation(n)
            yield np.sort(perm[pos * batch:(pos + 1) * batch])
            step += 1
    while True:
        yield rng.integers(0, n, batch)


def textbook_train(cfg, X64: np.ndarray, y: np.ndarray, W0: np.ndarray, steps: int) -> tuple[np.ndarray, float]:
    """The course's training loop: float64 W (D, C), X64[idx] gathers, the vectorized loss, SGD or Adam steps."""
    from linclf.core.optim import lr_at

    o, m = cfg.optimizer, cfg.model
    loss_fn = BASELINES[m.loss]
    n = len(y)
    batch = min(o.batch_size, n)
    per_epoch = math.ceil(n / batch) if o.sampling == "shuffle" else n / batch
    total_epochs = steps / per_epoch
    draws = minibatches(cfg, n, batch)
    W = W0.copy()
    adam = {"beta1": o.beta1, "beta2": o.beta2, "epsilon": o.eps, "m": np.zeros_like(W), "v": np.zeros_like(W), "t": 0}
    loss = math.nan
    for it in range(steps):
        idx = next(draws)
        X_batch, y_batch = X64[idx], y[idx]
        loss, grad = loss_fn(W, X_batch, y_batch, m.reg)
        lr = lr_at(o.schedule, o.lr, it / per_epoch, total_epochs, step_every=o.step_every, gamma=o.gamma,
                   k=o.k, lr_min=o.lr_min)
        if o.update == "adam":
            adam["learning_rate"] = lr
            W = adam_course(W, grad, adam)
        else:
            W -= lr * grad
    return W, float(loss)


def preprocess_prep(X: np.ndarray, prep, dtype=np.float64) -> np.ndarray:
    """The textbook's preprocessed copy under ``prep``: [(X - mean) * scale, 1] in dtype, built block by block."""
    out = np.empty((X.shape[0], X.shape[1] + int(prep.bias)), dtype=dtype)
    for start in range(0, len(X), 4096):
        out[start:start + 4096] = prep.transform(X[start:start + 4096], dtype)
    return out


def torch_train(cfg, Xt, yt, idx_list, threads: int, steps_per_epoch: float):
    """A competent PyTorch CPU loop on the same minibatches: nn.Linear, cross_entropy / multi_margin_loss, Adam or SGD.

    Xt is the split already standardised into a float32 tensor (not timed).
    The lr follows the same schedule step by step; the L2 term reg*sum(W*W)
    is added to the loss as ours does (on the weight and the bias when
    reg_bias). ``multi_margin_loss`` is Weston-Watkins' hinge divided by C, so
    its gradient is scaled back by C to match ours.
    """
    import torch
    import torch.nn.functional as F
    from linclf.core.optim import lr_at

    torch.set_num_threads(threads)
    o, m = cfg.optimizer, cfg.model
    torch.manual_seed(cfg.seed)
    lin = torch.nn.Linear(Xt.shape[1], 10)
    with torch.no_grad():
        lin.weight.normal_(0, m.init_scale)
        lin.bias.normal_(0, m.init_scale)
    opt = (torch.optim.Adam(lin.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
           if o.update == "adam" else torch.optim.SGD(lin.parameters(), lr=o.lr))
    total_epochs = len(idx_list) / steps_per_epoch
    loss = None
    for step, idx in enumerate(idx_list):
        for group in opt.param_groups:
            group["lr"] = lr_at(o.schedule, o.lr, step / steps_per_epoch, total_epochs, step_every=o.step_every,
                                gamma=o.gamma, k=o.k, lr_min=o.lr_min)
        xb, yb = Xt[idx], yt[idx]
        s = lin(xb)
        if m.loss == "softmax":
            loss = F.cross_entropy(s, yb)
        else:
            loss = F.multi_margin_loss(s, yb, margin=m.delta) * s.shape[1]
        if m.reg:
            loss = loss + m.reg * ((lin.weight ** 2).sum() + ((lin.bias ** 2).sum() if m.reg_bias else 0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def bench_train(ctx: Context) -> Iterator[dict]:
    """The training phase: linclf.training.loop.train vs the textbook loop and PyTorch CPU on the same minibatches."""
    from linclf.config import Config, load_config, with_values
    from linclf.core import preprocess
    from linclf.data.splits import Splits
    from linclf.threads import resolve_workers
    from linclf.training.loop import init_state, plan, train

    try:
        import torch
    except ImportError:
        torch = None
    workers = resolve_workers()
    classes = tuple(f"class{i}" for i in range(10))
    reps = ctx.repeat or (1 if ctx.quick else 3)
    steps = 300 if ctx.quick else TRAIN_STEPS
    cases = [(f"sgd {loss}", with_values(Config(), {
        "model.loss": loss, "optimizer.batch_size": BATCH, "optimizer.iterations": steps,
        "train.keep_best": False}), "pixels") for loss in ("svm", "softmax")]
    for name in ("softmax", "svm"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        if ctx.quick:
            cfg = with_values(cfg, {"optimizer.epochs": None, "optimizer.iterations": steps})
        cases.append((f"configs/{name}.yaml", cfg, "pixels"))
    wide_steps = 150 if ctx.quick else WIDE_STEPS
    for n, d, dtype in WIDE_CASES:
        cases.append((f"{np.dtype(dtype).name} {n}x{d} softmax adam", with_values(Config(), {
            "model.loss": "softmax", "model.reg": 0.01, "preprocess.std": True, "optimizer.update": "adam",
            "optimizer.lr": 1e-3, "optimizer.batch_size": BATCH, "optimizer.iterations": wide_steps,
            "train.keep_best": False}), (n, d, dtype)))
    for label, cfg, kind in cases:
        if kind != "pixels":
            n, d, dtype = kind
            rng = np.random.default_rng(1)
            X = rng.standard_normal((n, d), dtype=np.float32)
            X *= rng.uniform(0.5, 2.0, d).astype(np.float32)                 # features of unequal scales
            X = X.astype(dtype, copy=False)
            y = rng.integers(0, 10, n)
            X_val, y_val = X[:1000], y[:1000]
        else:
            X, y, X_val, y_val = ctx.X, ctx.y, ctx.X_val, ctx.y_val
        splits = Splits(X, y, X_val, y_val, X_val[:0], y_val[:0], classes)
        p = cfg.preprocess
        prep = preprocess.fit(X, mean=p.mean, std=p.std, bias=p.bias)
        X64 = preprocess_prep(X, prep)                             # what the textbook loop keeps in memory
        p_len = plan(cfg, len(y))
        n_steps, batch = p_len.total_steps, p_len.batch
        draws = minibatches(cfg, len(y), batch)
        idx_list = [next(draws) for _ in range(n_steps)]
        W0 = init_state(cfg, (10, X64.shape[1])).W.T.astype(np.float64)     # ours' initial W, (D, C)
        Xt = yt = None
        if torch is not None:
            Xt = torch.from_numpy(X64[:, :-1].astype(np.float32))          # standardised once, not timed
            yt = torch.from_numpy(y)
            idx_t = [torch.from_numpy(i) for i in idx_list]
        times: dict[str, list[float]] = {"ours": [], "textbook": [], "torch": []}
        out: dict = {}
        for _ in range(reps):
            time.sleep(SETTLE)
            t0 = time.perf_counter()
            out["ours"] = train(cfg, splits, prep, workers=workers)
            times["ours"].append(time.perf_counter() - t0)
            time.sleep(SETTLE)
            t0 = time.perf_counter()
            out["textbook"] = textbook_train(cfg, X64, y, W0, n_steps)
            times["textbook"].append(time.perf_counter() - t0)
            if torch is not None:
                time.sleep(SETTLE)
                t0 = time.perf_counter()
                out["torch"] = torch_train(cfg, Xt, yt, idx_t, workers, p_len.steps_per_epoch)
                times["torch"].append(time.perf_counter() - t0)
        samples = n_steps * batch
        sps = {k: samples / statistics.median(v) for k, v in times.items() if v}
        W_base = out["textbook"][0]
        diff = float(np.linalg.norm(out["ours"].state.W.astype(np.float64) - W_base.T) / np.linalg.norm(W_base))
        rec = {"bench": "train", "case": label, "loss": cfg.model.loss, "update": cfg.optimizer.update,
               "steps": n_steps, "batch": batch, "n": len(y), "d": X.shape[1], "workers": workers,
               "ours": f"linclf.training.loop.train ({X.dtype} rows, float32, per-epoch evaluation included)",
               "textbook": "float64 X64[idx], vectorized loss, W -= lr*grad / course Adam",
               "ours_samples_per_s": round(sps["ours"]),
               "textbook_samples_per_s": round(sps["textbook"]),
               "ratio_textbook": round(sps["ours"] / sps["textbook"], 2), "target_textbook": TRAIN_TARGET,
               "final_loss_ours": round(out["ours"].final_loss, 6), "final_loss_textbook": round(out["textbook"][1], 6),
               "rel_diff_W_textbook": float(f"{diff:.2e}"), "repeat": reps}
        if "torch" in sps:
            ratio = sps["ours"] / sps["torch"]
            rec.update({"torch": f"torch {torch.__version__} CPU, {workers} threads: nn.Linear, "
                                 f"{'cross_entropy' if cfg.model.loss == 'softmax' else 'multi_margin_loss'}, "
                                 f"optim.{'Adam' if cfg.optimizer.update == 'adam' else 'SGD'}",
                        "torch_samples_per_s": round(sps["torch"]), "ratio_torch": round(ratio, 2),
                        "target_torch": TORCH_TARGET, "met_torch": ratio >= TORCH_TARGET,
                        "final_loss_torch": round(out["torch"], 6)})
        rec["met"] = sps["ours"] / sps["textbook"] >= TRAIN_TARGET and rec.get("met_torch", True)
        yield rec
        del X64, Xt
        gc.collect()


# ----------------------------------------------------------------------------- the whole command

COMMAND_TARGET_S = 2.5        # configs/softmax.yaml, process start to exit, warm cache


def linclf_exe() -> str:
    """The ``linclf`` console script of the Python running the bench (the venv's), else the one on PATH."""
    exe = Path(sys.executable).with_name("linclf")
    if exe.exists():
        return str(exe)
    found = shutil.which("linclf")
    if found is None:
        raise SystemExit("bench: no `linclf` command next to this Python or on PATH; pip install -e .")
    return found


# Runs a command and prints its wall time and peak RSS. It is started fresh (a small process) so that
# the measured command is forked from it: on Linux a child's ru_maxrss starts from the RSS of the
# process it was forked from and survives exec, so forking from the bench (which holds the float64
# copies of the training bench) would report the bench's size.
MEASURE = r"""
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"wall": time.perf_counter() - t0, "code": os.waitstatus_to_exitcode(status),
                  "maxrss_kb": usage.ru_maxrss, "stderr": err.decode(errors="replace")[-2000:]}))
"""


def run_measured(cmd: list[str], **kwargs) -> tuple[float, int, int]:
    """Run cmd; (wall seconds, exit status, peak resident memory in bytes of that process), via a small launcher."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True, **kwargs)
    r = json.loads(out.stdout)
    if r["code"] != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({r['code']}): {r['stderr']}")
    return r["wall"], r["code"], r["maxrss_kb"] * 1024           # Linux reports kilobytes


def import_time_us(module: str) -> int:
    """Cumulative import time of ``module`` in microseconds, from ``python -X importtime``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                         text=True, check=True).stderr
    for line in out.splitlines():
        m = re.match(r"import time:\s*(\d+) \|\s*(\d+) \|\s*(\S+)\s*$", line)
        if m and m.group(3) == module:
            return int(m.group(2))
    raise SystemExit(f"bench: no import time for {module} in -X importtime output")


def bench_command(ctx: Context) -> Iterator[dict]:
    """``linclf train --config configs/X.yaml`` start to exit with a warm cache; the CLI's import time."""
    data_dir = ctx.data_dir()
    exe = linclf_exe()
    reps = ctx.reps(5)
    for name in ("softmax", "svm"):
        walls, phases = [], []
        for r in range(reps):
            out = ctx.tmp / f"command-{name}-{r}"
            wall, _, _ = run_measured([exe, "train", "--config", str(REPO / "configs" / f"{name}.yaml"),
                                       "--data-dir", str(data_dir), "--out", str(out), "--quiet"], cwd=REPO)
            walls.append(wall)
            phases.append(json.loads((out / "metrics.json").read_text())["seconds"])
            shutil.rmtree(out, ignore_errors=True)
        med = statistics.median(walls)
        phase_med = {k: round(statistics.median(ph[k] for ph in phases), 3) for k in phases[0]}
        target = {"target_s": COMMAND_TARGET_S, "met": med <= COMMAND_TARGET_S} if name == "softmax" else {}
        yield {"bench": "command", "case": f"linclf train --config configs/{name}.yaml --quiet",
               "data_dir": str(data_dir), "ours_s": round(med, 3), "min_s": round(min(walls), 3),
               "max_s": round(max(walls), 3), **target, "repeat": reps, "phases_s": phase_med,
               "outside_phases_s": round(med - sum(phase_med.values()), 3)}
    starts, imports = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import linclf.cli"], check=True)
        starts.append(time.perf_counter() - t0)
        imports.append(import_time_us("linclf.cli"))
    t_empty = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        t_empty.append(time.perf_counter() - t0)
    yield {"bench": "command", "case": "import linclf.cli", "import_ms": round(statistics.median(imports) / 1e3, 1),
           "python_plus_import_ms": round(statistics.median(starts) * 1e3, 1),
           "python_alone_ms": round(statistics.median(t_empty) * 1e3, 1), "repeat": reps}


# ----------------------------------------------------------------------------- memory

MEMORY_TARGET_MB = 600
FULL_TRAIN = 50_000

TEXTBOOK_PIPELINE = r"""
# The course notebook's data pipeline (load_CIFAR10 -> float64, subsample, reshape, mean image, bias trick)
# on the binary batches, then a few SGD steps.
import sys
import numpy as np

folder = sys.argv[1]

def load_batch(path):
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)
    X = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype("float")
    return X, raw[:, 0].astype(np.int64)

xs, ys = [], []
for b in range(1, 6):
    X, Y = load_batch(f"{folder}/data_batch_{b}.bin")
    xs.append(X)
    ys.append(Y)
X_train, y_train = np.concatenate(xs), np.concatenate(ys)
del X, Y, xs
X_test, y_test = load_batch(f"{folder}/test_batch.bin")
num_training, num_validation, num_test, num_dev = len(X_train) - 1000, 1000, 1000, 500
mask = range(num_training, num_training + num_validation)
X_val, y_val = X_train[mask], y_train[mask]
mask = range(num_training)
X_train, y_train = X_train[mask], y_train[mask]
mask = np.random.choice(num_training, num_dev, replace=False)
X_dev, y_dev = X_train[mask], y_train[mask]
mask = range(num_test)
X_test, y_test = X_test[mask], y_test[mask]
X_train = np.reshape(X_train, (X_train.shape[0], -1))
X_val = np.reshape(X_val, (X_val.shape[0], -1))
X_test = np.reshape(X_test, (X_test.shape[0], -1))
X_dev = np.reshape(X_dev, (X_dev.shape[0], -1))
mean_image = np.mean(X_train, axis=0)
X_train -= mean_image
X_val -= mean_image
X_test -= mean_image
X_dev -= mean_image
X_train = np.hstack([X_train, np.ones((X_train.shape[0], 1))])
X_val = np.hstack([X_val, np.ones((X_val.shape[0], 1))])
X_test = np.hstack([X_test, np.ones((X_test.shape[0], 1))])
X_dev = np.hstack([X_dev, np.ones((X_dev.shape[0], 1))])
W = 0.0001 * np.random.randn(3073, 10)
for it in range(20):
    idx = np.random.choice(num_training, 256)
    scores = X_train[idx].dot(W)
    W -= 1e-7 * X_train[idx].T.dot(scores)
"""


def build_full_folder(ctx: Context, root: Path) -> tuple[Path, str]:
    """A binary-format data folder of official size: 5 training batches of 10,000 images and a test batch of 10,000.

    Made from --data; a development archive (40,000 training images) has its
    training batches topped up with its test images, so 60,000 images in all
    (50,000 + 10,000) as in the official archive.
    """
    train, test, meta = ctx.source_batches()
    records = b"".join(train)
    note = "official layout"
    if len(records) < FULL_TRAIN * RECORD:
        note = (f"{len(records) // RECORD:,} training images topped up with the {len(test) // RECORD:,} "
                "test images to 50,000")
        while len(records) < FULL_TRAIN * RECORD:
            records += test[:FULL_TRAIN * RECORD - len(records)]
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    per = FULL_TRAIN // 5 * RECORD
    for i in range(5):
        (folder / f"data_batch_{i + 1}.bin").write_bytes(records[i * per:(i + 1) * per])
    (folder / "test_batch.bin").write_bytes(test)
    (folder / "batches.meta.txt").write_bytes(meta)
    return root, note


def bench_memory(ctx: Context) -> Iterator[dict]:
    """Peak RSS of ``linclf train`` on a full-size data folder, cold and warm cache, vs the textbook pipeline."""
    root, note = build_full_folder(ctx, ctx.tmp / "full")
    images = sum(f.stat().st_size for f in (root / "cifar-10-batches-bin").glob("*.bin")) // RECORD
    exe = linclf_exe()
    reps = ctx.repeat or (1 if ctx.quick else 2)
    config = REPO / "configs" / "softmax.yaml"
    base_peaks = []
    for _ in range(reps):
        base_peaks.append(run_measured([sys.executable, "-c", TEXTBOOK_PIPELINE, str(root / "cifar-10-batches-bin")])[2])
    base = max(base_peaks) / 2**20
    for case in ("cold", "warm"):
        peaks, walls = [], []
        for r in range(reps):
            if case == "cold":
                shutil.rmtree(root / "cifar-10-binary-cache", ignore_errors=True)
            out = ctx.tmp / f"memory-{case}-{r}"
            wall, _, peak = run_measured([exe, "train", "--config", str(config), "--data-dir", str(root),
                                          "--out", str(out), "--quiet"], cwd=REPO)
            peaks.append(peak)
            walls.append(wall)
            shutil.rmtree(out, ignore_errors=True)
        ours = max(peaks) / 2**20
        yield {"bench": "memory", "case": f"linclf train --config configs/softmax.yaml, {case} cache",
               "images": images, "data": note,
               "ours": "uint8 rows; cold: parse batches + write the .npy cache, then memory-map it",
               "baseline": "textbook pipeline: float64 load, train/val/test/dev copies, mean, bias column",
               "ours_peak_rss_mb": round(ours, 1), "baseline_peak_rss_mb": round(base, 1),
               "ratio": round(base / ours, 2), "target_mb": MEMORY_TARGET_MB, "met": ours <= MEMORY_TARGET_MB,
               "wall_s": round(statistics.median(walls), 2), "repeat": reps}


# ----------------------------------------------------------------------------- k-means features

KM_K = 1600
KM_TARGET = 0.6             # fraction of the same-run GEMM rate over the whole extraction


def kmeans_plain(f, X: np.ndarray, batch: int = 50) -> np.ndarray:
    """The plain NumPy extractor: every patch of a batch at once, whole-batch temporaries (triangle, sum pooling)."""
    from linclf.features.patches import region_bounds

    C, M, P = f.centroids_, f.whiten_mean_, f.whiten_
    m, k, pp = f.map_size, f.k, f.patch
    rb = region_bounds(m, f.pool)
    cc = (C ** 2).sum(axis=1)
    out = []
    for s in range(0, len(X), batch):
        Xb = X[s:s + batch].reshape(-1, 3, 32, 32).astype(np.float32)
        patches = np.lib.stride_tricks.sliding_window_view(Xb, (pp, pp), axis=(2, 3))[:, :, ::f.stride, ::f.stride]
        patches = patches.transpose(0, 2, 3, 1, 4, 5).reshape(-1, 3 * pp * pp)
        patches = (patches - patches.mean(axis=1, keepdims=True)) / np.sqrt(
            patches.var(axis=1, ddof=1, keepdims=True) + f.norm_eps)
        patches = (patches - M) @ P
        xx = (patches ** 2).sum(axis=1, keepdims=True)
        z = np.sqrt(np.maximum(xx + cc - 2 * (patches @ C.T), 0))
        codes = np.maximum(z.mean(axis=1, keepdims=True) - z, 0).reshape(-1, m, m, k)
        out.append(np.concatenate([codes[:, rb[i]:rb[i + 1], rb[j]:rb[j + 1]].sum(axis=(1, 2))
                                   for i in range(f.pool) for j in range(f.pool)], axis=1))
    return np.concatenate(out)


def kmeans_torch(f, X: np.ndarray, batch: int = 50) -> np.ndarray:
    """The same triangle features with PyTorch conv2d: normalisation and whitening as convolutions, then 1x1 distances."""
    import torch
    import torch.nn.functional as F
    from linclf.features.patches import region_bounds

    pp, k, m = f.patch, f.k, f.map_size
    rb = region_bounds(m, f.pool)
    d = 3 * pp * pp
    W = torch.from_numpy(np.ascontiguousarray(f.whiten_))                       # x = (p - M) @ W
    C = torch.from_numpy(np.ascontiguousarray(f.centroids_))
    Wk = W.T.reshape(d, 3, pp, pp).contiguous()                                  # output j: sum_i p_i W_ij
    colsum = W.sum(dim=0)[None, :, None, None]
    mW = (torch.from_numpy(f.whiten_mean_) @ W)[None, :, None, None]
    ones = torch.ones(1, 3, pp, pp)
    Ck = C.reshape(k, d, 1, 1)
    cc = (C ** 2).sum(dim=1)[None, :, None, None]
    out = []
    with torch.no_grad():
        for s in range(0, len(X), batch):
            img = torch.from_numpy(X[s:s + batch].reshape(-1, 3, 32, 32).astype(np.float32))
            mean = F.conv2d(img, ones, stride=f.stride) / d
            var = (F.conv2d(img * img, ones, stride=f.stride) - d * mean * mean) / (d - 1)
            sd = torch.sqrt(var + f.norm_eps)
            x = (F.conv2d(img, Wk, stride=f.stride) - colsum * mean) / sd - mW         # (b, d, m, m)
            d2 = (x * x).sum(dim=1, keepdim=True) + cc - 2 * F.conv2d(x, Ck)           # (b, k, m, m)
            z = torch.sqrt(torch.clamp(d2, min=0))
            codes = torch.relu(z.mean(dim=1, keepdim=True) - z)
            out.append(torch.cat([codes[:, :, rb[i]:rb[i + 1], rb[j]:rb[j + 1]].sum(dim=(2, 3))
                                  for i in range(f.pool) for j in range(f.pool)], dim=1).numpy())
    return np.concatenate(out)


def gemm_rate(threads: int, rows: int = 8192, k: int = KM_K, d: int = 108, reps: int = 5) -> tuple[float, float]:
    """GFLOP/s of a float32 (rows, d) @ (d, k) product on ``threads`` BLAS threads: (wall, per CPU-second of the process)."""
    from linclf.threads import blas_threads

    rng = np.random.default_rng(0)
    A = rng.standard_normal((rows, d), dtype=np.float32)
    B = rng.standard_normal((d, k), dtype=np.float32)
    out = np.empty((rows, k), dtype=np.float32)
    flops = 2 * rows * d * k
    walls, cpus = [], []
    with blas_threads(threads):
        np.matmul(A, B, out=out)
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            np.matmul(A, B, out=out)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return flops / statistics.median(walls) / 1e9, flops / statistics.median(cpus) / 1e9


def gemm_pair_rate(rows: int = 8192, k: int = KM_K, d: int = 108, reps: int = 5) -> float:
    """GFLOP/s of two such products at once, each on a thread of its own with one BLAS thread: the most the
    extraction's threads (each block's product on one BLAS thread) can get out of the cores."""
    from concurrent.futures import ThreadPoolExecutor

    from linclf.threads import blas_threads

    rng = np.random.default_rng(0)
    A = [rng.standard_normal((rows, d), dtype=np.float32) for _ in range(2)]
    B = rng.standard_normal((d, k), dtype=np.float32)
    out = [np.empty((rows, k), dtype=np.float32) for _ in range(2)]

    def products(i: int) -> None:
        for _ in range(reps):
            np.matmul(A[i], B, out=out[i])

    with blas_threads(1), ThreadPoolExecutor(2) as pool:
        list(pool.map(products, [0, 1]))                                         # warm up
        t0 = time.perf_counter()
        list(pool.map(products, [0, 1]))
        return 2 * reps * 2 * rows * d * k / (time.perf_counter() - t0) / 1e9


def bench_kmeans(ctx: Context) -> Iterator[dict]:
    """Coates k-means features: fit seconds, then extraction against the same-run GEMM, the plain NumPy code and PyTorch."""
    from linclf.features.kmeans import KMeansFeatures
    from linclf.threads import blas_threads

    threads = len(os.sched_getaffinity(0))
    patches, iterations = (100_000, 10) if ctx.quick else (400_000, 50)
    f = KMeansFeatures(k=KM_K, patches=patches, iterations=iterations, seed=0, threads=threads)
    g_wall, _ = gemm_rate(threads)
    t0, c0 = time.perf_counter(), time.process_time()
    f.fit(ctx.X)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    km_flops = 2 * patches * (f.patch_dim + 1) * KM_K * iterations
    g_wall2, _ = gemm_rate(threads)
    yield {"bench": "kmeans", "what": "fit", "k": KM_K, "patches": patches, "iterations": iterations,
           "fit_s": round(fit_s, 2), "fit_cpu_s": round(fit_cpu, 2),
           "kmeans_gflops": round(km_flops / fit_s / 1e9, 1),
           "gemm_gflops": round(statistics.median([g_wall, g_wall2]), 1),
           "frac_gemm": round(km_flops / fit_s / 1e9 / statistics.median([g_wall, g_wall2]), 2),
           "inertia": round(f.inertia_, 3), "threads": threads, "loadavg_1min": round(os.getloadavg()[0], 2)}

    n = 200 if ctx.quick else 400
    X = np.ascontiguousarray(ctx.X[-n:])
    flops = 2 * n * f.map_size ** 2 * f.patch_dim * KM_K
    rounds = ctx.repeat or (2 if ctx.quick else 3)
    have_torch = True
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        have_torch = False
    f.transform(X[:10])                                                          # warm up threads and buffers
    ours = f.transform(X).astype(np.float64)                                     # the reference result
    blas = KMeansFeatures.from_arrays(f.to_arrays(), threads=threads, parallel="blas")   # the other way to use the cores
    # the shipped configs' encoder, the soft threshold and its sign split: the same product (no peers for it:
    # the plain and PyTorch extractors are the published triangle pipeline)
    soft = KMeansFeatures.from_arrays({**f.to_arrays(), "encoder": np.array("soft"), "split": np.array(True)},
                                      threads=threads)
    soft.transform(X[:10])
    t = {"ours": [], "ours_cpu": [], "gemm": [], "gemm_cpu": [], "plain": [], "torch": [], "blas": [], "soft": [],
         "pair": []}
    plain = torch_out = None
    for _ in range(rounds):
        time.sleep(SETTLE)
        g_w, g_cpu = gemm_rate(threads)
        t["gemm"].append(g_w)
        t["gemm_cpu"].append(g_cpu)
        if threads >= 2:
            time.sleep(SETTLE)
            t["pair"].append(gemm_pair_rate())
        time.sleep(SETTLE)
        t0, c0 = time.perf_counter(), time.process_time()
        f.transform(X)
        t["ours"].append(time.perf_counter() - t0)
        t["ours_cpu"].append(time.process_time() - c0)
        time.sleep(SETTLE)
        t0 = time.perf_counter()
        blas.transform(X)
        t["blas"].append(time.perf_counter() - t0)
        time.sleep(SETTLE)
        t0 = time.perf_counter()
        soft.transform(X)
        t["soft"].append(time.perf_counter() - t0)
        time.sleep(SETTLE)
        with blas_threads(threads):
            t0 = time.perf_counter()
            plain = kmeans_plain(f, X)
            t["plain"].append(time.perf_counter() - t0)
        if have_torch:
            time.sleep(SETTLE)
            t0 = time.perf_counter()
            torch_out = kmeans_torch(f, X)
            t["torch"].append(time.perf_counter() - t0)

    def rel(a):
        return float(f"{np.linalg.norm(a.astype(np.float64) - ours) / np.linalg.norm(ours):.2e}")

    ours_s, gemm = statistics.median(t["ours"]), statistics.median(t["gemm"])
    ours_gflops = flops / ours_s / 1e9
    cpu_gflops = flops / statistics.median(t["ours_cpu"]) / 1e9
    rec = {"bench": "kmeans", "what": "extract", "n": n, "k": KM_K, "threads": threads,
           "ours": f"KMeansFeatures.transform ({f.parallel}, block_patches={f.block_patches})",
           "ours_img_s": round(n / ours_s, 1), "ours_gflops": round(ours_gflops, 1),
           "gemm_gflops": round(gemm, 1), "frac_gemm": round(ours_gflops / gemm, 2),
           "frac_gemm_cpu_time": round(cpu_gflops / statistics.median(t["gemm_cpu"]), 2),
           "target": KM_TARGET, "met": ours_gflops / gemm >= KM_TARGET,
           "blas_threads_img_s": round(n / statistics.median(t["blas"]), 1),
           "plain_img_s": round(n / statistics.median(t["plain"]), 1),
           "ratio_plain": round(statistics.median(t["plain"]) / ours_s, 2), "rel_diff_plain": rel(plain)}
    if have_torch:
        rec.update({"torch_img_s": round(n / statistics.median(t["torch"]), 1),
                    "ratio_torch": round(statistics.median(t["torch"]) / ours_s, 2), "rel_diff_torch": rel(torch_out)})
    rec.update({"rounds": rounds, "loadavg_1min": round(os.getloadavg()[0], 2)})
    yield rec

    soft_gflops = flops / statistics.median(t["soft"]) / 1e9
    rec = {"bench": "kmeans", "what": "extract soft split", "n": n, "k": KM_K, "threads": threads,
           "ours_img_s": round(n / statistics.median(t["soft"]), 1), "ours_gflops": round(soft_gflops, 1),
           "gemm_gflops": round(gemm, 1), "frac_gemm": round(soft_gflops / gemm, 2), "target": KM_TARGET,
           "met": soft_gflops / gemm >= KM_TARGET}
    if t["pair"]:
        # the ceiling of one product per thread: two one-thread GEMMs at once, against BLAS's own threads
        pair = statistics.median(t["pair"])
        rec.update({"pair_gemm_gflops": round(pair, 1), "frac_pair_gemm": round(soft_gflops / pair, 2),
                    "pair_of_gemm": round(pair / gemm, 2)})
    rec.update({"rounds": rounds, "loadavg_1min": round(os.getloadavg()[0], 2)})
    yield rec

    # the same on one thread against a one-thread GEMM: what the passes around the product cost a thread,
    # apart from what two threads lose to each other (the GIL, shared caches)
    soft1 = KMeansFeatures.from_arrays(soft.to_arrays(), threads=1)
    soft1.transform(X[:10])
    one, gemm1 = [], []
    for _ in range(rounds):
        time.sleep(SETTLE)
        gemm1.append(gemm_rate(1)[0])
        time.sleep(SETTLE)
        t0 = time.perf_counter()
        soft1.transform(X)
        one.append(time.perf_counter() - t0)
    one_gflops, g1 = flops / statistics.median(one) / 1e9, statistics.median(gemm1)
    yield {"bench": "kmeans", "what": "extract soft split, one thread", "n": n, "k": KM_K, "threads": 1,
           "ours_img_s": round(n / statistics.median(one), 1), "ours_gflops": round(one_gflops, 1),
           "gemm_gflops": round(g1, 1), "frac_gemm": round(one_gflops / g1, 2),
           "threads_speedup": round(statistics.median(one) / statistics.median(t["soft"]), 2),
           "rounds": rounds, "loadavg_1min": round(os.getloadavg()[0], 2)}


def bench_convert(ctx: Context) -> Iterator[dict]:
    """Gathering a 256-row minibatch of 6,400 stored values into float32: why the feature cache is float16.

    Each stored dtype: np.take into a buffer of that dtype, then the engine's
    conversion into the float32 buffer (``rows.convert_rows``: float16 by its
    bits) or NumPy's cast (np.copyto), float32 rows gathered straight into it;
    the figure beside each is uint8's.
    """
    from linclf.core.rows import convert_rows

    rng = np.random.default_rng(0)
    base = rng.standard_normal((20_000, WIDE_D), dtype=np.float32)
    idx = rng.integers(0, len(base), BATCH)
    out = np.empty((BATCH, WIDE_D), dtype=np.float32)
    times = {}
    ways = [(np.uint8, "engine"), (np.uint16, "engine"), (np.float16, "engine"), (np.float16, "numpy cast"),
            (np.float32, "engine")]
    for dtype, how in ways:
        X = base.astype(dtype) if np.dtype(dtype).kind == "f" else rng.integers(0, 200, base.shape).astype(dtype)
        raw = np.empty((BATCH, WIDE_D), dtype=dtype)

        def gather(X=X, raw=raw, how=how) -> None:
            if X.dtype == out.dtype:
                np.take(X, idx, axis=0, out=out, mode="clip")
                return
            np.take(X, idx, axis=0, out=raw, mode="clip")
            if how == "engine":
                convert_rows(raw, out)
            else:
                np.copyto(out, raw, casting="unsafe")

        samples = []
        for _ in range(ctx.reps(20)):
            t0 = time.perf_counter()
            gather()
            samples.append(time.perf_counter() - t0)
        times[(np.dtype(dtype).name, how)] = statistics.median(samples)
    for (name, how), s in times.items():
        yield {"bench": "convert", "stored": name, "conversion": how, "rows": BATCH, "values": WIDE_D,
               "ms": round(s * 1e3, 3), "vs_uint8": round(s / times[("uint8", "engine")], 2)}


def bench_chunks(ctx: Context) -> Iterator[dict]:
    """``Objective.batch`` (softmax, 256 rows) with other chunk sizes, in one lane or two, on 1 and 2 workers.

    Each way sets ``objective``'s chunk constants before building the engine;
    ``engine`` marks the way the shipped constants pick for those rows.
    """
    from linclf.core import objective

    shipped = {k: getattr(objective, k) for k in ("CHUNK_ROWS", "WIDE_CHUNK_ROWS", "WIDE_ROW_BYTES")}
    rng = np.random.default_rng(0)
    ways = [(f"one lane, chunks of {c}", dict(CHUNK_ROWS=c, WIDE_ROW_BYTES=1 << 40), 1) for c in (16, 32, 64, 256)]
    ways += [(f"two lanes, chunks of {c}, {w} workers", dict(WIDE_CHUNK_ROWS=c, WIDE_ROW_BYTES=0), w)
             for c in (32, 64, 128) for w in (1, 2)]
    for P, stored in ((3072, np.uint8), (WIDE_D, np.float32), (19_200, np.float16)):
        N = 20_000
        X = (rng.integers(0, 256, (N, P), dtype=np.uint8) if stored == np.uint8
             else rng.standard_normal((N, P), dtype=np.float32).astype(stored))
        y = rng.integers(0, 10, N)
        W = (rng.standard_normal((10, P + 1)) * 1e-3).astype(np.float32)
        idx = [rng.integers(0, N, BATCH) for _ in range(20)]
        wide = P * 4 > shipped["WIDE_ROW_BYTES"]
        engine = (f"two lanes, chunks of {shipped['WIDE_CHUNK_ROWS']}, 2 workers" if wide
                  else f"one lane, chunks of {shipped['CHUNK_ROWS']}")
        engines = {}
        try:
            for name, consts, workers in ways:
                for k, v in {**shipped, **consts}.items():
                    setattr(objective, k, v)
                engines[name] = objective.Objective(X, y, 10, loss="softmax", reg=0.01, workers=workers)
        finally:
            for k, v in shipped.items():
                setattr(objective, k, v)
        samples: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(ctx.reps(15)):
            for name, f in engines.items():                                # alternating: noise hits all
                with f:
                    f.batch(W, idx[0])
                    t0 = time.perf_counter()
                    for i in idx:
                        f.batch(W, i)
                    samples[name].append((time.perf_counter() - t0) / len(idx))
        for name, f in engines.items():
            f.close()
        us = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
        for name, t in us.items():
            yield {"bench": "chunks", "values": P, "stored": np.dtype(stored).name, "rows": BATCH, "way": name,
                   "engine": name == engine, "step_us": round(t, 1), "vs_engine": round(t / us[engine], 2)}
        del X, engines
        gc.collect()


def bench_checksum(ctx: Context) -> Iterator[dict]:
    """The feature cache's checksum, which a warm run computes over every cached byte: SHA-256 vs BLAKE2b."""
    import hashlib

    data = memoryview(np.random.default_rng(0).integers(0, 256, 1 << 28, dtype=np.uint8))   # 256 MiB
    rates = {}
    for name in ("sha256", "blake2b"):
        samples = []
        for _ in range(ctx.reps(5)):
            h = hashlib.new(name)
            t0 = time.perf_counter()
            for i in range(0, len(data), 1 << 24):
                h.update(data[i:i + (1 << 24)])
            samples.append(time.perf_counter() - t0)
        rates[name] = len(data) / statistics.median(samples) / 1e9
    yield {"bench": "checksum", "sha256_GB_s": round(rates["sha256"], 2), "blake2b_GB_s": round(rates["blake2b"], 2),
           "ratio": round(rates["sha256"] / rates["blake2b"], 2)}


def bench_search(ctx: Context) -> Iterator[dict]:
    """Random local search (configs/random_local_search.yaml's settings): one trial a pass vs speculative groups."""
    from linclf.core import preprocess
    from linclf.core.objective import loss_values
    from linclf.core.search import random_local_search
    from linclf.threads import blas_threads, resolve_workers

    X, y = ctx.X, ctx.y
    prep = preprocess.fit(X, mean=True, std=False, bias=True)
    W0 = (np.random.default_rng(0).standard_normal((10, X.shape[1] + 1)) * 0.001).astype(np.float32)
    trials = 100 if ctx.quick else 300

    def many(Ws: np.ndarray) -> np.ndarray:
        with blas_threads(resolve_workers()):
            return loss_values(Ws, X, y, "svm", mean=prep.mean, scale=prep.scale, bias=prep.bias)

    runs = {}
    for _ in range(ctx.reps(1)):
        for group in (1, 4, 8, 16):
            passes = []

            def counting(Ws: np.ndarray) -> np.ndarray:
                passes.append(len(Ws))
                return many(Ws)

            t0 = time.perf_counter()
            W, loss = random_local_search(lambda W: float(many(W[None])[0]), W0, trials=trials, step_size=1e-4,
                                          rng=np.random.default_rng(0), many_loss_fn=counting, group=group)
            runs.setdefault(group, []).append((time.perf_counter() - t0, len(passes), loss))
    base = statistics.median(t for t, _, _ in runs[1])
    for group, rs in runs.items():
        t = statistics.median(r[0] for r in rs)
        yield {"bench": "search", "case": f"random local search, {trials} trials, {len(y)} rows", "group": group,
               "passes": rs[0][1], "s_per_trial_ms": round(t / trials * 1e3, 1), "speedup": round(base / t, 2),
               "final_loss": round(rs[0][2], 6)}


BENCHES: dict[str, Callable[[Context], Iterator[dict]]] = {
    "convert": bench_convert,
    "chunks": bench_chunks,
    "checksum": bench_checksum,
    "batch256": bench_batch,
    "sgd_batch256": bench_sgd_batch,
    "split": bench_split,
    "train": bench_train,
    "command": bench_command,
    "memory": bench_memory,
    "kmeans": bench_kmeans,
    "search": bench_search,
}


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the data once, run the chosen benches, print JSON lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="cifar-10-binary.tar.gz or a linclf data folder (holding cifar-10-batches-bin/) to read")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data folder with a warm cache for the command bench (default: --data if a folder)")
    p.add_argument("--synthetic", action="store_true", help="random uint8 images instead of --data (loss benches)")
    p.add_argument("--repeat", type=int, default=None,
                   help="runs per figure (default: 20 batches, 7 split, 3 train, 5 command, 2 memory)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, a 10,000-image split, shorter training")
    p.add_argument("--only", action="append", choices=sorted(BENCHES), help="run only this bench (repeatable)")
    args = p.parse_args(argv)
    n = 10_000 if args.quick else NUM_TRAIN
    data: Path | None = None
    if args.synthetic:
        rng = np.random.default_rng(0)
        X, y = rng.integers(0, 256, (n + NUM_VAL, 3072), dtype=np.uint8), rng.integers(0, 10, n + NUM_VAL)
    elif not (args.data.is_file() or (args.data / "cifar-10-batches-bin").is_dir()):
        print(f"bench: no data at {args.data}; build it with "
              "`python3 ../shared/data/make_cifar10.py --out data/dev` or pass --synthetic", file=sys.stderr)
        return 2
    else:
        data = args.data
        X, y = load_split(args.data, n + NUM_VAL)
    ctx = Context(X=X[:n], y=y[:n], repeat=args.repeat, quick=args.quick, X_val=X[n:], y_val=y[n:],
                  data=data, data_dir_arg=args.data_dir)
    print(json.dumps({"bench": "machine", "numpy": np.__version__, "python": platform.python_version(),
                      "cpus": len(os.sched_getaffinity(0)), "n_train": n, "n_val": len(ctx.y_val),
                      "data": None if data is None else str(data),
                      "loadavg_1min": round(os.getloadavg()[0], 2),
                      "blas": [{k: lib.get(k) for k in ("internal_api", "version", "architecture")}
                               for lib in threadpool_info() if lib.get("user_api") == "blas"]}), flush=True)
    try:
        for name in args.only or BENCHES:
            for rec in BENCHES[name](ctx):
                print(json.dumps(rec), flush=True)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
    finally:
        ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training loop: sampling, updates, schedules, per-epoch evaluation, best-on-val, Ctrl-C.

``train(cfg, splits, prep)`` runs the configured method on the stored rows
(uint8 pixels or float feature rows), with the preprocessing folded into W by
the engine (``core.objective``):

- ``sgd``: minibatches drawn with replacement (the lecture's loop) or from an
  epoch-wise shuffle; ``gd``: the whole training split every step;
- ``random_search`` / ``random_local_search``: the derivative-free methods of
  ``search.py`` on the full training loss.

The loop is the only place W changes; a step is ``objective.batch(W, idx)``
(or ``objective.full(W)`` for gd), an update rule, and the bookkeeping. Everything needed to continue a run
bit-identically lives in a ``TrainState`` (W, optimizer state, step, sampling
generator, current permutation, best weights, history), which a checkpoint
stores and ``--resume`` restores. A non-finite loss raises DivergenceError; the
first Ctrl-C ends the current step cleanly, hands the state to the checkpoint
callback and raises Interrupted.
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ..config import Config
from ..core import optim
from ..core.losses import l2_reg
from ..core.model import LinearClassifier
from ..core.objective import Objective, loss_values
from ..core.preprocess import Preprocessor
from ..core.search import SEARCH_METHODS, random_local_search, random_search
from ..data.splits import Splits
from ..errors import DivergenceError, Interrupted, ModelFileError
from ..progress import Bar
from ..threads import blas_threads, resolve_workers

__all__ = ["TrainState", "TrainResult", "train", "rng_stream", "init_state", "state_to_arrays",
           "state_from_arrays", "accuracy", "plan"]

_STREAMS = {"init": 0, "sample": 1, "train_eval": 2, "dev": 3, "search": 4, "gradcheck": 5}
HISTORY_COLUMNS = ("step", "epoch", "loss", "lr", "train_accuracy", "val_accuracy")


def rng_stream(seed: int, name: str) -> np.random.Generator:
    """An independent generator for one purpose (init, sample, ...) derived from the config seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAMS[name],)))


@dataclass
class TrainState:
    """Everything a run needs to continue exactly: see the module docstring."""

    W: np.ndarray                       # (C, D)
    opt_state: optim.State
    step: int
    rng: np.random.Generator            # the sampling stream
    perm: np.ndarray | None = None      # the current epoch's order (sampling: shuffle)
    best_W: np.ndarray | None = None
    best_val: float = -1.0
    best_step: int = 0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    stopped: str = ""                   # why the loop ended early ("early stopping at epoch 7")


@dataclass
class TrainResult:
    """The weights to keep (best-on-val when configured), the final state and timings."""

    W: np.ndarray
    state: TrainState
    steps: int
    samples: int
    seconds: float
    final_loss: float


@dataclass(frozen=True)
class Plan:
    """How long a sgd/gd run is: batch size, steps per epoch, total steps and epochs."""

    batch: int
    steps_per_epoch: float
    total_steps: int

    @property
    def total_epochs(self) -> float:
        """The run's length in passes over the training split."""
        return self.total_steps / self.steps_per_epoch

    def epoch(self, step: int) -> float:
        """Passes over the training split completed after ``step`` steps."""
        return step / self.steps_per_epoch


def plan(cfg: Config, n_train: int) -> Plan:
    """The length of a gradient run: ``iterations`` steps, or ``epochs`` passes rounded up to whole steps."""
    o = cfg.optimizer
    batch = n_train if o.method == "gd" else min(o.batch_size, n_train)
    if o.method == "gd":
        spe = 1.0
    elif o.sampling == "shuffle":
        spe = float(math.ceil(n_train / batch))
    else:
        spe = n_train / batch
    total = o.iterations if o.iterations is not None else math.ceil(o.epochs * spe - 1e-9)
    return Plan(batch, spe, int(total))


def _rule(cfg: Config) -> optim.UpdateRule:
    o = cfg.optimizer
    return optim.make_update(o.update, momentum=o.momentum, decay=o.decay, beta1=o.beta1, beta2=o.beta2, eps=o.eps)


def init_state(cfg: Config, shape: tuple[int, int]) -> TrainState:
    """A fresh state: W ~ N(0, init_scale^2) in the configured dtype, zero optimizer state, step 0."""
    dtype = np.dtype(cfg.model.dtype)
    W = (rng_stream(cfg.seed, "init").standard_normal(shape) * cfg.model.init_scale).astype(dtype)
    return TrainState(W=W, opt_state=_rule(cfg).init(W), step=0, rng=rng_stream(cfg.seed, "sample"))


def state_to_arrays(state: TrainState) -> dict[str, np.ndarray]:
    """A TrainState as plain arrays for a checkpoint .npz (no pickle)."""
    out = {f"opt_{k}": v for k, v in optim.state_to_arrays(state.opt_state).items()}
    out.update({
        "ckpt_W": state.W,
        "ckpt_step": np.array(state.step),
        "ckpt_rng": np.array(json.dumps(state.rng.bit_generator.state)),
        "ckpt_best_val": np.array(state.best_val),
        "ckpt_best_step": np.array(state.best_step),
        "ckpt_bad_epochs": np.array(state.bad_epochs),
        "ckpt_history": np.array(json.dumps(state.history)),
    })
    if state.perm is not None:
        out["ckpt_perm"] = state.perm
    if state.best_W is not None:
        out["ckpt_best_W"] = state.best_W
    return out


def state_from_arrays(arrays: dict[str, np.ndarray], cfg: Config, source: str) -> TrainState:
    """Rebuild a TrainState written by ``state_to_arrays``; ModelFileError names what is wrong."""
    try:
        W = arrays["ckpt_W"]
        opt_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")}
        opt_state = optim.state_from_arrays(cfg.optimizer.update, opt_arrays, W)
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(str(arrays["ckpt_rng"]))
        best_W = arrays.get("ckpt_best_W")
        for name, a in (("ckpt_best_W", best_W),):
            if a is not None and a.shape != W.shape:
                raise ValueError(f"{name} has shape {a.shape}, W has {W.shape}")
        return TrainState(
            W=W.copy(), opt_state=opt_state, step=int(arrays["ckpt_step"]), rng=rng,
            perm=arrays.get("ckpt_perm"), best_W=None if best_W is None else best_W.copy(),
            best_val=float(arrays["ckpt_best_val"]), best_step=int(arrays["ckpt_best_step"]),
            bad_epochs=int(arrays["ckpt_bad_epochs"]), history=json.loads(str(arrays["ckpt_history"])))
    except KeyError as e:
        raise ModelFileError(f"{source} is not a training checkpoint (no field {e.args[0]}); "
                             "resume needs the checkpoint.npz of a run") from None
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{source}: the training state does not fit the config: {e}") from None


def accuracy(W: np.ndarray, prep: Preprocessor, X: np.ndarray, y: np.ndarray,
             X_mirror: np.ndarray | None = None) -> float:
    """Fraction of rows X (N, P) whose argmax score under W (C, D) equals y (N,), computed in float32.

    With ``X_mirror`` (N, P), the rows of each image's mirror, of the mean of both scores.
    """
    if len(y) == 0:
        return float("nan")
    return float(np.mean(LinearClassifier(W, prep, ()).predict(X, X_mirror) == y))


@contextmanager
def _sigint_as_flag() -> Iterator[threading.Event]:
    """While inside, the first Ctrl-C sets a flag (the loop stops at a step boundary); a second one aborts."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        flag.set()
        signal.signal(signal.SIGINT, previous)   # a second Ctrl-C is not deferred

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def train(cfg: Config, splits: Splits, prep: Preprocessor, *, state: TrainState | None = None,
          progress: bool = False, workers: int | None = None, val_mirror: np.ndarray | None = None,
          on_checkpoint: Callable[[TrainState, str], None] | None = None,
          on_step: Callable[[TrainState], None] | None = None) -> TrainResult:
    """Train on splits.X_train (N, P) stored rows (uint8 pixels or float features) with ``prep`` folded in.

    Returns the weights to keep. ``state`` continues a checkpointed run.
    ``workers``: CPUs for the engine's lanes of wide rows and the
    derivative-free search's wide products (None: $LINCLF_WORKERS, else all
    usable); the weights do not depend on it (``core.objective`` says why). ``on_checkpoint(state, reason)`` is
    called every ``train.checkpoint_every`` epochs ("periodic"), at the end
    ("completed") and on Ctrl-C ("interrupted", then Interrupted is raised).
    ``on_step(state)`` runs after every step (tests use it to inject faults).
    ``val_mirror``: the rows of the validation images' mirrors (``model.flip_average``): the per-epoch
    validation accuracy, and so best-on-val and patience, is then of the mean of both scores.
    """
    P = splits.X_train.shape[1]
    shape = (len(splits.classes), prep.out_dim(P))
    if state is None:
        state = init_state(cfg, shape)
    elif state.W.shape != shape:
        raise ModelFileError(f"the checkpoint's W is {state.W.shape}, this data needs {shape}")
    workers = resolve_workers(workers)                      # a bad value is refused whatever the method
    evaluate = _Evaluator(cfg, splits, prep, val_mirror)
    if cfg.optimizer.method in SEARCH_METHODS:
        return _train_search(cfg, splits, prep, state, progress, workers, evaluate)
    return _train_gradient(cfg, splits, prep, state, progress, workers, evaluate, on_checkpoint, on_step)


def _objective(cfg: Config, splits: Splits, prep: Preprocessor, dtype: np.dtype, batch_size: int,
               workers: int) -> Objective:
    """The configured data loss + L2 on the training rows, preprocessing folded in (close it after use)."""
    m = cfg.model
    return Objective(splits.X_train, splits.y_train, len(splits.classes), loss=m.loss, delta=m.delta,
                     mean=prep.mean, scale=prep.scale, bias=prep.bias, reg=m.reg, reg_bias=m.reg_bias,
                     dtype=dtype, batch_size=batch_size, workers=workers)


class _Evaluator:
    """Per-epoch train (fixed subset) and validation accuracy, best-on-val and patience bookkeeping."""

    def __init__(self, cfg: Config, splits: Splits, prep: Preprocessor, val_mirror: np.ndarray | None):
        n = len(splits.y_train)
        k = min(cfg.train.train_eval_size, n)
        idx = np.sort(rng_stream(cfg.seed, "train_eval").choice(n, size=k, replace=False))
        self.X_sub, self.y_sub = splits.X_train[idx], splits.y_train[idx]
        self.splits, self.prep, self.cfg, self.val_mirror = splits, prep, cfg, val_mirror

    def __call__(self, state: TrainState, epoch: float) -> bool:
        """Record accuracies at this point; return True when patience has run out."""
        W = state.W
        has_val = len(self.splits.y_val) > 0
        train_acc = accuracy(W, self.prep, self.X_sub, self.y_sub)
        val_acc = (accuracy(W, self.prep, self.splits.X_val, self.splits.y_val, self.val_mirror) if has_val
                   else float("nan"))
        state.history.append({"step": state.step, "epoch": round(epoch, 6), "train_accuracy": train_acc,
                              "val_accuracy": None if not has_val else val_acc})
        if has_val and val_acc > state.best_val:
            state.best_val, state.best_step, state.bad_epochs = val_acc, state.step, 0
            state.best_W = W.copy()
            return False
        state.bad_epochs += 1
        patience = self.cfg.train.patience
        return has_val and patience is not None and state.bad_epochs >= patience


def _train_gradient(cfg: Config, splits: Splits, prep: Preprocessor, state: TrainState, progress: bool,
                    workers: int, evaluate: _Evaluator, on_checkpoint: Callable[[TrainState, str], None] | None,
                    on_step: Callable[[TrainState], None] | None) -> TrainResult:
    o = cfg.optimizer
    n = len(splits.y_train)
    p = plan(cfg, n)
    rule = _rule(cfg)
    lr_kw = dict(step_every=o.step_every, gamma=o.gamma, k=o.k, lr_min=o.lr_min)
    ckpt_every = cfg.train.checkpoint_every
    spe_int = int(p.steps_per_epoch)

    def draw(step: int) -> np.ndarray:
        """The minibatch of ``step``: from the epoch's order (renewed when due) or drawn with replacement."""
        if o.sampling == "shuffle":
            pos = step % spe_int
            if pos == 0 or state.perm is None:
                state.perm = state.rng.permutation(n)
            return np.sort(state.perm[pos * p.batch:(pos + 1) * p.batch])
        return state.rng.integers(0, n, p.batch)

    start_step = state.step
    last_loss = last_lr = math.nan
    bar = Bar(progress, p.total_steps, state.step, "train", "step")
    t0 = time.perf_counter()
    try:
        with _sigint_as_flag() as interrupted, \
                _objective(cfg, splits, prep, state.W.dtype, p.batch, workers) as objective:
            while state.step < p.total_steps:
                if interrupted.is_set():
                    if on_checkpoint is not None:
                        on_checkpoint(state, "interrupted")
                    raise Interrupted(f"interrupted at step {state.step} of {p.total_steps}")
                step = state.step
                loss, dW = objective.full(state.W) if o.method == "gd" else objective.batch(state.W, draw(step))
                if not math.isfinite(loss):
                    if math.isfinite(last_loss) and state.history and state.history[-1].get("step") != state.step:
                        # the last finite step, so a plot of the run shows how it went up (log_every may skip it)
                        state.history.append({"step": state.step, "epoch": round(p.epoch(state.step), 6),
                                              "loss": last_loss, "lr": last_lr})
                    err = DivergenceError(f"the loss became {loss} at step {step + 1} (optimizer.lr {o.lr:g}): "
                                          "training diverged; lower optimizer.lr")
                    err.step = step + 1          # runs.py probes a lower lr this many steps
                    raise err
                lr = optim.lr_at(o.schedule, o.lr, p.epoch(step), p.total_epochs, **lr_kw)
                delta, state.opt_state = rule.update(dW, state.opt_state, lr)
                state.W += delta
                state.step = step + 1
                last_loss, last_lr = loss, lr
                if state.step % cfg.train.log_every == 0 or state.step in (1, p.total_steps):
                    state.history.append({"step": state.step, "epoch": round(p.epoch(state.step), 6),
                                          "loss": loss, "lr": lr})
                bar.update(1, loss=loss, lr=lr)
                epoch_now, epoch_before = p.epoch(state.step), p.epoch(step)
                if math.floor(epoch_now + 1e-9) > math.floor(epoch_before + 1e-9):
                    if evaluate(state, epoch_now):
                        state.stopped = f"early stopping at epoch {epoch_now:.0f}: no better validation " \
                                        f"accuracy for {cfg.train.patience} epochs"
                        break
                    if (ckpt_every and on_checkpoint is not None
                            and math.floor(epoch_now / ckpt_every + 1e-9) > math.floor(epoch_before / ckpt_every + 1e-9)):
                        on_checkpoint(state, "periodic")
                if on_step is not None:
                    on_step(state)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    if not state.history or "train_accuracy" not in state.history[-1] or state.history[-1]["step"] != state.step:
        evaluate(state, p.epoch(state.step))
    if on_checkpoint is not None:
        on_checkpoint(state, "completed")
    keep = state.best_W if (cfg.train.keep_best and state.best_W is not None) else state.W
    if math.isnan(last_loss):
        last_loss = next((r["loss"] for r in reversed(state.history) if "loss" in r), math.nan)
    steps = state.step - start_step
    return TrainResult(W=keep.copy(), state=state, steps=steps, samples=steps * p.batch, seconds=seconds,
                       final_loss=last_loss)


def _train_search(cfg: Config, splits: Splits, prep: Preprocessor, state: TrainState,
                  progress: bool, workers: int, evaluate: _Evaluator) -> TrainResult:
    o = cfg.optimizer
    X, y = splits.X_train, splits.y_train
    rng = rng_stream(cfg.seed, "search")
    bar = Bar(progress, o.trials, 0, o.method.replace("_", " "), "trial")

    def many_loss_fn(Ws: np.ndarray) -> np.ndarray:
        m = cfg.model
        with blas_threads(workers):                 # one wide product per block: BLAS's own threads pay here
            values = loss_values(Ws, X, y, m.loss, delta=m.delta, mean=prep.mean, scale=prep.scale, bias=prep.bias)
        if m.reg:
            values += np.array([l2_reg(W, m.reg, m.reg_bias or not prep.bias)[0] for W in Ws])
        return values

    def loss_fn(W: np.ndarray) -> float:
        return float(many_loss_fn(W[None])[0])

    def callback(trial: int, best: float) -> None:
        if trial % cfg.train.log_every == 0 or trial in (1, o.trials):
            state.history.append({"step": trial, "epoch": float(trial), "loss": best, "lr": None})
        bar.update(1, best_loss=best)
        if interrupted.is_set():     # Ctrl-C (or SIGINT while the shell ignored it) stops at a trial boundary
            raise Interrupted(f"{o.method} interrupted at trial {trial} of {o.trials} "
                              "(search runs are not resumable)")

    t0 = time.perf_counter()
    try:
        with _sigint_as_flag() as interrupted:
            if o.method == "random_search":
                W, best = random_search(loss_fn, state.W.shape, trials=o.trials, scale=cfg.model.init_scale,
                                        rng=rng, dtype=state.W.dtype, callback=callback,
                                        many_loss_fn=many_loss_fn)
            else:
                W, best = random_local_search(loss_fn, state.W, trials=o.trials, step_size=o.step_size,
                                              rng=rng, callback=callback, many_loss_fn=many_loss_fn)
    except FloatingPointError as e:
        raise DivergenceError(f"{o.method}: {e}") from None
    except KeyboardInterrupt:
        raise Interrupted(f"{o.method} interrupted (search runs are not resumable)") from None
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    state.W, state.step = W, o.trials
    evaluate(state, float(o.trials))
    return TrainResult(W=W.copy(), state=state, steps=o.trials, samples=o.trials * len(y), seconds=seconds,
                       final_loss=best)

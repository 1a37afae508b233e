"""One sweep trial, run wherever an executor puts it: this process, a local worker process, a Dask worker.

A task is a plain dict (it crosses process and machine boundaries as JSON-like
data, never as arrays): ``trial`` (its index), ``config`` (the trial's resolved
config), ``data`` (where the data is: the sweep's config and ``--data-dir``, so
the worker maps the same cache or loads the same archive itself; the test
split is replaced by empty arrays before training) and, for a pruned Optuna
search, ``study`` (storage URL, study name, pruner) with the Optuna
``trial_id`` this trial reports its per-epoch validation accuracy to.

``run_trial`` never raises: the returned dict's ``status`` is ok, diverged,
pruned, failed or interrupted. A worker process runs the losses and BLAS on one
thread, so several trials share a machine without oversubscribing it.

``LINCLF_SWEEP_HOOK=module:function`` (tests) calls ``function(task)`` at the
start of every trial, inside the process that runs it: a deterministic way to
make a trial fail, log itself, or kill its own process.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import os
import time
import warnings
from typing import Any, Callable

import numpy as np

from ..config import Config, from_dict
from ..core.preprocess import Preprocessor, fit
from ..data.cifar10 import CIFAR10
from ..data.splits import Splits
from ..errors import DivergenceError, Interrupted, LinclfError
from ..features.registry import LEARNED
from ..fsutil import json_safe
from .featurize import extraction, feature_prep, featurize, mirror_rows
from .loop import accuracy, init_state, plan, train
from .run_data import load_data, located, make_splits

__all__ = ["run_trial", "data_location", "one_thread_process", "pruning_callback", "TrialPruned", "HOOK_ENV"]

HOOK_ENV = "LINCLF_SWEEP_HOOK"

_DATA: dict[tuple, CIFAR10] = {}              # the data per location, loaded once per process
_PREP: dict[tuple, Preprocessor] = {}         # preprocessing per (settings, training split), per process
_FEATS: dict[tuple, Splits] = {}              # feature splits per (features settings, data settings), per process
_ONE_THREAD = False


class TrialPruned(Exception):
    """Raised from the step callback when the search's pruner stops the trial."""

    def __init__(self, epoch: int, val_accuracy: float):
        super().__init__(f"pruned at epoch {epoch} (val accuracy {val_accuracy:.4f} of the epoch's mean weights)")
        self.epoch, self.val_accuracy = epoch, val_accuracy


def data_location(cfg: Config, data_dir: str | os.PathLike | None) -> dict:
    """What a worker needs to load the sweep's data itself: the config (data section) and ``--data-dir``.

    Workers elsewhere (Dask) start in another folder with another environment: the data folder this process
    would use, the archive and the feature file are given as absolute paths (``run_data.located``).
    """
    from ..config import to_dict

    cfg = located(cfg, data_dir)
    return {"config": to_dict(cfg), "data_dir": cfg.data.dir}


def one_thread_process() -> None:
    """This process (a worker running one trial at a time) limits BLAS to one thread, for good."""
    global _ONE_THREAD
    if not _ONE_THREAD:
        from ..threads import set_blas_threads

        set_blas_threads(1)
        _ONE_THREAD = True


def set_data(location: dict, data: CIFAR10 | None) -> None:
    """Use ``data`` (already loaded by this process) for ``location``; None forgets every cached split."""
    if data is None:
        _DATA.clear()
        _PREP.clear()
        _FEATS.clear()
    else:
        _DATA[_key(location)] = data


def _key(location: dict) -> tuple:
    """What identifies a location's data: the folder, the configured folder, format, archive and feature file."""
    d, f = location["config"]["data"], location["config"]["features"]
    return (location["data_dir"], d.get("dir"), d.get("format"), d.get("archive"), f.get("kind"), f.get("path"))


def _data(location: dict) -> CIFAR10:
    """The data of ``location``, loaded (memory-mapped cache) on first use in this process."""
    key = _key(location)
    if key not in _DATA:
        _DATA[key] = load_data(from_dict(location["config"]), location["data_dir"])
    return _DATA[key]


def _splits(cfg: Config, location: dict) -> tuple[Splits, np.ndarray | None]:
    """The trial's train / val splits (the test split replaced by empty arrays: never read), and with
    ``model.flip_average`` the rows of the validation images' mirrors (else None).

    Learned features come from the feature cache in ``data_dir`` (filled by the sweep before its trials
    where workers share the file system, else built by the first trial that needs them); the trials of one
    process share the memory-mapped rows (keyed by the data's location too: a worker may outlive a sweep).
    """
    s, data_dir = make_splits(cfg, _data(location)), location["data_dir"]
    flip = cfg.model.flip_average
    if cfg.features.kind in LEARNED:
        # a sweep's trials share its features: it sets features.seed to its own seed (sweep_params)
        d = cfg.data
        key = (_key(location), extraction(cfg), d.num_train, d.num_val, d.num_dev, cfg.seed if d.num_dev else None,
               flip)
        if key not in _FEATS:
            feats, extractor = featurize(cfg, s, data_dir, only=("train", "val"))
            mirror = mirror_rows(cfg, s, ("val",), data_dir, extractor=extractor)["val"] if flip else None
            _FEATS[key] = feats, mirror
        return _FEATS[key]
    no_rows = np.empty((0, s.X_train.shape[1]), dtype=s.X_train.dtype)
    return (dataclasses.replace(s, X_test=no_rows, y_test=np.empty(0, dtype=s.y_train.dtype)),
            mirror_rows(cfg, s, ("val",))["val"] if flip else None)


def _prep(cfg: Config, splits: Splits, location: dict) -> Preprocessor:
    """The preprocessing fitted on the training split, reused by later trials with the same settings and data."""
    p, d = cfg.preprocess, cfg.data
    key = (_key(location), p.mean, p.std, p.bias, d.num_train, d.num_val, d.num_dev, cfg.seed if d.num_dev else None,
           extraction(cfg))
    if key not in _PREP:
        _PREP[key] = (fit(splits.X_train, mean=p.mean, std=p.std, bias=p.bias) if cfg.features.kind == "pixels"
                      else feature_prep(cfg, splits.X_train))
    return _PREP[key]


def _finite(x: Any) -> float | None:
    """A float, or None for a missing or non-finite value (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


def pruning_callback(study_spec: dict, trial_id: int, total_steps: int,
                     val_accuracy: Callable[[np.ndarray], float]) -> Callable[[Any], None]:
    """The ``on_step`` callback reporting each epoch's validation accuracy to Optuna; raises TrialPruned.

    ``val_accuracy(W)`` scores weights W (C, D) on the validation split; ``total_steps`` is the trial's
    length. What is reported is the score of the weights averaged over the epoch's steps, not of the last
    iterate: under a decaying lr an early iterate is noisy in proportion to its lr, so the pruner would
    rank a large lr that ends best below a small one that ends worse; the epoch's mean is near where the
    annealed run goes (README, "sweep"). The pruner is not asked after the last step: the trial has trained
    by then, and pruning it would save nothing and throw its result away (Hyperband's top rung and the
    median rule both would).
    """
    from .search_tpe import open_trial

    trial = open_trial(study_spec, trial_id)
    seen, total, steps = 0, None, 0              # the sum of this epoch's weights, over its steps

    def on_step(state) -> None:
        nonlocal seen, total, steps
        steps += 1
        if total is None:
            total = state.W.astype(np.float64)
        else:
            total += state.W                     # in place: no temporary of W's size a step
        new, seen = state.history[seen:], len(state.history)
        for rec in new:
            val = rec.get("val_accuracy")
            if val is None or not math.isfinite(val):
                continue
            epoch = int(round(rec["epoch"]))
            val = float(val_accuracy((total / steps).astype(state.W.dtype)))
            total, steps = None, 0
            trial.report(val, step=epoch)
            if rec["step"] < total_steps and trial.should_prune():
                raise TrialPruned(epoch, val)

    return on_step


def _train_and_score(task: dict, states: list) -> dict:
    """Train on the training split, score on the validation split; ``states`` receives the TrainState."""
    cfg = from_dict(task["config"])
    splits, val_mirror = _splits(cfg, task["data"])
    prep = _prep(cfg, splits, task["data"])
    state = init_state(cfg, (len(splits.classes), prep.out_dim(splits.X_train.shape[1])))
    states.append(state)
    on_step = None
    if task.get("study"):
        on_step = pruning_callback(task["study"], task["trial_id"], plan(cfg, len(splits.y_train)).total_steps,
                                   lambda W: accuracy(W, prep, splits.X_val, splits.y_val, val_mirror))
    # a worker process runs one trial of several in parallel: one CPU each
    result = train(cfg, splits, prep, state=state, on_step=on_step, workers=1 if task.get("worker") else None,
                   val_mirror=val_mirror)
    return {"val_accuracy": _finite(accuracy(result.W, prep, splits.X_val, splits.y_val, val_mirror)),
            "train_accuracy": _finite(accuracy(result.W, prep, splits.X_train, splits.y_train)),
            "final_loss": _finite(result.final_loss)}


def _hook(task: dict) -> None:
    """Call the ``LINCLF_SWEEP_HOOK`` function with ``task`` when the variable is set (tests)."""
    spec = os.environ.get(HOOK_ENV)
    if spec:
        module, _, name = spec.partition(":")
        getattr(importlib.import_module(module), name)(task)


def run_trial(task: dict) -> dict:
    """Run one trial; never raises: ``status`` says ok, diverged, pruned, failed or interrupted."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"val_accuracy": None, "train_accuracy": None, "final_loss": None}
    states: list = []
    extra: dict[str, Any] = {}
    try:
        if task.get("worker"):
            one_thread_process()
        _hook(task)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # overflow on the way to a divergence
            out.update(_train_and_score(task, states))
        status, message = "ok", ""
    except TrialPruned as e:
        status, message = "pruned", str(e)
        out["val_accuracy"] = e.val_accuracy
        extra["pruned_epoch"] = e.epoch
    except DivergenceError as e:
        status, message = "diverged", str(e)
    except (Interrupted, KeyboardInterrupt) as e:
        status, message = "interrupted", str(e)
    except Exception as e:  # noqa: BLE001 - a trial's failure is recorded, not fatal
        status, message = "failed", str(e) if isinstance(e, LinclfError) else f"{type(e).__name__}: {e}"
    return {"trial": task["trial"], **out, "status": status, "seconds": round(time.perf_counter() - t0, 3),
            "message": message, "worker_pid": os.getpid(), **extra,
            "history": json_safe(states[0].history) if states else []}

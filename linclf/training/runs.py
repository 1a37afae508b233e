"""A training run: load and split the data, fit the features and preprocessing, train, evaluate, write the run
folder (``run_folder``), and say what went wrong when it fails.
"""
from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..core import preprocess
from ..core.model import LinearClassifier
from ..core.optim import l2_diverges
from ..config import Config, to_yaml, with_values
from ..data.splits import Splits
from ..errors import DataError, DivergenceError, Interrupted, LinclfError, LinclfWarning
from ..features.registry import LEARNED
from ..fsutil import shell_path, write_json_atomic, write_text_atomic
from .advice import chance_advice, l2_growth, setting_warnings
from .evaluate import at_chance_level, feature_file_stamp
from .featurize import feature_prep, featurize, mirror_rows, model_extractor
from .loop import TrainResult, TrainState, state_from_arrays, state_to_arrays, train
from .run_data import load_data, located, make_splits
from .run_folder import claim_out_dir, history_csv

__all__ = ["RunResult", "run_train", "outcome_warnings"]


@dataclass
class RunResult:
    """What a training run produced: the model, its metrics and where the files are."""

    model: LinearClassifier
    metrics: dict
    out_dir: Path
    result: TrainResult


def run_train(cfg: Config, out_dir: Path, *, data_dir: str | os.PathLike | None = None,
              resume: str | os.PathLike | None = None, resume_arrays: dict | None = None,
              progress: bool = False, quiet: bool = True, workers: int | None = None,
              on_step: Callable[[TrainState], None] | None = None, overwrite: bool = False) -> RunResult:
    """Train as ``cfg`` says, writing the run's files into ``out_dir`` (checked by ``check_out_dir``).

    The folder is created once the data has loaded and held (``claim_out_dir``) until the run ends: a
    run already in it is refused unless ``overwrite`` or it is the folder of the checkpoint ``resume``
    continues, as is a second linclf writing into it at the same time. A failure before the first step
    removes a folder this call created; a later one keeps ``checkpoint.npz`` and ``history.csv`` and
    names them. ``workers``: CPUs to train on (None: $LINCLF_WORKERS, else all usable).
    """
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    data = load_data(cfg, data_dir, quiet=quiet)      # the paths as given: an error names them so
    source = {"feature_file": feature_file_stamp(cfg.features.path)} if cfg.features.kind == "npz" else {}
    cfg = located(cfg, data_dir)                        # what the run records
    config_text = to_yaml(cfg)
    splits = make_splits(cfg, data)
    seconds["load"] = time.perf_counter() - t
    o = cfg.optimizer
    for message in setting_warnings(cfg, len(splits.y_train)).values():
        warnings.warn(message, LinclfWarning, stacklevel=2)

    model0 = None
    if resume_arrays is not None:
        model0 = LinearClassifier.from_arrays(resume_arrays, source=os.fspath(resume))
    kind = cfg.features.kind
    extractor = None
    images = replace(splits, X_train=np.empty((0, splits.X_train.shape[1]), splits.X_train.dtype),
                     y_train=splits.y_train[:0].copy())       # val and test, for model.flip_average
    if kind in LEARNED:
        t = time.perf_counter()
        given = None if model0 is None else model_extractor(model0, os.fspath(resume))
        splits, extractor = featurize(cfg, splits, data_dir, extractor=given, progress=progress, workers=workers)
        seconds["features"] = time.perf_counter() - t
    features_arrays = {} if extractor is None else extractor.to_arrays()

    t = time.perf_counter()
    if model0 is not None:
        prep = model0.prep
        if tuple(model0.classes) != tuple(splits.classes):
            raise DataError(f"{resume} was trained on classes {list(model0.classes)}, the data has "
                            f"{list(splits.classes)}")
        state = state_from_arrays(resume_arrays, cfg, os.fspath(resume))
    elif kind != "pixels":
        prep = feature_prep(cfg, splits.X_train)
        state = None
    else:
        p = cfg.preprocess
        prep = preprocess.fit(splits.X_train, mean=p.mean, std=p.std, bias=p.bias)
        state = None
    seconds["preprocess"] = time.perf_counter() - t

    def save_checkpoint(st: TrainState, reason: str) -> None:
        ckpt = LinearClassifier(st.W, prep, splits.classes, cfg.model.loss, config_text, {"reason": reason},
                                kind, features_arrays)
        ckpt.save(out_dir / "checkpoint.npz", extra=state_to_arrays(st))
        saved["reason"] = reason

    started: dict = {}      # the TrainState, once a first step has run
    saved: dict = {}        # the reason of the last checkpoint this run wrote

    def step_seen(st: TrainState) -> None:
        started["state"] = st
        if on_step is not None:
            on_step(st)

    mirrors = {}
    if cfg.model.flip_average:
        t = time.perf_counter()
        mirrors = mirror_rows(cfg, images, ("val", "test"), data_dir, extractor=extractor, progress=progress,
                              workers=workers)
        seconds["mirrors"] = time.perf_counter() - t
    created = not out_dir.exists()
    continuing = resume is not None and out_dir.absolute() == Path(resume).parent.absolute()
    with claim_out_dir(out_dir, overwrite=overwrite or continuing):
        write_text_atomic(out_dir / "config.yaml", config_text)
        try:
            result = train(cfg, splits, prep, state=state, progress=progress, workers=workers,
                           val_mirror=mirrors.get("val"), on_checkpoint=save_checkpoint, on_step=step_seen)
        except BaseException as e:
            if isinstance(e, DivergenceError) and getattr(e, "step", None):
                e = DivergenceError(f"{e}{_lr_hint(cfg, splits, prep, e.step, workers)}")
            raise _after_failure(e, out_dir, created, started.get("state"), saved, save_checkpoint) from None
        seconds["train"] = result.seconds

        try:
            t = time.perf_counter()
            model = LinearClassifier(result.W, prep, splits.classes, cfg.model.loss, config_text,
                                     features_kind=kind, features_arrays=features_arrays)
            train_acc = float(np.mean(model.predict(splits.X_train) == splits.y_train))
            # the last reference to the training rows goes before the test rows are read: a memory map's pages
            # leave the process with it, so the peak is the larger split, not the sum of all three
            splits = replace(splits, X_train=np.empty((0, splits.X_train.shape[1]), splits.X_train.dtype))
            val_acc = (float(np.mean(model.predict(splits.X_val, mirrors.get("val")) == splits.y_val))
                       if len(splits.y_val) else None)
            test_acc = float(np.mean(model.predict(splits.X_test, mirrors.get("test")) == splits.y_test))
            seconds["evaluate"] = time.perf_counter() - t

            metrics = {
                "train_accuracy": train_acc,
                "val_accuracy": val_acc,
                "test_accuracy": test_acc,
                "final_loss": result.final_loss,
                "steps": result.state.step,
                "samples_per_second": (result.samples / result.seconds if result.samples and result.seconds > 0
                                       else None),
                "best_step": result.state.best_step if cfg.train.keep_best else None,
                "stopped": result.state.stopped or "completed",
                "num_train": len(splits.y_train), "num_val": len(splits.y_val), "num_test": len(splits.y_test),
                "seconds": {k: round(v, 4) for k, v in seconds.items()},
                "linclf_version": __version__, **source,
            }
            model.metrics = metrics
            for message in outcome_warnings(metrics, result.state.history, len(splits.classes), o.method):
                warnings.warn(message, LinclfWarning, stacklevel=2)
            model.save(out_dir / "model.npz")
            write_text_atomic(out_dir / "history.csv", history_csv(result.state.history))
            write_json_atomic(out_dir / "metrics.json", metrics, indent=2)
            return RunResult(model=model, metrics=metrics, out_dir=out_dir, result=result)
        except KeyboardInterrupt:
            todo = (f"`linclf train --resume {shell_path(out_dir)}` scores and saves it"
                    if cfg.optimizer.method in ("sgd", "gd") else "train again to score and save it")
            raise Interrupted(f"interrupted after training, while scoring and saving the model; {todo}") from None


def outcome_warnings(metrics: dict, history: list[dict], num_classes: int, method: str = "sgd") -> list[str]:
    """What looks wrong with a run of optimizer.method ``method`` that finished: accuracy at chance level, a loss
    that rose.

    Chance level: the validation accuracy (training accuracy without a validation split) is
    within three standard errors of 1/C for that many images.
    """
    out = []
    split_name, acc, n = ("val", metrics["val_accuracy"], metrics["num_val"])
    if acc is None:
        split_name, acc, n = "train", metrics["train_accuracy"], metrics["num_train"]
    if at_chance_level(acc, n, num_classes):
        out.append(f"the final {split_name} accuracy {acc:.4f} is at chance level "
                   f"(1/{num_classes} = {1 / num_classes:.2f} on {n} images): the model learned nothing; check "
                   f"{chance_advice(method)}")
    losses = [r["loss"] for r in history if r.get("loss") is not None]
    final = metrics["final_loss"]
    if len(losses) > 1 and final is not None and math.isfinite(final) and final > 1.5 * losses[0]:
        out.append(f"the final loss {final:.4g} is above the loss at the first step ({losses[0]:.4g}): "
                   "optimizer.lr is probably too high")
    return out


def _after_failure(e: BaseException, out_dir: Path, created: bool, state: TrainState | None, saved: dict,
                   save_checkpoint: Callable[[TrainState, str], None]) -> BaseException:
    """Leave the run folder in a state that says what happened; return ``e`` reworded to say where things are.

    No step ran and nothing was saved: the folder goes (if this run created it). Otherwise the state
    at the failure (or the checkpoint the loop saved) and the history stay, and the message names them.
    """
    ckpt = out_dir / "checkpoint.npz"
    if state is None and not saved:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        return Interrupted(f"{e}; nothing was saved") if isinstance(e, Interrupted) else e
    if state is not None and not saved and np.all(np.isfinite(state.W)):
        try:
            save_checkpoint(state, "failed")
        except OSError:
            pass
    if state is not None:
        try:
            write_text_atomic(out_dir / "history.csv", history_csv(state.history))
        except OSError:
            pass
    if isinstance(e, Interrupted):
        return Interrupted(f"{e}; checkpoint saved to {ckpt}; continue with "
                           f"`linclf train --resume {shell_path(out_dir)}`")
    if isinstance(e, LinclfError):
        if not saved:
            what = f"the weights were no longer finite, so no checkpoint; the history so far is in {out_dir}"
        elif saved["reason"] == "periodic":
            what = f"the last periodic checkpoint is kept in {ckpt}"
        else:
            what = f"the state at the failure is kept in {ckpt}"
        return type(e)(f"{e}; {what} (`linclf plot {shell_path(out_dir)}` shows the run so far)")
    return e


def _lr_hint(cfg: Config, splits: Splits, prep: preprocess.Preprocessor, failed_step: int,
             workers: int | None = None) -> str:
    """A learning rate that trains without diverging, found by a short range test below optimizer.lr.

    Each candidate (lr / 10, lr / 100, ...) trains from the same start with a constant schedule,
    twice as many steps as the run took to diverge (at least 100, at most 300; gd: as many, at
    most 20); the first that stays finite is suggested. Candidates at which plain SGD's L2 term
    alone diverges (``optim.l2_diverges``) are skipped, and the hint then names that bound too.
    """
    lr, reg, update = cfg.optimizer.lr, cfg.model.reg, cfg.optimizer.update
    l2 = f"; {l2_growth(lr, reg)}" if l2_diverges(update, lr, reg) else ""
    steps = min(max(2 * failed_step, 100), 300) if cfg.optimizer.method == "sgd" else min(failed_step, 20)
    tried = False
    for k in range(1, 7):
        candidate = float(f"{lr / 10 ** k:.3g}")
        if l2_diverges(update, candidate, reg):
            continue
        tried = True
        probe = with_values(cfg, {"optimizer.lr": candidate, "optimizer.iterations": steps,
                                  "optimizer.schedule": "constant", "train.checkpoint_every": None,
                                  "train.patience": None, "train.log_every": max(steps, 1)})
        try:
            train(probe, splits, prep, workers=workers)
        except DivergenceError:
            continue
        return (f", e.g. --set optimizer.lr={candidate:g} (it trained {steps} steps from the same start "
                f"without diverging){l2}")
    if not tried:
        return l2
    return f"; even optimizer.lr={lr / 1e6:g} diverged within {steps} steps: check the data and preprocessing{l2}"

"""A training run on disk: load, split, fit, train, evaluate, and the files a run leaves.

A run folder holds ``config.yaml`` (resolved), ``checkpoint.npz`` (to resume),
``model.npz`` (the weights kept, the preprocessing, class names, config,
metrics), ``history.csv`` and ``metrics.json``. Every file is written
atomically. The CLI's commands are thin wrappers around the ``run_*``
functions here (train, eval, gradcheck, features); the sweep and its workers
load and split data through ``load_data`` and ``make_splits``.
"""
from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import yaml

from .. import __version__
from ..core import preprocess
from ..core.losses import initial_loss
from ..core.optim import l2_diverges
from ..config import Config, from_dict, to_yaml, with_values
from ..data.cifar10 import NUM_PIXELS, CIFAR10, Splits, load_cifar10, resolve_data_dir, split, with_mirrors
from ..errors import (ConfigError, DataError, DivergenceError, Interrupted, LinclfError, LinclfWarning,
                      ModelFileError, UsageError)
from .evaluate import Evaluation, evaluate_predictions
from ..fsutil import unlink_quiet, write_json_atomic, write_text_atomic
from ..core.model import LinearClassifier, load_npz
from ..features.registry import LEARNED
from .featurize import feature_prep, featurize, mirror_rows, model_extractor, row_width, training_rows
from .loop import HISTORY_COLUMNS, TrainResult, TrainState, rng_stream, state_from_arrays, state_to_arrays, train

__all__ = ["RUN_FILES", "RunResult", "default_out_dir", "check_out_dir", "claim_out_dir", "prepare_out_dir",
           "located", "load_data", "make_splits", "run_train", "run_eval", "run_features", "checkpoint_file",
           "config_of_checkpoint", "history_csv"]

RUN_FILES = ("model.npz", "checkpoint.npz", "metrics.json", "history.csv", "config.yaml")


def default_out_dir(config_path: str | os.PathLike | None, root: str | os.PathLike = "runs",
                    prefix: str = "") -> Path:
    """``runs/<prefix><config name>-<YYYYmmdd-HHMMSS>`` (a numeric suffix if that exists already)."""
    stem = Path(config_path).stem if config_path else "default"
    base = Path(root) / f"{prefix}{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


class OutputError(LinclfError):
    """The output folder cannot be used (exit 1)."""


def check_out_dir(out: Path, *, overwrite: bool = False, resuming: bool = False) -> Path:
    """Refuse an ``out`` that is a file, holds an earlier run (unless asked) or cannot be created; create nothing.

    ``run_train`` creates the folder only once the data has loaded, so a run that fails before its
    first step leaves no folder behind.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if not resuming and not overwrite and out.is_dir():
        taken = [f for f in RUN_FILES if (out / f).exists()]
        if taken:
            raise UsageError(f"--out {out} already holds a run ({', '.join(taken)}); choose another folder, "
                             "pass --overwrite, or continue it with --resume")
    parent = out.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into --out {out}: {parent} is not writable; choose a writable folder")
    return out


@contextmanager
def claim_out_dir(out: Path, *, overwrite: bool = False) -> Iterator[None]:
    """Create ``out`` and hold it for one run: an exclusive lock on ``out/.linclf.lock`` (removed at the end;
    the OS releases it if the process dies), then ``check_out_dir`` again under it, so of two runs started
    together into one folder the second is refused instead of mixing its files with the first's."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:             # pragma: no cover - not POSIX: no lock, the check alone
        check_out_dir(out, overwrite=overwrite)
        yield
        return
    lock = out / ".linclf.lock"
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"--out {out}: another linclf is writing a run into it now; wait for it to "
                             "finish or choose another folder") from None
        try:
            check_out_dir(out, overwrite=overwrite)
            yield
        finally:
            unlink_quiet(lock)


def prepare_out_dir(out: Path, *, overwrite: bool = False, resuming: bool = False) -> Path:
    """Create ``out`` and prove it is writable; refuse to overwrite an earlier run unless asked."""
    check_out_dir(out, overwrite=overwrite, resuming=resuming)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".linclf-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"cannot write into --out {out}: {e.strerror or e}; choose a writable folder") from None
    return out


def located(cfg: Config, data_dir: str | os.PathLike | None = None) -> Config:
    """``cfg`` with ``data.dir`` (and a relative ``data.archive`` and ``features.path``) made absolute, as a
    run records them.

    The folder is the one ``load_data`` reads (``--data-dir``, $LINCLF_DATA_DIR, ``data.dir``, the user
    cache), so ``eval`` and ``plot`` of a run, and a sweep's workers, find its data from any working directory.
    """
    values: dict = {"data.dir": str(resolve_data_dir(data_dir, cfg.data.dir))}
    for key, path in (("data.archive", cfg.data.archive), ("features.path", cfg.features.path)):
        if path is not None:
            values[key] = str(Path(path).expanduser().absolute())
    return with_values(cfg, values)


def load_data(cfg: Config, data_dir: str | os.PathLike | None = None, *, quiet: bool = True) -> CIFAR10:
    """CIFAR-10 as the config's data section says (archive, format, mirrors); never downloads implicitly
    unless no archive is configured, in which case the official download is used. With
    ``features.kind: npz``, the user's feature file instead (the same fields, float rows)."""
    if cfg.features.kind == "npz":
        from ..features.npzfile import load_feature_file

        return load_feature_file(cfg.features.path)  # type: ignore[return-value]
    d = cfg.data
    return load_cifar10(resolve_data_dir(data_dir, d.dir), d.format, download=d.archive is None,
                        archive=d.archive, md5=d.md5, urls=d.urls, timeout=d.timeout, retries=d.retries,
                        quiet=quiet)


def make_splits(cfg: Config, data: CIFAR10, *, mirrors: bool = True) -> Splits:
    """The config's train / val / test split of ``data``; with ``data.flip`` (and ``mirrors``) the training
    split's mirror images are appended (a caller that never reads the training split skips that copy)."""
    d = cfg.data
    splits = split(data, d.num_train, d.num_val, d.num_test, d.num_dev, rng=rng_stream(cfg.seed, "dev"))
    return with_mirrors(splits) if d.flip and mirrors else splits


def history_csv(history: list[dict]) -> str:
    """The history rows as CSV text (empty cells where a row has no value)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in HISTORY_COLUMNS})
    return buf.getvalue()


# keys a resumed run keeps: they decide the model, its rows and its minibatches (the seed draws them)
RESUME_FIXED = ("seed", "model.", "preprocess.", "features.", "data.num_train", "data.num_val", "data.num_dev",
                "data.flip")
_GIVE_A_RUN = "give the run folder `linclf train` printed (runs/<name>-<time>) or the checkpoint.npz in it"


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint ``--resume PATH`` names: PATH, or PATH/checkpoint.npz when PATH is a (run) folder.

    UsageError (exit 2) when there is none; ``config_of_checkpoint`` checks that the file is one.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "checkpoint.npz").is_file():
            raise UsageError(f"--resume {p}: no checkpoint.npz in this folder; {_GIVE_A_RUN}")
        return p / "checkpoint.npz"
    if not p.exists():
        raise UsageError(f"--resume {p}: no checkpoint at {p.absolute()}; {_GIVE_A_RUN}")
    return p


def config_of_checkpoint(path: str | os.PathLike, overrides: dict | None = None) -> tuple[Config, dict]:
    """The resolved config stored in a checkpoint (with ``overrides`` applied) and all its arrays.

    ``path`` is a checkpoint.npz or a run folder holding one. Anything else (a model file, an empty or
    truncated file) is a UsageError (exit 2) saying what to give instead.
    """
    p = checkpoint_file(path)
    try:
        arrays = load_npz(p)
    except ModelFileError as e:       # its advice is for model files
        raise UsageError(f"{e.problem}; --resume needs a training checkpoint: {_GIVE_A_RUN}") from None
    if "config_yaml" not in arrays or "ckpt_W" not in arrays:
        what = "a model file, not a training checkpoint" if "W" in arrays else "not a training checkpoint"
        sibling = p.with_name("checkpoint.npz")
        todo = (f"resume from its run folder, which holds checkpoint.npz: --resume {p.parent}"
                if sibling != p and sibling.is_file() else _GIVE_A_RUN)
        raise UsageError(f"--resume {p}: {what}; {todo}")
    try:
        raw = yaml.safe_load(str(arrays["config_yaml"]))
        cfg = from_dict(raw)
    except (yaml.YAMLError, ConfigError) as e:
        raise ModelFileError(f"{p}: the stored config is not valid: {e}") from None
    fixed = [k for k in overrides or {} if k.startswith(RESUME_FIXED)]
    if fixed:
        raise UsageError(f"--resume continues the run {p} holds; --set {fixed[0]} would make it another run "
                         f"(another model, rows or minibatches): start one with --config "
                         f"{p.parent / 'config.yaml'} --set {fixed[0]}=...")
    if overrides:
        cfg = with_values(cfg, overrides, source="--set")
    return cfg, arrays


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
    o, n = cfg.optimizer, len(splits.y_train)
    if o.method == "sgd" and o.batch_size > n:
        warnings.warn(f"optimizer.batch_size {o.batch_size} is more than the {n} training rows: every step takes "
                      "all of them (full-batch gradient descent)", LinclfWarning, stacklevel=2)

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
            for message in outcome_warnings(metrics, result.state.history, len(splits.classes)):
                warnings.warn(message, LinclfWarning, stacklevel=2)
            model.save(out_dir / "model.npz")
            write_text_atomic(out_dir / "history.csv", history_csv(result.state.history))
            write_json_atomic(out_dir / "metrics.json", metrics, indent=2)
            return RunResult(model=model, metrics=metrics, out_dir=out_dir, result=result)
        except KeyboardInterrupt:
            todo = (f"`linclf train --resume {out_dir}` scores and saves it" if cfg.optimizer.method in ("sgd", "gd")
                    else "train again to score and save it")
            raise Interrupted(f"interrupted after training, while scoring and saving the model; {todo}") from None


def outcome_warnings(metrics: dict, history: list[dict], num_classes: int) -> list[str]:
    """What looks wrong with a run that finished: accuracy at chance level, a loss that rose.

    Chance level: the validation accuracy (training accuracy without a validation split) is
    within three standard errors of 1/C for that many images.
    """
    out = []
    split_name, acc, n = ("val", metrics["val_accuracy"], metrics["num_val"])
    if acc is None:
        split_name, acc, n = "train", metrics["train_accuracy"], metrics["num_train"]
    chance = 1.0 / num_classes
    if n and acc <= chance + 3 * math.sqrt(chance * (1 - chance) / n):
        out.append(f"the final {split_name} accuracy {acc:.4f} is at chance level (1/{num_classes} = {chance:.2f} "
                   f"on {n} images): the model learned nothing; check optimizer.lr (too high or too low), "
                   "model.reg (too high: it holds W at 0), optimizer.iterations and the data")
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
        return Interrupted(f"{e}; checkpoint saved to {ckpt}; continue with `linclf train --resume {out_dir}`")
    if isinstance(e, LinclfError):
        if not saved:
            what = f"the weights were no longer finite, so no checkpoint; the history so far is in {out_dir}"
        elif saved["reason"] == "periodic":
            what = f"the last periodic checkpoint is kept in {ckpt}"
        else:
            what = f"the state at the failure is kept in {ckpt}"
        return type(e)(f"{e}; {what} (`linclf plot {out_dir}` shows the run so far)")
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
    l2 = (f"; with plain SGD the L2 term alone grows W when optimizer.lr x model.reg > 1 (here {lr * reg:g}), so "
          f"keep optimizer.lr below {1 / reg:.3g} or lower model.reg" if l2_diverges(update, lr, reg) else "")
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


def run_features(cfg: Config, *, data_dir: str | os.PathLike | None = None, progress: bool = False,
                 quiet: bool = True, workers: int | None = None) -> dict:
    """Fit the config's extractor and write every split's features into the cache (with
    ``model.flip_average``, those of the val and test images' mirrors too); a summary dict.

    ``workers``: the extractor's threads (None: $LINCLF_WORKERS, else the usable CPUs).

    ``{"kind", "cache", "splits": {name: [rows, features]}, "seconds"}``. For
    ``kind: npz`` the feature file is only validated (there is nothing to build).
    """
    t = time.perf_counter()
    kind = cfg.features.kind
    if kind == "pixels":
        raise UsageError("features.kind is pixels: there are no features to build; set features.kind "
                         "(kmeans, hog_color), e.g. --config configs/kmeans.yaml")
    if kind in LEARNED and not cfg.features.cache:
        raise UsageError("features.cache is false, so nothing built would be kept; drop --set features.cache=false")
    data = load_data(cfg, data_dir, quiet=quiet)
    splits = make_splits(cfg, data)
    if kind in LEARNED:
        images = splits
        splits, extractor = featurize(cfg, splits, data_dir, progress=progress, workers=workers)
        if cfg.model.flip_average:                  # the mirrors of val and test, which train then scores
            mirror_rows(cfg, images, ("val", "test"), data_dir, extractor=extractor, progress=progress,
                        workers=workers)
    from .featurize import cache_root

    shapes = {name: list(getattr(splits, f"X_{name}").shape) for name in ("train", "val", "test")}
    where = str(cache_root(cfg, data_dir)) if kind in LEARNED else str(cfg.features.path)
    return {"kind": kind, "cache": where, "splits": shapes, "seconds": round(time.perf_counter() - t, 3)}


def model_config(model: LinearClassifier, source: str | os.PathLike) -> Config:
    """The resolved config a model file stores; ModelFileError if it is not valid.

    A model without one (an estimator's ``to_model()``) was trained on rows we do not know: its config
    carves no validation split, so train and test are the whole splits of the data.
    """
    try:
        return from_dict(yaml.safe_load(model.config_yaml) or {"data": {"num_val": 0}})
    except (yaml.YAMLError, ConfigError) as e:
        raise ModelFileError(f"{os.fspath(source)}: the stored config is not valid: {e}") from None


def feature_file_stamp(path: str | os.PathLike) -> dict:
    """What tells a feature file apart from a later version of it: its size and modification time."""
    st = os.stat(os.path.expanduser(os.fspath(path)))
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def run_eval(model_path: str | os.PathLike, split_name: str = "test", *, data_dir: str | os.PathLike | None = None,
             archive: str | os.PathLike | None = None, quiet: bool = True,
             progress: bool = False, workers: int | None = None) -> tuple[LinearClassifier, Evaluation]:
    """Evaluate a saved model on the train / val / test split its own config defines.

    A model on learned features extracts them with its stored extractor (through
    the feature cache, so features built by ``train`` are reused) on ``workers``
    threads (None: $LINCLF_WORKERS, else the usable CPUs).
    """
    model = LinearClassifier.load(model_path)
    extractor = model_extractor(model, os.fspath(model_path))
    cfg = model_config(model, model_path)
    if not model.config_yaml.strip() and model.in_dim != NUM_PIXELS:      # an estimator's to_model()
        raise UsageError(f"{model_path} takes rows of {model.in_dim} values, not CIFAR-10's {NUM_PIXELS} pixels, and "
                         "has no config that makes them (an estimator's to_model()?); score it in Python: "
                         "LinearClassifier.load(PATH).predict(X) on your rows")
    if cfg.features.kind == "npz" and (data_dir is not None or archive is not None):
        warnings.warn(f"{'--archive' if data_dir is None else '--data-dir'} is not used: this model's rows come "
                      f"from its feature file, features.path {cfg.features.path}", LinclfWarning, stacklevel=2)
    if archive is not None:
        cfg = with_values(cfg, {"data.archive": os.fspath(archive)})
    data = load_data(cfg, data_dir, quiet=quiet)
    stamp = model.metrics.get("feature_file")
    if cfg.features.kind == "npz" and stamp and stamp != feature_file_stamp(cfg.features.path):
        warnings.warn(f"features.path {cfg.features.path} changed since {model_path} was trained (its size or time "
                      "differs): the scores are of the file as it is now", LinclfWarning, stacklevel=2)
    if len(data.classes) != model.num_classes:
        raise DataError(f"{model_path} scores {model.num_classes} classes, the data has {len(data.classes)}")
    if tuple(data.classes) != tuple(model.classes):
        unnamed = model.classes == tuple(str(i) for i in range(model.num_classes))    # to_model() without names
        raise DataError(f"{model_path} was trained on classes {list(model.classes)}, the data has "
                        f"{list(data.classes)}" + ("; save it from Python with to_model(class_names=data.classes)"
                                                   if unnamed else ""))
    if extractor is None and data.X_train.shape[1] != model.in_dim:
        raise DataError(f"{model_path} expects rows of {model.in_dim} values (its preprocessing), "
                        f"the data has {data.X_train.shape[1]}")
    splits = make_splits(cfg, data, mirrors=split_name == "train")
    images = splits
    if extractor is not None:
        if cfg.features.kind != model.features_kind:
            raise ModelFileError(f"{model_path}: its extractor is {model.features_kind} but its stored config says "
                                 f"features.kind {cfg.features.kind}; the file is inconsistent, retrain the model")
        splits, _ = featurize(cfg, splits, data_dir, extractor=extractor, progress=progress, only=(split_name,),
                              workers=workers)
    X, y = {"train": (splits.X_train, splits.y_train), "val": (splits.X_val, splits.y_val),
            "test": (splits.X_test, splits.y_test)}[split_name]
    if len(y) == 0:
        raise UsageError(f"the {split_name} split of this model's config is empty")
    X_mirror = (mirror_rows(cfg, images, (split_name,), data_dir, extractor=extractor, progress=progress,
                            workers=workers)[split_name] if cfg.model.flip_average else None)
    return model, evaluate_predictions(y, model.predict(X, X_mirror), model.num_classes)


def gradcheck_data(cfg: Config, *, synthetic: bool, batch: int, data_dir: str | os.PathLike | None = None,
                   quiet: bool = True, workers: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """float64 rows X (batch, D) (the bias column last with preprocess.bias), labels y (batch,), and C for a gradient check.

    Real data: ``batch`` random training rows as the classifier of the config
    sees them (``featurize.training_rows``: pixels, the feature file's rows, or
    k-means / HOG features built through the feature cache as ``train`` builds
    them), through the preprocessing ``train`` fits. Synthetic: standard-normal
    rows of the same width (``featurize.row_width``), 10 classes, so the check
    runs anywhere. ``workers``: the feature extractor's threads (None: $LINCLF_WORKERS, else the usable CPUs).
    """
    rng = rng_stream(cfg.seed, "gradcheck")
    if synthetic:
        C, P = 10, row_width(cfg)
        X = rng.standard_normal((batch, P))
        y = rng.integers(0, C, batch)
        if cfg.preprocess.bias:
            X = np.hstack([X, np.ones((batch, 1))])
        return X, y, C
    data = load_data(cfg, data_dir, quiet=quiet)
    splits = make_splits(cfg, data)
    if batch > len(splits.y_train):
        raise ConfigError(f"--batch {batch} is more than the {len(splits.y_train)} training rows")
    X_train, prep = training_rows(cfg, splits, data_dir, progress=not quiet, workers=workers)
    idx = np.sort(rng.choice(len(splits.y_train), size=batch, replace=False))
    return prep.transform(X_train[idx], np.float64), splits.y_train[idx], len(splits.classes)


def run_gradcheck(cfg: Config, *, synthetic: bool = False, batch: int = 100, checks: int = 20, h: float = 1e-5,
                  method: str = "centered", threshold: float | None = None,
                  data_dir: str | os.PathLike | None = None, quiet: bool = True,
                  workers: int | None = None) -> dict:
    """Check the configured loss's analytic gradient at the configured initial W, in float64.

    Returns ``gradcheck.check_loss``'s result (plain dicts) plus ``init_loss``
    (the data loss at W) and ``expected_init_loss`` (``losses.initial_loss``: what a
    small W starts near), where the data came from, the
    features kind and ``dim``, the width D of the rows checked (bias included).
    """
    from ..core.gradcheck import as_plain, check_loss

    X, y, C = gradcheck_data(cfg, synthetic=synthetic, batch=batch, data_dir=data_dir, quiet=quiet,
                             workers=workers)
    m = cfg.model
    W = rng_stream(cfg.seed, "init").standard_normal((C, X.shape[1])) * m.init_scale
    if np.any(W + h == W) or np.any(W - h == W):
        raise UsageError(f"--h {h:g} is below the spacing of W's float64 values (up to {np.abs(W).max():.3g} at "
                         f"model.init_scale {m.init_scale:g}): W + h rounds to W; use a larger --h, e.g. 1e-5")
    result = as_plain(check_loss(W, X, y, loss=m.loss, delta=m.delta, reg=m.reg,
                                 reg_bias=m.reg_bias or not cfg.preprocess.bias,     # no bias column: all weights
                                 checks=checks, h=h, method=method, rng=rng_stream(cfg.seed, "gradcheck"),
                                 threshold=threshold))
    expected = initial_loss(m.loss, C, m.delta)
    data = "synthetic" if synthetic else "feature file" if cfg.features.kind == "npz" else "cifar-10"
    return {**result, "init_loss": result["values"]["data"], "expected_init_loss": expected,
            "data": data, "features": cfg.features.kind, "dim": int(X.shape[1]), "batch": batch,
            "init_scale": m.init_scale}

"""Evaluation: accuracy, per-class accuracy and the confusion matrix of predictions, and of a saved model on a split
of its own config (``run_eval``)."""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import yaml

from ..config import Config, from_dict, with_values
from ..core.model import LinearClassifier
from ..data.arrays import NUM_PIXELS
from ..errors import ConfigError, DataError, LinclfWarning, ModelFileError, UsageError
from .featurize import featurize, mirror_rows, model_extractor
from .run_data import load_data, make_splits

__all__ = ["Evaluation", "confusion_matrix", "evaluate_predictions", "at_chance_level", "model_config",
           "feature_file_stamp", "run_eval"]


def at_chance_level(accuracy: float, n: int, num_classes: int) -> bool:
    """Whether ``accuracy`` on ``n`` rows is within three standard errors of guessing (1 / num_classes).

    False when n rows are too few to tell any accuracy from guessing (even 1.0 would be within them).
    """
    chance = 1.0 / num_classes
    bound = chance + 3 * math.sqrt(chance * (1 - chance) / n) if n else 1.0
    return bound < 1 and accuracy <= bound


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Evaluation:
    """accuracy (fraction), per_class (C,) fractions (NaN for a class with no examples), confusion (C, C)."""

    accuracy: float
    per_class: np.ndarray
    confusion: np.ndarray
    count: int

    def to_dict(self, classes: tuple[str, ...] | list[str]) -> dict:
        """JSON-ready: accuracy, count, per-class accuracy by name, the confusion matrix as lists."""
        return {
            "accuracy": self.accuracy,
            "count": self.count,
            "per_class_accuracy": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, self.per_class)},
            "confusion_matrix": self.confusion.tolist(),
            "classes": list(classes),
        }


def evaluate_predictions(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Evaluation:
    """Score predictions y_pred (N,) against labels y_true (N,) over ``num_classes`` classes."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    n = int(support.sum())
    acc = float(np.trace(cm) / n) if n else float("nan")
    return Evaluation(accuracy=acc, per_class=per_class, confusion=cm, count=n)


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

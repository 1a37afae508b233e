"""Accuracy, per-class accuracy and the confusion matrix of predictions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Evaluation", "confusion_matrix", "evaluate_predictions"]


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

"""A training history as numbers: history.csv rows read back, (x, y) series of them, a smoothed line.

A history row is a dict of floats (None for an empty cell) with ``step`` and
whatever a run logged (``loss``, ``epoch``, ``train_accuracy``,
``val_accuracy``); a run folder keeps them in history.csv, a sweep in
results.json per trial. ``series`` picks the rows where two keys are finite
numbers; ``smooth`` is the bias-corrected moving average drawn over a noisy loss.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .figure import PlotError

__all__ = ["read_history", "finite", "series", "smooth"]


def _number(text: str | None) -> float | None:
    """A CSV cell as a float; None for an empty cell, non-numeric text or NaN."""
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def read_history(path: str | os.PathLike) -> list[dict]:
    """The rows of a run's history.csv as dicts of floats (None for empty cells)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "step" not in reader.fieldnames:
            raise PlotError(f"{path} is not a linclf history (no 'step' column); was it written by `linclf train`?")
        return [{k: _number(v) for k, v in row.items() if k is not None} for row in reader]


def finite(value: Any) -> bool:
    """True for a real, finite number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def series(history: Iterable[dict], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float arrays (n,) of the rows where both keys hold finite numbers."""
    pairs = [(float(r[x]), float(r[y])) for r in history if finite(r.get(x)) and finite(r.get(y))]
    if not pairs:
        return np.empty(0), np.empty(0)
    xs, ys = np.array(pairs).T
    return xs, ys


def smooth(values: Sequence[float] | np.ndarray, beta: float | None = None) -> np.ndarray:
    """Bias-corrected exponential moving average (n,) of values (n,).

    ``beta`` defaults to ``1 - 10/n`` clipped to [0, 0.98]: an averaging window
    of about a tenth of the points, none for 10 points or fewer.
    """
    v = np.asarray(values, dtype=np.float64)
    if beta is None:
        beta = float(np.clip(1.0 - 10.0 / max(len(v), 1), 0.0, 0.98))
    out = np.empty_like(v)
    avg = 0.0
    for i, x in enumerate(v):
        avg = beta * avg + (1.0 - beta) * x
        out[i] = avg / (1.0 - beta ** (i + 1)) if beta > 0 else x
    return out

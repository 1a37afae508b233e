"""Checks of a feature extractor's numeric parameters: an integer in a range, a finite number.

The extractors check their parameters in ``fit`` / ``transform`` /
``check_params`` (the scikit-learn protocol): each check returns the plain
Python value or raises a one-line ValueError that starts with the
parameter's name and says what was expected and what came.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_int", "check_float"]


def check_int(name: str, value: Any, lo: int, hi: int | None = None, why: str = "") -> int:
    """``value`` as an int in [lo, hi] (no upper bound if hi is None), else ValueError naming ``name`` and the range.

    ``why`` is appended to the expected range, e.g. " (a patch must fit a 32x32 image)".
    A bool is not an integer here.
    """
    expected = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected {expected}{why}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name}: expected {expected}{why}, got {value}")
    return int(value)


def check_float(name: str, value: Any, lo: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite float (>= lo, or > lo if strict), else ValueError naming ``name``."""
    bound = "" if lo is None else f" {'>' if strict else '>='} {lo:g}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a finite number{bound}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (lo is not None and (v <= lo if strict else v < lo)):
        raise ValueError(f"{name}: expected a finite number{bound}, got {value!r}")
    return v

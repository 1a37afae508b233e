"""Checks of a feature extractor's inputs: its numeric parameters, and the image rows it reads.

The extractors check their parameters in ``fit`` / ``transform`` /
``check_params`` (the scikit-learn protocol): each check returns the plain
Python value or raises a one-line ValueError that starts with the
parameter's name and says what was expected and what came.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..errors import LinclfWarning
from ..estimator_base import refuse_sparse

__all__ = ["check_int", "check_float", "check_pixel_rows", "check_out", "ROW_VALUES"]

ROW_VALUES = 3 * 32 * 32          # a CIFAR-10 row: the R, G and B planes of a 32x32 image


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


def check_pixel_rows(X: Any, name: str = "X") -> np.ndarray:
    """X as (N, 3072) rows of pixel values 0-255 (uint8, other integers in that range, or real: a memmap stays
    one), else ValueError (TypeError for a sparse matrix).

    Real rows must be finite; rows that all lie in [0, 1] get a warning: the extractors' constants (the
    patch normalisation's norm_eps, the HOG and hue bins) are for pixels 0-255.
    """
    refuse_sparse(X, name)
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    if X.ndim != 2 or X.shape[1] != ROW_VALUES:
        raise ValueError(f"{name}: expected CIFAR rows of shape (N, {ROW_VALUES}), got shape {X.shape}")
    if X.dtype.kind not in "uif":
        raise ValueError(f"{name}: expected uint8 (or real) pixels, got dtype {X.dtype}")
    if X.dtype.kind in "iu" and X.dtype != np.uint8 and X.size:
        lo, hi = int(np.min(X)), int(np.max(X))
        if lo < 0 or hi > 255:
            raise ValueError(f"{name}: pixels must be 0-255, got values from {lo} to {hi}")
    if X.dtype.kind == "f" and X.size:
        lo, hi = float(np.min(X)), float(np.max(X))       # NaN propagates into both
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name}: pixels must be finite, got NaN or infinity")
        if 0 <= lo and hi <= 1:
            warnings.warn(f"{name} holds pixels in [0, 1]; the extractors expect 0-255 (e.g. "
                          "(X * 255).astype(np.uint8)), so these features will be poor", LinclfWarning, stacklevel=3)
    return X


def check_out(out: Any, N: int, D: int) -> np.ndarray:
    """``out``, the array an extractor writes the features of N rows into: (N, D) of a float dtype, else ValueError
    (an integer array would silently truncate them)."""
    if not isinstance(out, np.ndarray) or out.shape != (N, D) or out.dtype.kind != "f":
        shape = getattr(out, "shape", None)
        dtype = getattr(out, "dtype", type(out).__name__)
        raise ValueError(f"out: expected a float array of shape ({N}, {D}), got shape {shape} dtype {dtype}")
    return out

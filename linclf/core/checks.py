"""Argument checks the math modules share: class labels, the floating dtype of the data, a loss's divisor and
its hyperparameters."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["float_dtype", "check_labels", "check_count", "check_reg", "check_delta"]


def float_dtype(*arrays: np.ndarray) -> np.dtype:
    """The first floating dtype among ``arrays`` (float64 if none is floating)."""
    for a in arrays:
        if a.dtype.kind == "f":
            return a.dtype
    return np.dtype(np.float64)


def check_labels(y: np.ndarray, N: int, C: int) -> np.ndarray:
    """y as an (N,) integer array with values in [0, C); raises ValueError otherwise."""
    y = np.asarray(y)
    if y.shape != (N,):
        raise ValueError(f"y must have shape ({N},) to match the {N} rows of X, got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    if N and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"labels must be in [0, {C}), got values in [{y.min()}, {y.max()}]")
    return y


def check_count(count: int | None, N: int) -> int:
    """The divisor of a data loss over N rows: ``count`` or N; must be positive."""
    count = N if count is None else int(count)
    if count <= 0:
        raise ValueError(f"the loss averages over count={count} examples; it must be positive (N={N})")
    return count


def check_reg(reg: float) -> float:
    """The L2 strength as a float: finite and >= 0 (a negative one rewards large weights without bound)."""
    value = float(reg)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
    return value


def check_delta(delta: float) -> float:
    """The hinges' margin as a float: finite and > 0 (at 0, W = 0 already has zero loss)."""
    value = float(delta)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
    return value

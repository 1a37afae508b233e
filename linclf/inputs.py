"""Checks of what a caller of the scikit-learn style estimators passes: X, y, labels, random_state.

Each check returns the input in the form the estimators train on, or raises
what scikit-learn would raise, worded as scikit-learn words it (so code and
tests written against scikit-learn estimators catch and match them): a
ValueError (a TypeError for sparse X) that starts with the name of the
estimator and method called (``who``). X comes back as a 2-D numeric array
(N, P), uint8 and float rows not copied; y as a 1-D array (N,) of class labels.
A column-vector y is flattened with a ``ColumnVectorWarning``, raised as a
subclass of scikit-learn's DataConversionWarning too when scikit-learn is
loaded (``estimator_base.compatible``; scikit-learn is never imported here).
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from .config import schema_keys
from .errors import LinclfWarning
from .estimator_base import compatible, refuse_sparse

__all__ = ["ColumnVectorWarning", "plain", "check_X", "feature_names", "check_y", "encode_labels",
           "label_indices", "seed_of"]

_SEED_MAX = int(schema_keys()["seed"].hi)   # the largest config seed
_FINITE_BLOCK = 4096             # rows checked for NaN / inf at a time (a bounded temporary)


class ColumnVectorWarning(LinclfWarning):
    """y came as a column (N, 1) and was flattened (scikit-learn's DataConversionWarning)."""


def plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar the config schema expects; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def check_X(X: Any, who: str) -> np.ndarray:
    """X as a 2-D numeric array (N, P), N, P >= 1, finite; uint8 and float rows are not copied."""
    if X is None:
        raise ValueError(f"{who}: X is None; expected a 2-D array (n_samples, n_features)")
    refuse_sparse(X, who)
    A = np.asarray(X)
    if A.dtype.kind in "OUS":
        try:
            A = A.astype(np.float64)
        except ValueError as e:
            raise ValueError(f"{who}: X must be numeric: {e}") from None
    if A.dtype.kind == "c":
        raise ValueError(f"{who}: Complex data not supported; X has dtype {A.dtype}")
    if A.dtype.kind not in "biuf":
        raise ValueError(f"{who}: X must be numeric, got dtype {A.dtype}")
    if A.ndim > 2:                               # images: rows are CIFAR-10's channel-first bytes
        raise ValueError(f"{who}: expected a 2D array (n_samples, n_features), got an array of shape {A.shape}; "
                         "flatten images into rows with X.reshape(len(X), -1), after X.transpose(0, 3, 1, 2) "
                         "for (N, 32, 32, 3) images (a row is CIFAR-10's channel-first 3 x 32 x 32)")
    if A.ndim != 2:
        raise ValueError(f"{who}: expected a 2D array (n_samples, n_features), got an array of shape {A.shape}; "
                         "Reshape your data either using array.reshape(-1, 1) if your data has a single feature "
                         "or array.reshape(1, -1) if it contains a single sample")
    for axis, what in ((0, "sample"), (1, "feature")):
        if A.shape[axis] < 1:
            raise ValueError(f"{who}: Found array with 0 {what}(s) (shape={A.shape}) while a minimum of 1 is required.")
    if A.dtype.kind == "b" or A.dtype == np.float16:
        A = A.astype(np.uint8 if A.dtype.kind == "b" else np.float32)
    if A.dtype.kind == "f":
        for start in range(0, len(A), _FINITE_BLOCK):
            finite = np.isfinite(A[start:start + _FINITE_BLOCK]).all(axis=1)
            if not finite.all():
                row = start + int(np.argmin(finite))
                raise ValueError(f"{who}: Input X contains NaN or infinity (first in row {row}); "
                                 "remove or impute those values")
    return A


def feature_names(X: Any) -> np.ndarray | None:
    """The column names (P,) of a DataFrame-like X when all are strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(list(columns), dtype=object)
    return names if len(names) and all(isinstance(n, str) for n in names) else None


def check_y(y: Any, n: int, who: str) -> np.ndarray:
    """y as a 1-D array (n,) of class labels; continuous or non-finite float targets are refused."""
    if y is None:
        raise ValueError(f"{who} requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(f"A column-vector y was passed when a 1d array was expected ({who}); flattened it to "
                      f"shape ({len(y)},) (use y.ravel())", compatible(ColumnVectorWarning, "DataConversionWarning"),
                      stacklevel=3)
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{who}: y should be a 1d array of labels (n_samples,), got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{who}: Found input variables with inconsistent numbers of samples: [{n}, {len(y)}] "
                         "(rows of X, labels in y)")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{who}: Input y contains NaN or infinity.")
        if not np.all(y == np.round(y)):
            raise ValueError(f"{who}: Unknown label type: continuous; a classifier needs class labels, "
                             "not real-valued targets")
    if y.dtype.kind == "c":
        raise ValueError(f"{who}: Unknown label type: complex")
    return y


def encode_labels(y: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    """(classes (C,) sorted unique labels, y_idx (N,) int64 indices into them)."""
    try:
        classes, y_idx = np.unique(y, return_inverse=True)
    except TypeError as e:
        raise ValueError(f"{who}: y mixes labels that cannot be sorted together ({e})") from None
    return classes, y_idx.astype(np.int64).reshape(-1)


def label_indices(y: np.ndarray, classes: np.ndarray, who: str) -> np.ndarray:
    """Indices (N,) int64 of labels y (N,) in the sorted classes (C,); a ValueError lists unknown labels."""
    idx = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    unknown = classes[idx] != y
    if np.any(unknown):
        raise ValueError(f"{who}: y holds labels not in classes_ {classes.tolist()}: "
                         f"{np.unique(y[unknown]).tolist()[:5]}")
    return idx.astype(np.int64)


def seed_of(random_state: Any, who: str) -> int:
    """The config seed of ``random_state``: an int >= 0, None (fresh), or a numpy Generator / RandomState."""
    if random_state is None:
        return int(np.random.default_rng().integers(_SEED_MAX, endpoint=True))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(_SEED_MAX, endpoint=True))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, _SEED_MAX, dtype=np.int64))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    raise ValueError(f"{who}: random_state must be an integer >= 0, None or a numpy Generator / RandomState, "
                     f"got {random_state!r}")

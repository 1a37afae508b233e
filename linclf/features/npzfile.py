"""Precomputed features a user brings (a linear probe of another network's embeddings).

The file is an ``.npz`` with ``X_train`` (N, D), ``y_train`` (N,), ``X_test``
(M, D), ``y_test`` (M,) and optionally ``classes`` (C names). It is read with
``allow_pickle=False`` and validated: 2-D float (or integer) rows of the same
width, integer labels in [0, C), finite values. X arrays come back float16 or
float32 (float64 and integers are converted to float32). Classes without a
training row are allowed, with a warning: labels counted from 1 leave class 0
empty. The training rows come back in a fixed random order (files are often
sorted by class; the validation split is cut from their end).
"""
from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError, LinclfWarning
from ..fsutil import not_npz

__all__ = ["FeatureFile", "load_feature_file", "REQUIRED"]

REQUIRED = ("X_train", "y_train", "X_test", "y_test")
_BLOCK = 4096
_REMAP = ("number them with names, y = np.unique(np.concatenate([y_train, y_test]), return_inverse=True) and split "
          "y back into y_train and y_test")


@dataclass(frozen=True)
class FeatureFile:
    """Rows X_train (N, D), X_test (M, D) float, labels int64, class names (as ``CIFAR10``)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


def _finite(X: np.ndarray) -> bool:
    return all(np.isfinite(X[i:i + _BLOCK]).all() for i in range(0, len(X), _BLOCK))


def load_feature_file(path: str | os.PathLike) -> FeatureFile:
    """Read and validate a feature file (``~`` expanded); DataError says which key is wrong and how."""
    p = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(p):              # a path the user gave that leads nowhere: a usage error, exit 2
        where = "" if os.path.isabs(p) else f" (relative to the working directory {os.getcwd()})"
        raise ConfigError(f"features.path: {p} is a folder, not an .npz file" if os.path.isdir(p)
                          else f"features.path: no feature file at {p}{where}")
    holds = f"a feature file is an .npz holding {', '.join(REQUIRED)} (and optionally classes)"
    try:
        why = not_npz(p)
        if why is not None:
            raise DataError(f"features.path: {p} is not an .npz {why}; {holds}")
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED if k not in npz.files]
            if missing:
                raise DataError(f"{p}: missing {', '.join(missing)}; {holds}")
            arrays = {k: npz[k] for k in (*REQUIRED, "classes") if k in npz.files}
    except DataError:
        raise
    except ValueError as e:
        why = "it holds pickled objects, which linclf never loads" if "pickle" in str(e) else str(e)
        raise DataError(f"{p} is not a usable feature file: {why}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, AttributeError) as e:
        raise DataError(f"{p} is not a readable .npz (truncated or corrupt: {e})") from None
    odd = next((k for k, v in arrays.items() if not isinstance(v, np.ndarray)), None)
    if odd is not None:                     # a zip member that is not an .npy comes back as bytes
        raise DataError(f"{p}: {odd} is not a NumPy array (.npy member); save the file with np.savez")
    return validate(arrays, p)


def validate(arrays: dict[str, np.ndarray], source: str) -> FeatureFile:
    """Check shapes, dtypes, finiteness and label range of a feature file's arrays."""
    X = {}
    for name in ("X_train", "X_test"):
        a = arrays[name]
        if a.ndim != 2 or a.dtype.kind not in "fiu" or min(a.shape) < 1:
            raise DataError(f"{source}: {name} must be a non-empty 2-D numeric array (N, D), got {a.dtype} {a.shape}")
        if not _finite(a):
            raise DataError(f"{source}: {name} holds NaN or infinite values")
        if a.dtype not in (np.float16, np.float32):
            with np.errstate(over="ignore"):
                a = a.astype(np.float32)
            if not _finite(a):
                raise DataError(f"{source}: {name} holds values beyond float32's range (3.4e38), in which linclf "
                                "computes; scale the features down")
        X[name] = a
    if X["X_train"].shape[1] != X["X_test"].shape[1]:
        raise DataError(f"{source}: X_train has {X['X_train'].shape[1]} columns, X_test {X['X_test'].shape[1]}")
    ys = {}
    for name, xname in (("y_train", "X_train"), ("y_test", "X_test")):
        y = arrays[name]
        if y.dtype.kind in "USO":
            raise DataError(f"{source}: {name} holds names ({y.dtype}), not class indices 0..C-1; {_REMAP}, and "
                            "save the names as classes")
        if y.dtype.kind not in "iu" or y.shape != (len(X[xname]),):
            raise DataError(f"{source}: {name} must be {len(X[xname])} integer labels (one per row of {xname}), "
                            f"got {y.dtype} {y.shape}")
        ys[name] = y.astype(np.int64)
    top = int(max(ys["y_train"].max(), ys["y_test"].max()))
    if min(ys["y_train"].min(), ys["y_test"].min()) < 0:
        raise DataError(f"{source}: labels must be >= 0")
    if "classes" in arrays:
        c = arrays["classes"]
        if c.ndim != 1 or c.dtype.kind != "U" or len(c) < 2:
            raise DataError(f"{source}: classes must be a 1-D array of at least 2 names (str), got {c.dtype} {c.shape}")
        classes = tuple(str(v) for v in c)
        twice = next((name for i, name in enumerate(classes) if name in classes[:i]), None)
        if twice is not None:
            raise DataError(f"{source}: classes names {twice!r} twice; each class needs a name of its own")
        if top >= len(classes):
            raise DataError(f"{source}: label {top} is out of range for the {len(classes)} classes")
    else:
        if top < 1:
            raise DataError(f"{source}: the labels name a single class; a classifier needs at least 2")
        seen = len(np.union1d(ys["y_train"], ys["y_test"]))
        if top + 1 > 2 * seen:              # ids, not indices: 0..top would be mostly empty classes
            raise DataError(f"{source}: the labels run up to {top} but take only {seen} values, and labels are "
                            f"class indices 0..C-1; {_REMAP}, and save the original labels as classes")
        classes = tuple(str(i) for i in range(top + 1))
    empty = np.flatnonzero(np.bincount(ys["y_train"], minlength=len(classes)) == 0)
    if len(empty):
        names = ", ".join(classes[i] for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
        warnings.warn(f"{source}: {len(empty)} of the {len(classes)} classes {'has' if len(empty) == 1 else 'have'} "
                      f"no training rows ({names}); labels are class indices counted from 0", LinclfWarning,
                      stacklevel=2)
    # Embedding dumps are often in class order, and the validation split is the training rows' last
    # data.num_val: the rows are put in one fixed random order (the same for every seed, so a sweep's
    # trials share their validation rows), as CIFAR-10's batches come.
    order = np.random.default_rng(0).permutation(len(ys["y_train"]))
    return FeatureFile(X["X_train"][order], ys["y_train"][order], X["X_test"], ys["y_test"], classes)

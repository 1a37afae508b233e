"""The train / validation / test split of CIFAR-10 and the horizontal mirror images (``data.flip``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .arrays import CIFAR10, NUM_PIXELS

__all__ = ["Splits", "split", "mirrored", "with_mirrors"]


@dataclass(frozen=True)
class Splits:
    """Train / validation / test rows (uint8, (N, 3072)) and labels (int64, (N,)); views where possible."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


def split(data: CIFAR10, num_train: int | None = None, num_val: int = 1000, num_test: int | None = None,
          num_dev: int = 0, *, rng: np.random.Generator | None = None) -> Splits:
    """Carve validation from the end of the training set, training from the start, test from the start.

    ``num_dev`` > 0 replaces the training split by a random subset of that size
    (drawn with ``rng``), for quick runs. Sizes the archive cannot supply are
    ConfigErrors naming the ``data.*`` key.
    """
    n_all = len(data.X_train)
    if num_val > n_all - 1:
        raise ConfigError(f"data.num_val: {num_val} leaves no training rows; the data holds "
                          f"{n_all} training rows, so at most {n_all - 1}")
    available = n_all - num_val
    if num_train is None:
        num_train = available
    elif num_train > available:
        raise ConfigError(f"data.num_train: {num_train} is more than the {available} training rows left "
                          f"after data.num_val={num_val} ({n_all} in the data)")
    n_test = len(data.X_test)
    if num_test is None:
        num_test = n_test
    elif num_test > n_test:
        raise ConfigError(f"data.num_test: {num_test} is more than the {n_test} test rows in the data")
    X_train, y_train = data.X_train[:num_train], data.y_train[:num_train]
    if num_dev:
        if num_dev > num_train:
            raise ConfigError(f"data.num_dev: {num_dev} is more than the {num_train} training images")
        if rng is None:
            raise ValueError("split(num_dev > 0) needs an rng")
        idx = np.sort(rng.choice(num_train, size=num_dev, replace=False))
        X_train, y_train = X_train[idx], y_train[idx]
    return Splits(X_train, y_train, data.X_train[available:], data.y_train[available:],
                  data.X_test[:num_test], data.y_test[:num_test], data.classes)


def mirrored(X: np.ndarray) -> np.ndarray:
    """The horizontal mirror images (N, 3072) of CIFAR rows X (N, 3072), channel-major 32x32 planes, same dtype."""
    if X.ndim != 2 or X.shape[1] != NUM_PIXELS:
        raise ValueError(f"mirrored: expected CIFAR rows of shape (N, {NUM_PIXELS}), got {X.shape}")
    planes = np.asarray(X).reshape(len(X), 3, 32, 32)
    return np.ascontiguousarray(planes[..., ::-1]).reshape(len(X), NUM_PIXELS)


def with_mirrors(splits: Splits) -> Splits:
    """``splits`` whose training split is followed by its mirror images (2N rows, labels repeated).

    Flip augmentation: a mirrored photo is as likely as the original, so the
    classifier sees twice the training images; validation and test are untouched.
    """
    X = splits.X_train
    return dataclasses.replace(splits, X_train=np.concatenate([X, mirrored(X)]),
                               y_train=np.concatenate([splits.y_train, splits.y_train]))

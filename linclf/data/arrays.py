"""CIFAR-10 in memory: uint8 pixel rows in the CIFAR order, int64 labels, the class names."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import IMAGE_BYTES

__all__ = ["NUM_PIXELS", "CIFAR10"]

NUM_PIXELS = IMAGE_BYTES      # values in a row of pixels


@dataclass(frozen=True)
class CIFAR10:
    """The whole dataset as uint8 pixel rows in the CIFAR order (1024 R, 1024 G, 1024 B).

    X_train (N_train, 3072) uint8, y_train (N_train,) int64, X_test (N_test, 3072)
    uint8, y_test (N_test,) int64, classes: the 10 names from the archive's meta file.
    Images loaded from the cache are read-only memory maps; labels are read into memory.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

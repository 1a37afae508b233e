"""The feature extractors by name, and rebuilding one from the arrays a model file stores."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LEARNED", "extractor_class", "extractor_from_arrays"]

LEARNED = ("kmeans", "hog_color")             # kinds that turn images into rows (and are stored with a model)


def extractor_class(kind: str) -> type:
    """The estimator class of an image feature kind (imported on first use)."""
    if kind == "kmeans":
        from .kmeans import KMeansFeatures

        return KMeansFeatures
    if kind == "hog_color":
        from .hog_color import HogColorFeatures

        return HogColorFeatures
    raise ValueError(f"features kind {kind!r} has no image extractor (expected one of {', '.join(LEARNED)})")


def extractor_from_arrays(kind: str, arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild a fitted extractor of ``kind`` from its ``to_arrays``; ValueError naming the bad key."""
    return extractor_class(kind).from_arrays(dict(arrays))

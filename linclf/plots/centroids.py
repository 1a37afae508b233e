"""What k-means features learned: the centroids as colour patches in one grid (``centroids.png``).

A run on k-means features (``features.kmeans``) has no pixel templates; its
centroids live in whitened patch space and are drawn un-whitened, as the
patch each stands for, each min-max normalised, at most ``CENTROIDS_SHOWN`` of them.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .figure import NothingToPlot, new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["CENTROIDS_SHOWN", "centroid_images", "centroids_figure", "kmeans_centroids"]

CENTROIDS_SHOWN = 400                      # a 20x20 grid stays legible at the figure's size


def centroid_images(centroids: np.ndarray, patch: int, whiten: np.ndarray | None = None,
                    mean: np.ndarray | None = None, limit: int | None = None) -> np.ndarray:
    """Centroids (k, 3 * patch * patch) -> colour patches (k, patch, patch, 3) float in [0, 1].

    A centroid lives in whitened patch space ``z = (x - mean) @ whiten``; it is
    drawn as ``x = z @ pinv(whiten) + mean`` (the patch it stands for), each
    min-max normalised to [0, 1]. Vectors are channel-major (3, patch, patch),
    the order of CIFAR rows. NothingToPlot unless the shapes fit.
    """
    C = np.asarray(centroids, dtype=np.float64)
    d = 3 * patch * patch
    if C.ndim != 2 or C.shape[1] != d or len(C) == 0:
        raise NothingToPlot(f"centroids of {patch}x{patch} colour patches need shape (k, {d}), got {C.shape}")
    if limit is not None:
        C = C[:limit]
    if whiten is not None:
        Wz = np.asarray(whiten, dtype=np.float64)
        if Wz.shape != (d, d):
            raise NothingToPlot(f"the whitening matrix has shape {Wz.shape}, expected {(d, d)}")
        C = C @ np.linalg.pinv(Wz)
    if mean is not None:
        C = C + np.asarray(mean, dtype=np.float64).reshape(1, d)
    P = C.reshape(len(C), 3, patch, patch).transpose(0, 2, 3, 1)
    lo = P.min(axis=(1, 2, 3), keepdims=True)
    span = P.max(axis=(1, 2, 3), keepdims=True) - lo
    return np.where(span > 0, (P - lo) / np.where(span > 0, span, 1.0), 0.5)


def centroids_figure(images: np.ndarray, of: int | None = None, *, subtitle: str = "") -> "Figure":
    """Colour patches (k, p, p, 3) in [0, 1] as one grid image (a 1-pixel gap between patches); ``of``: how
    many centroids the extractor has, when these are only the first k."""
    k, p = len(images), images.shape[1]
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    grid = np.ones((rows * (p + 1) + 1, cols * (p + 1) + 1, 3))
    r, c = np.divmod(np.arange(k), cols)
    ys = (r * (p + 1) + 1)[:, None] + np.arange(p)[None, :]        # (k, p)
    xs = (c * (p + 1) + 1)[:, None] + np.arange(p)[None, :]
    grid[ys[:, :, None], xs[:, None, :]] = images
    fig = new_figure("centroids.png")
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    shown = f"{k} of the {of}" if of is not None and of > k else f"{k}"
    fig.suptitle(f"{shown} k-means centroids (un-whitened, each normalised to [0, 1])"
                 + (f"\n{subtitle}" if subtitle else ""))
    return fig


def kmeans_centroids(model: Any) -> tuple[np.ndarray, int]:
    """The first CENTROIDS_SHOWN centroids of a k-means model's extractor as display patches, and how many it has."""
    from ..features.registry import extractor_from_arrays

    try:
        ex = extractor_from_arrays("kmeans", model.features_arrays)
    except (ValueError, TypeError, KeyError) as e:
        raise NothingToPlot(f"the model's k-means extractor is malformed: {e}") from None
    images = centroid_images(ex.centroids_, ex.patch, ex.whiten_, ex.whiten_mean_, limit=CENTROIDS_SHOWN)
    return images, len(ex.centroids_)

"""Square patches of CIFAR rows: the map of patch positions, views, random samples, normalisation.

A CIFAR row (3072,) is channel-major: the R plane, then G, then B, each
32x32 row-major. A patch vector (3 * patch * patch,) keeps that order:
channel, then patch row, then patch column.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["IMAGE", "CHANNELS", "map_size", "region_bounds", "patch_view", "sample_patches", "normalize_patches"]

IMAGE = 32       # image side in pixels
CHANNELS = 3


def map_size(patch: int, stride: int) -> int:
    """Patch positions along one axis of a 32x32 image: (32 - patch) // stride + 1."""
    return (IMAGE - patch) // stride + 1


def region_bounds(n: int, pool: int) -> np.ndarray:
    """(pool + 1,) start indices of ``pool`` runs splitting range(n) as evenly as possible (longer runs first)."""
    sizes = np.full(pool, n // pool, dtype=np.int64)
    sizes[: n % pool] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def patch_view(X: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """Every patch of rows X (B, 3072) as a strided view (B, m, m, 3, patch, patch), m = map_size(patch, stride)."""
    images = X.reshape(X.shape[0], CHANNELS, IMAGE, IMAGE)
    windows = np.lib.stride_tricks.sliding_window_view(images, (patch, patch), axis=(2, 3))  # (B, 3, r, r, p, p)
    windows = windows[:, :, ::stride, ::stride]
    return windows.transpose(0, 2, 3, 1, 4, 5)


def sample_patches(X: np.ndarray, n: int, patch: int, rng: np.random.Generator, dtype: np.dtype | type = np.float32,
                   chunk: int = 50_000, step: Callable[[int], None] | None = None) -> np.ndarray:
    """(n, 3 * patch * patch) patches at uniformly random images and positions of rows X (N, 3072).

    Draws the image index, then the row and column of the top-left corner
    (any of the 33 - patch positions), from ``rng``; ``step(count)`` is called
    after each chunk (a progress bar).
    """
    N = X.shape[0]
    r = IMAGE - patch + 1
    img = rng.integers(0, N, n)
    row = rng.integers(0, r, n)
    col = rng.integers(0, r, n)
    d = np.arange(patch)
    ch = np.arange(CHANNELS)[None, :, None, None] * (IMAGE * IMAGE)
    out = np.empty((n, CHANNELS * patch * patch), dtype=dtype)
    flat = X.reshape(N, -1)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        # pixel offsets inside a row: channel plane + (row + dy) * 32 + (col + dx), shape (b, 3, p, p)
        offs = ch + (row[s:e, None, None, None] + d[None, None, :, None]) * IMAGE \
            + (col[s:e, None, None, None] + d[None, None, None, :])
        out[s:e] = flat[img[s:e, None, None, None], offs].reshape(e - s, -1)
        if step is not None:
            step(e - s)
    return out


def normalize_patches(P: np.ndarray, eps: float) -> np.ndarray:
    """In place: each row of P (n, d) becomes (p - mean) / sqrt(var + eps), var with d - 1 (as Coates's code). Returns P."""
    d = P.shape[1]
    P -= P.mean(axis=1, keepdims=True)
    var = np.einsum("ij,ij->i", P, P) / (d - 1)         # d = 3 * patch * patch >= 3
    var += eps
    np.sqrt(var, out=var)
    np.reciprocal(var, out=var)
    P *= var[:, None].astype(P.dtype, copy=False)
    return P

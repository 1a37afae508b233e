"""Lloyd's k-means on rows in memory, blocked and threaded, with a result independent of the thread count.

Each iteration assigns every row to its nearest centroid with one augmented
product per block of rows and moves each centroid to the mean of its rows.
The k-means features (``kmeans``) run it on whitened patches.
"""
from __future__ import annotations

import math
import threading
from typing import Callable

import numpy as np

from ..threads import TaskPool

__all__ = ["lloyd", "spans"]


def spans(n: int, size: int) -> list[tuple[int, int]]:
    """[(start, stop)] runs of ``size`` covering range(n) (the last one may be shorter)."""
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def lloyd(Xa: np.ndarray, k: int, iterations: int, rng: np.random.Generator, pool: TaskPool,
          block: int = 1024, step: Callable[[int, float], None] | None = None) -> tuple[np.ndarray, float]:
    """Lloyd's k-means on rows Xa (n, d + 1) whose last column is 1; returns centroids (k, d) and the last inertia.

    Starts from ``k`` distinct rows drawn by ``rng``; each iteration assigns
    every row to its nearest centroid (argmax of x.c - ||c||^2 / 2, one
    augmented product per block) and moves each centroid to the mean of its
    rows; a centroid left without rows is re-seeded at a row drawn by ``rng``.
    Each block also sums its rows by cluster while they are in cache; the
    blocks' sums are added up in block order, so the result does not depend
    on the number of threads. ``step(iteration, inertia)`` (mean squared
    distance of the assignment) is called after each iteration.
    """
    n, d = Xa.shape[0], Xa.shape[1] - 1
    X = Xa[:, :d]
    dtype = Xa.dtype
    C = X[np.sort(rng.choice(n, k, replace=False))].copy()
    xx = np.einsum("ij,ij->i", X, X, dtype=np.float64)               # (n,)
    local = threading.local()
    blocks = spans(n, block)
    inertia = math.nan
    B = np.empty((d + 1, k), dtype=dtype)

    def assign(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        s, e = span
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty((block, k), dtype=dtype)
        S = buf[: e - s]
        np.matmul(Xa[s:e], B, out=S)                                 # x.c - ||c||^2 / 2, (b, k)
        lab = S.argmax(axis=1)
        best = S[np.arange(e - s), lab]
        part = float(np.sum(xx[s:e] - 2 * best.astype(np.float64)))  # ||x - c||^2 = ||x||^2 - 2 (x.c - ||c||^2/2)
        order = np.argsort(lab, kind="stable")
        ls = lab[order]
        starts = np.flatnonzero(np.concatenate([[True], ls[1:] != ls[:-1]]))
        sums = np.add.reduceat(X[s:e][order], starts, axis=0, dtype=np.float64)
        return ls[starts], sums, np.diff(np.append(starts, e - s)), part

    for it in range(iterations):
        B[:d] = C.T
        B[d] = -0.5 * np.einsum("ij,ij->i", C, C)
        total = np.zeros((k, d))
        counts = np.zeros(k, dtype=np.int64)
        parts: list[float] = []

        def add(span: tuple[int, int], r: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> None:
            labels, sums, count, part = r                            # labels are distinct within a block
            total[labels] += sums
            counts[labels] += count
            parts.append(part)

        pool.run(assign, blocks, add)
        inertia = math.fsum(parts) / n
        filled = counts > 0
        C[filled] = total[filled] / counts[filled, None]
        empty = np.flatnonzero(~filled)
        if empty.size:
            C[empty] = X[rng.choice(n, empty.size, replace=False)]
        if step is not None:
            step(it + 1, inertia)
    return C, inertia

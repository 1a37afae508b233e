"""The extraction work of the k-means features: pooled codes of a block of CIFAR rows against fitted centroids.

``PatchEncoder`` is built once per ``transform`` from the checked settings
and the fitted arrays; called on a block of images it writes their pooled
codes (the encoders and the pooling are described in ``kmeans``).

Speed: extraction is one product of every patch with every centroid; the
passes over its (patches, centroids) result cost as much as the product unless
they run while it is in the core's cache. A block of images' patches are
scaled once, p / sqrt(var(p) + norm_eps): their mean is removed by the
whitening matrix, because (p - mean(p)) @ W = p @ (W - column means of W).
The patches then go through the product in chunks of up to ``block_patches``
rows:

- triangle: the distance expansion ||x||^2 - 2 x.c + ||c||^2 is one augmented
  product [x, 1, ||x||^2] @ [-2 C^T; ||c||^2; 1] against all k centroids (the
  code needs a patch's mean distance);
- soft: whitening and alpha are folded into the unit-length centroids,
  u = [q, 1] @ [W' C^T; -(m W) C^T - alpha] = c.x - alpha, ``SOFT_COLUMNS``
  centroids at a time so the chunk's code buffers stay in cache. The codes
  are max(0, u) and, split, max(0, -u - 2 alpha) = -min(0, u + 2 alpha),
  taken against an array of zeros (NumPy's maximum against the scalar 0 is
  slower than against a zero array of the same shape).

The code buffers are contiguous (NumPy's ufuncs are slower on the two
halves of one (n, 2k) buffer). The patches are laid out so that a pooling
region is a run of rows, and pooling is one product with a 0/1 matrix of the
chunk's runs. Each thread of the caller's task pool keeps its own buffers, so
one encoder serves every thread.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .kmeans_settings import KMeansSettings
from .patches import CHANNELS, patch_view, region_bounds

__all__ = ["PatchEncoder", "SOFT_COLUMNS"]

SOFT_COLUMNS = 400      # centroids per soft-code product: a 196-row chunk's code buffers and zeros take 940 KB


def _products(s: KMeansSettings, centroids: np.ndarray, whiten_mean: np.ndarray,
              whiten: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The right-hand matrix of the code product ((p + 2, k) triangle, (p + 1, k) soft) and the whitening
    [W; -(m W)] (p + 1, p) of [p, 1] rows, in the settings' dtype."""
    C = centroids.astype(np.float64)
    W = whiten.astype(np.float64)
    mW = whiten_mean.astype(np.float64) @ W
    # ((p - mean(p)) / s) @ W = (p / s) @ (W - column means of W): centring folded into the whitening
    Wc = W - W.mean(axis=0, keepdims=True)
    p = s.patch_dim
    if s.encoder == "triangle":
        B = np.empty((p + 2, s.k))
        B[:p] = -2 * C.T
        B[p] = np.einsum("ij,ij->i", C, C)
        B[p + 1] = 1
    else:
        # the soft threshold is taken against unit-length atoms (Coates & Ng, ICML 2011): alpha is one
        # threshold for all of them, and k-means centroids of whitened patches differ in length
        C /= np.maximum(np.linalg.norm(C, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        B = np.empty((p + 1, s.k))
        B[:p] = Wc @ C.T                                           # (p, k): c . x = q . (W c) - (m W) . c
        B[p] = -(mW @ C.T) - s.alpha
    Wb = np.concatenate([Wc, -mW[None, :]]).astype(s.dtype)
    return B.astype(s.dtype), Wb


class PatchEncoder:
    """The per-block work of ``KMeansFeatures.transform``: a callable (X, (i0, i1), out) writing out[i0:i1].

    X is (N, 3072) CIFAR rows, out (N, n_features) any float array; out[i0:i1]
    gets the pooled codes of images i0..i1 - 1 (at most ``block_images``).

    The patches of a block of images are laid out region-major (pooling
    region, then image, then the region's positions row by row), so each
    (region, image) pair is a contiguous segment of rows, and pooling a
    sub-block is the product of a (segments, rows) 0/1 matrix with its codes.
    Sub-blocks ("chunks") gather whole segments up to ``block_patches`` rows
    or split a longer one. Each thread keeps its own buffers: the block's
    patches (with a column of ones, for the augmented products), the whitened
    patches and the codes of one chunk (one (rows, columns) array, two for the
    split codes), and the pooled sums.
    """

    def __init__(self, f: KMeansSettings, centroids: np.ndarray, whiten_mean: np.ndarray, whiten: np.ndarray):
        """Fitted ``centroids`` (k, p), ``whiten_mean`` (p,), ``whiten`` (p, p) under the checked settings ``f``."""
        self.f = f
        B, self.Wb = _products(f, centroids, whiten_mean, whiten)
        width = SOFT_COLUMNS if f.encoder == "soft" else f.k
        self.columns = [(c0, min(c0 + width, f.k), np.ascontiguousarray(B[:, c0:c0 + width]))
                        for c0 in range(0, f.k, width)]
        self.two_alpha = f.dtype.type(2 * f.alpha)
        self.ones = np.ones(f.k, dtype=f.dtype)
        self.ones_p = np.ones(f.patch_dim, dtype=f.dtype)
        self.local = threading.local()
        m = f.map_size
        self.m = m
        rb = region_bounds(m, f.pool)
        self.regions = [(rb[g], rb[g + 1], rb[h], rb[h + 1]) for g in range(f.pool) for h in range(f.pool)]
        self.plans: dict[int, list] = {}
        self.chunk_rows = max(self.plan(f.block_images)[1], max(1, min(f.block_patches, m * m)))
        if f.block_images > 1:
            self.chunk_rows = max(self.chunk_rows, self.plan(1)[1])
        # the soft codes' right-hand side of max(0, u), read-only, shared by the threads
        self.zeros = np.zeros((self.chunk_rows, width), dtype=f.dtype) if f.encoder == "soft" else None

    def plan(self, b: int) -> tuple[list, int]:
        """For b images: [(region row start, region row stop)], [(chunk start, stop, runs, first segment)] and
        the most rows of a chunk.

        Segment r * b + j is the patches of image j in region r. A chunk's
        ``runs`` is its (segments, rows) 0/1 matrix (1 where a row belongs to
        the segment); its segments are consecutive, from the first one on.
        """
        if b in self.plans:
            return self.plans[b]
        limit = self.f.block_patches
        copies, segments, base = [], [], 0
        for r, (r0, r1, c0, c1) in enumerate(self.regions):
            size = (r1 - r0) * (c1 - c0)
            copies.append((base, base + b * size))
            segments += [(base + j * size, base + (j + 1) * size, r * b + j) for j in range(b)]
            base += b * size
        chunks: list = []
        cur: list = []
        for s, e, i in segments:
            if e - s > limit:                               # a long segment: its own chunks, split evenly
                if cur:
                    chunks.append(cur)
                    cur = []
                pieces = -(-(e - s) // limit)
                cuts = np.linspace(s, e, pieces + 1).round().astype(int)
                chunks += [[(int(u), int(v), i)] for u, v in zip(cuts[:-1], cuts[1:])]
                continue
            if cur and e - cur[0][0] > limit:
                chunks.append(cur)
                cur = []
            cur.append((s, e, i))
        if cur:
            chunks.append(cur)
        plan = [(c[0][0], c[-1][1], self.runs([u - c[0][0] for u, _, _ in c], c[-1][1] - c[0][0]), c[0][2])
                for c in chunks]
        rows = max(e - s for s, e, *_ in plan)
        self.plans[b] = (copies, plan), rows
        return self.plans[b]

    def runs(self, starts: list[int], rows: int) -> np.ndarray:
        """The (segments, rows) 0/1 matrix of segments starting at ``starts`` and ending where the next one starts."""
        bounds = [*starts, rows]
        M = np.zeros((len(starts), rows), dtype=self.f.dtype)
        for i, (u, v) in enumerate(zip(bounds[:-1], bounds[1:])):
            M[i, u:v] = 1
        return M

    def buffers(self) -> Any:
        loc = self.local
        if getattr(loc, "P", None) is None:
            f, p = self.f, self.f.patch_dim
            loc.P = np.empty((f.block_images * self.m * self.m, p + 1), dtype=f.dtype)
            loc.P[:, p] = 1
            width = self.columns[0][1]
            loc.codes = [np.empty((self.chunk_rows, width), dtype=f.dtype) for _ in range(1 + f.split)]
            if f.encoder == "triangle":
                loc.A = np.empty((self.chunk_rows, p + 2), dtype=f.dtype)
                loc.A[:, p] = 1
            segments = len(self.regions) * f.block_images
            loc.pooled = np.empty((segments, f.n_codes), dtype=f.dtype)
        return loc

    def __call__(self, X: np.ndarray, span: tuple[int, int], out: np.ndarray) -> None:
        f = self.f
        i0, i1 = span
        b = i1 - i0
        p = f.patch_dim
        loc = self.buffers()
        (copies, chunks), _ = self.plan(b)
        Xb = np.asarray(X[i0:i1])
        exact = Xb.dtype == np.uint8          # sums of uint8 values and squares are exact in float32 (< 2**24)
        view = patch_view(Xb, f.patch, f.stride)                              # (b, m, m, 3, patch, patch)
        for (s, e), (r0, r1, c0, c1) in zip(copies, self.regions):
            target = loc.P[s:e, :p].reshape(b, r1 - r0, c1 - c0, CHANNELS, f.patch, f.patch)
            if not np.may_share_memory(target, loc.P):                        # a copy would be written in vain
                raise RuntimeError("internal error: the patch buffer cannot be viewed by region")
            np.copyto(target, view[:, r0:r1, c0:c1], casting="unsafe")
        self.scale(loc.P[:copies[-1][1], :p], exact)
        regions = len(self.regions)
        pooled = loc.pooled[:regions * b]                                   # (segments, n_codes)
        pooled.fill(0)
        for s, e, runs, first in chunks:
            block = loc.P[s:e]
            for c0, c1, B in self.columns:
                self.encode(block, B, runs, pooled[first:first + runs.shape[0]], c0, loc)
        if f.power != 1:
            np.power(pooled, f.power, out=pooled)                             # sums of codes >= 0: real powers
        # segments are region-major; the buffer is this thread's: copy out here
        out[i0:i1] = pooled.reshape(regions, b, -1).transpose(1, 0, 2).reshape(b, -1)

    def scale(self, P: np.ndarray, exact: bool) -> None:
        """In place: raw patches P (n, p) become p / sqrt(var(p) + norm_eps) (the mean is taken out by the whitening)."""
        d = P.shape[1]
        if exact:
            s1 = (P @ self.ones_p).astype(np.float64)
            s2 = np.einsum("ij,ij->i", P, P).astype(np.float64)
        else:
            s1 = P.sum(axis=1, dtype=np.float64)
            s2 = np.einsum("ij,ij->i", P, P, dtype=np.float64)
        var = (s2 - s1 * s1 / d) / (d - 1)                       # as normalize_patches: n - 1
        P *= (1 / np.sqrt(np.maximum(var, 0) + self.f.norm_eps)).astype(P.dtype)[:, None]

    def encode(self, block: np.ndarray, B: np.ndarray, runs: np.ndarray, pooled: np.ndarray, c0: int,
               loc: Any) -> None:
        """Adds the pooled codes of a chunk against the c columns B (p + 1 or p + 2, c) of the code product.

        block (n, p + 1) is the chunk's scaled patches (last column 1), runs
        (segments, n) its 0/1 pooling matrix, pooled (segments, n_codes) the
        segments' sums; the codes go to columns c0 .. c0 + c (and k + c0 ...
        for the split's half).
        """
        f = self.f
        n, c, p = block.shape[0], B.shape[1], f.patch_dim
        U = loc.codes[0][:n, :c]
        if f.encoder == "soft":
            zeros = self.zeros[:n, :c]
            np.matmul(block, B, out=U)                                    # u = c.x - alpha, (n, c)
            if not f.split:
                pooled[:, c0:c0 + c] += runs @ np.maximum(U, zeros, out=U)
                return
            pooled[:, c0:c0 + c] += runs @ np.maximum(U, zeros, out=loc.codes[1][:n, :c])
            U += self.two_alpha                                           # v = u + 2 alpha
            pooled[:, f.k + c0:f.k + c0 + c] -= runs @ np.minimum(U, zeros, out=U)   # max(0, -v) = -min(0, v)
            return
        D = U
        A = loc.A[:n]
        x = A[:, :p]
        np.matmul(block, self.Wb, out=x)                                  # x = (p - m) @ W
        np.einsum("ij,ij->i", x, x, out=A[:, p + 1])
        np.matmul(A, B, out=D)                                            # ||x - c||^2, (n, k)
        with np.errstate(invalid="ignore"):
            np.sqrt(D, out=D)                                             # rounding can leave -tiny: NaN
        mu = D @ self.ones                                                # (n,) sum of distances
        bad = np.isnan(mu)
        if bad.any():                                                     # those distances are 0
            rows = np.flatnonzero(bad)
            Dr = D[rows]
            Dr[np.isnan(Dr)] = 0
            D[rows] = Dr
            mu[rows] = Dr @ self.ones
        mu *= 1 / f.k
        np.subtract(mu[:, None], D, out=D)
        np.maximum(D, 0, out=D)
        pooled[:, c0:c0 + c] += runs @ D

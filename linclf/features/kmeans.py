"""Coates, Lee & Ng (AISTATS 2011) single-layer k-means features of CIFAR rows.

``fit`` samples random patches, normalises each one's brightness and contrast,
fits ZCA whitening on them and runs Lloyd's k-means on the whitened patches.
``transform`` takes every patch on a ``stride`` grid, normalises and whitens
it, encodes it against the centroids (triangle: max(0, mean(z) - z_k) with
z_k = ||x - c_k||; soft threshold: max(0, c_k . x - alpha)) and sum-pools the
codes over a ``pool`` x ``pool`` grid of the map.

Lloyd's iterations are in ``lloyd``.

Speed: extraction is one product of every patch with every centroid. It runs
in chunks of a few hundred patches whose codes stay in cache. A raw patch p is
only scaled, q = p / sqrt(var(p) + norm_eps): its mean is removed by the
whitening matrix, because (p - mean(p)) @ W = p @ (W - column means of W).
The distance expansion ||x||^2 - 2 x.c + ||c||^2 is one augmented product
[x, 1, ||x||^2] @ [-2 C^T; ||c||^2; 1]; for the soft encoder the whitening and
alpha are folded into the centroids, [q, 1] @ [W' C^T; -(m W) C^T - alpha].
Encoding and pooling are done in place on the chunk; the patches are laid out
so that a pooling region is a run of rows. Blocks of images run on a thread
pool (``threads.task_pool``; NumPy releases the GIL in products and ufuncs)
with OpenBLAS on one thread each, which measured faster than one worker with
OpenBLAS threads (the encoding ufuncs then run on one core).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..estimator_base import Params, not_fitted, transformer_tags
from ..progress import Bar
from ..threads import PARALLEL, resolve_workers, task_pool
from .lloyd import lloyd, spans
from .patches import CHANNELS, IMAGE, map_size, normalize_patches, patch_view, region_bounds, sample_patches

__all__ = ["KMeansFeatures", "ENCODERS", "FORMAT_VERSION", "lloyd"]

ENCODERS = ("triangle", "soft")
FORMAT_VERSION = 1
ROW = CHANNELS * IMAGE * IMAGE           # 3072 values a CIFAR row
_SETTINGS = ("k", "patch", "stride", "patches", "iterations", "encoder", "alpha", "pool", "norm_eps", "zca_eps",
             "seed", "split", "dtype")
_INT_SETTINGS = ("k", "patch", "stride", "patches", "iterations", "pool", "seed")
_FLOAT_SETTINGS = ("alpha", "norm_eps", "zca_eps")


# ----------------------------------------------------------------------------- argument checks

def _int(name: str, value: Any, lo: int, hi: int | None = None, why: str = "") -> int:
    """``value`` as an int in [lo, hi], else ValueError naming ``name`` and the range."""
    expected = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected {expected}{why}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name}: expected {expected}{why}, got {value}")
    return int(value)


def _float(name: str, value: Any, lo: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite float (>= lo, or > lo if strict), else ValueError naming ``name``."""
    bound = "" if lo is None else f" {'>' if strict else '>='} {lo:g}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a finite number{bound}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (lo is not None and (v <= lo if strict else v < lo)):
        raise ValueError(f"{name}: expected a finite number{bound}, got {value!r}")
    return v


def _rows(X: Any, name: str = "X") -> np.ndarray:
    """X as (N, 3072) real rows (a memmap stays one), else ValueError."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != ROW or X.shape[0] < 1:
        raise ValueError(f"{name}: expected CIFAR rows of shape (N, {ROW}) with N >= 1, got shape {X.shape}")
    if X.dtype.kind not in "uif":
        raise ValueError(f"{name}: expected uint8 (or real) pixels, got dtype {X.dtype}")
    return X


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class _Settings:
    """A KMeansFeatures's parameters once checked (ints, floats, a numpy dtype, the thread count resolved)."""

    k: int
    patch: int
    stride: int
    patches: int
    iterations: int
    encoder: str
    alpha: float
    pool: int
    norm_eps: float
    zca_eps: float
    seed: int
    progress: bool
    dtype: np.dtype
    threads: int
    split: bool
    parallel: str
    block_patches: int
    block_images: int

    @property
    def patch_dim(self) -> int:
        return CHANNELS * self.patch * self.patch

    @property
    def map_size(self) -> int:
        return map_size(self.patch, self.stride)

    @property
    def n_codes(self) -> int:
        return self.k * (2 if self.split else 1)

    @property
    def n_features(self) -> int:
        return self.pool * self.pool * self.n_codes


def _check(p: dict[str, Any]) -> _Settings:
    """The parameters ``p`` (KMeansFeatures's get_params) checked; ValueError naming the first bad one."""
    k = _int("k", p["k"], 1)
    patch = _int("patch", p["patch"], 1, IMAGE, " (a patch must fit a 32x32 image)")
    stride = _int("stride", p["stride"], 1, IMAGE - patch + 1, f" (at most 32 - patch + 1 = {IMAGE - patch + 1})")
    patches = _int("patches", p["patches"], 1)
    if k > patches:
        raise ValueError(f"k: expected at most the number of sampled patches (patches={patches}), got {k}")
    iterations = _int("iterations", p["iterations"], 1)
    encoder = p["encoder"]
    if not isinstance(encoder, str) or encoder not in ENCODERS:
        raise ValueError(f"encoder: expected one of {', '.join(ENCODERS)}, got {encoder!r}")
    alpha = _float("alpha", p["alpha"])
    m = map_size(patch, stride)
    pool = _int("pool", p["pool"], 1, m, f" (the map of patch {patch}, stride {stride} is {m}x{m})")
    norm_eps = _float("norm_eps", p["norm_eps"], 0.0, strict=True)
    zca_eps = _float("zca_eps", p["zca_eps"], 0.0, strict=True)
    seed = _int("seed", p["seed"], 0)
    try:
        dtype = np.dtype(p["dtype"])
    except TypeError:
        dtype = None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected float32 or float64, got {p['dtype']!r}")
    threads = _int("threads", resolve_workers() if p["threads"] is None else p["threads"], 1)
    split = p["split"]
    if not isinstance(split, (bool, np.bool_)):
        raise ValueError(f"split: expected true or false, got {split!r}")
    if split and encoder != "soft":
        raise ValueError(f"split: expected false with encoder {encoder!r} (the sign split is for 'soft')")
    parallel = p["parallel"]
    if not isinstance(parallel, str) or parallel not in PARALLEL:
        raise ValueError(f"parallel: expected one of {', '.join(PARALLEL)}, got {parallel!r}")
    return _Settings(k, patch, stride, patches, iterations, encoder, alpha, pool, norm_eps, zca_eps, seed,
                     bool(p["progress"]), dtype, threads, bool(split), parallel,
                     _int("block_patches", p["block_patches"], 1), _int("block_images", p["block_images"], 1))


# ----------------------------------------------------------------------------- the extractor

class KMeansFeatures(Params):
    """Coates k-means features of uint8 CIFAR rows X (N, 3072) (channel-major: R plane, G plane, B plane, each 32x32 row-major, as CIFAR stores them).

    Settings: ``k`` centroids of ``patch`` x ``patch`` x 3 patches; ``stride``
    over the map of patch positions ((32 - patch) // stride + 1 a side);
    ``patches`` random patches and ``iterations`` of Lloyd for ``fit``;
    ``encoder`` "triangle" or "soft" (threshold ``alpha``; ``split=True`` adds
    max(0, -c.x - alpha), doubling the features); ``pool`` x ``pool`` sum
    pooling over the map (split as evenly as possible); ``norm_eps`` in the
    per-patch normalisation (p - mean) / sqrt(var + norm_eps) (var over the
    patch's 3 * patch**2 values, with n - 1 as in Coates's code);
    ``zca_eps`` in the ZCA whitening x = (p - m) @ W, W = V diag(1 / sqrt(d +
    zca_eps)) V^T. ``seed`` seeds the patch sample, the initial centroids and
    re-seeded empty clusters. ``threads``: worker threads (default:
    $LINCLF_WORKERS, else the CPUs this process may use); ``parallel`` "threads" (a thread pool over image
    blocks, one BLAS thread each) or "blas" (one worker, BLAS threads).
    ``block_patches`` patches are encoded at a time (the cache-sized block),
    ``block_images`` images make one task.

    A scikit-learn estimator: the constructor only stores its arguments
    (``clone``, ``get_params``, ``set_params`` and grid searches over e.g.
    ``features__k`` work); ``fit`` and ``transform`` check them and raise a
    ValueError naming the bad one (``check_params`` does only that).
    ``transform`` uses the current parameters: the encoder, ``alpha``,
    ``split``, ``stride``, ``pool`` and the execution settings may change
    after fit, ``k`` and ``patch`` must match the fitted centroids.

    Fitted: ``centroids_`` (k, 3 * patch**2), ``whiten_mean_`` (3 * patch**2,),
    ``whiten_`` (3 * patch**2, 3 * patch**2), ``inertia_`` (mean squared
    distance of the last assignment), ``n_features_in_`` (3072). A patch
    vector is ordered channel, patch row, patch column; features are ordered
    pool row, pool column, centroid (with ``split``: the k positive parts,
    then the k negative parts).
    """

    def __init__(self, k: int = 1600, patch: int = 6, stride: int = 1, patches: int = 400_000, iterations: int = 50,
                 encoder: str = "triangle", alpha: float = 0.25, pool: int = 2, norm_eps: float = 10.0,
                 zca_eps: float = 0.1, seed: int = 0, progress: bool = False, dtype: Any = np.float32,
                 threads: int | None = None, *, split: bool = False, parallel: str = "threads",
                 block_patches: int = 256, block_images: int = 8):
        # stored as given (scikit-learn's clone checks identity); checked by fit, transform and check_params
        self.k, self.patch, self.stride, self.patches, self.iterations = k, patch, stride, patches, iterations
        self.encoder, self.alpha, self.pool, self.norm_eps, self.zca_eps = encoder, alpha, pool, norm_eps, zca_eps
        self.seed, self.progress, self.dtype, self.threads, self.split = seed, progress, dtype, threads, split
        self.parallel, self.block_patches, self.block_images = parallel, block_patches, block_images

    def _settings(self) -> _Settings:
        return _check(self.get_params(deep=False))

    def check_params(self) -> None:
        """Raise a one-line ValueError naming the first parameter that is out of range or of the wrong type."""
        self._settings()

    # ------------------------------------------------------------------ shapes

    @property
    def patch_dim(self) -> int:
        """Values in a patch: 3 * patch * patch."""
        return self._settings().patch_dim

    @property
    def map_size(self) -> int:
        """Patch positions along one axis of the image."""
        return self._settings().map_size

    @property
    def n_codes(self) -> int:
        """Codes per patch: k, or 2k with the sign split."""
        return self._settings().n_codes

    @property
    def n_features(self) -> int:
        """Features per image: pool * pool * k (twice that with the sign split)."""
        return self._settings().n_features

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "centroids_")

    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6 tags: a transformer that must be fitted."""
        return transformer_tags(requires_fit=True)

    def _more_tags(self) -> dict[str, Any]:
        """scikit-learn < 1.6 tags."""
        return {"requires_fit": True, "preserves_dtype": []}

    def _fitted_settings(self) -> _Settings:
        """The checked parameters of a fitted extractor; NotFittedError before fit, ValueError if k or patch changed."""
        if not self.__sklearn_is_fitted__():
            raise not_fitted(type(self).__name__, " (or rebuild a fitted one with from_arrays)")
        s = self._settings()
        shape = np.shape(self.centroids_)
        if shape[1:] != (s.patch_dim,):
            raise ValueError(f"patch: the fitted centroids are of {shape[1:]} values, patch={s.patch} needs "
                             f"{s.patch_dim}; call fit again after changing patch")
        if shape[0] != s.k:
            raise ValueError(f"k: the extractor was fitted with {shape[0]} centroids, got k={s.k}; "
                             "call fit again after changing k")
        return s

    # ------------------------------------------------------------------ fit

    def fit(self, X: np.ndarray, y: Any = None) -> "KMeansFeatures":
        """Fit normalisation, whitening and centroids on ``patches`` random patches of X (N, 3072); returns self."""
        s = self._settings()
        X = _rows(X)
        rng = np.random.default_rng(s.seed)
        p = s.patch_dim
        bar = Bar(s.progress, s.patches, desc="patches", unit="patch")
        try:
            P = sample_patches(X, s.patches, s.patch, rng, dtype=s.dtype, step=bar.update)
        finally:
            bar.close()
        runs = spans(s.patches, 50_000)
        for a, b in runs:
            normalize_patches(P[a:b], s.norm_eps)
        mean = P.mean(axis=0, dtype=np.float64)                       # (p,)
        cov = np.zeros((p, p))
        for a, b in runs:
            Pc = P[a:b].astype(np.float64) - mean
            cov += Pc.T @ Pc
        cov /= max(1, s.patches - 1)
        evals, evecs = np.linalg.eigh(cov)
        W = (evecs / np.sqrt(np.maximum(evals, 0.0) + s.zca_eps)) @ evecs.T   # (p, p), symmetric
        Xa = np.empty((s.patches, p + 1), dtype=s.dtype)             # whitened patches and a column of ones
        Wd, md = W.astype(s.dtype), mean.astype(s.dtype)
        for a, b in runs:
            P[a:b] -= md
            np.matmul(P[a:b], Wd, out=Xa[a:b, :p])
        del P
        Xa[:, p] = 1
        bar = Bar(s.progress, s.iterations, desc="k-means", unit="it")
        try:
            with task_pool(s.threads, s.parallel, "kmeans") as pool:
                C, inertia = lloyd(Xa, s.k, s.iterations, rng, pool,
                                   step=lambda it, inertia: bar.update(1, iteration=it, inertia=inertia))
        finally:
            bar.close()
        # all at once, so an interrupted fit leaves the previous state untouched
        self.centroids_, self.whiten_mean_, self.whiten_, self.inertia_ = C, mean.astype(s.dtype), Wd, inertia
        self.n_features_in_ = ROW
        return self

    # ------------------------------------------------------------------ transform

    def _products(self, s: _Settings) -> tuple[np.ndarray, np.ndarray]:
        """The right-hand matrix of the code product, and the whitening [W; -(m W)] (p + 1, p) of [p, 1] rows."""
        C = self.centroids_.astype(np.float64)
        W = self.whiten_.astype(np.float64)
        mW = self.whiten_mean_.astype(np.float64) @ W
        # ((p - mean(p)) / s) @ W = (p / s) @ (W - column means of W): centring folded into the whitening
        Wc = W - W.mean(axis=0, keepdims=True)
        p = s.patch_dim
        if s.encoder == "triangle":
            B = np.empty((p + 2, s.k))
            B[:p] = -2 * C.T
            B[p] = np.einsum("ij,ij->i", C, C)
            B[p + 1] = 1
        else:
            WC = Wc @ C.T                                              # (p, k): c . x = q . (W c) - (m W) . c
            B = np.empty((p + 1, s.n_codes))
            B[:p, : s.k] = WC
            B[p, : s.k] = -(mW @ C.T) - s.alpha
            if s.split:
                B[:p, s.k:] = -WC
                B[p, s.k:] = (mW @ C.T) - s.alpha
        Wb = np.concatenate([Wc, -mW[None, :]]).astype(s.dtype)
        return B.astype(s.dtype), Wb

    def transform(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Pooled codes (N, n_features) of rows X (N, 3072), in float32 (the dtype setting) or written into ``out``.

        ``out`` (N, n_features) of any float dtype (e.g. a float16 memmap) is
        written block by block; features are not standardised.
        """
        s = self._fitted_settings()
        X = _rows(X)
        N, nf = X.shape[0], s.n_features
        if out is None:
            out = np.empty((N, nf), dtype=s.dtype)
        elif not isinstance(out, np.ndarray) or out.shape != (N, nf) or out.dtype.kind != "f":
            shape = getattr(out, "shape", None)
            dtype = getattr(out, "dtype", type(out).__name__)
            raise ValueError(f"out: expected a float array of shape ({N}, {nf}), got shape {shape} dtype {dtype}")
        B, Wb = self._products(s)
        work = _Extractor(s, B, Wb)
        bar = Bar(s.progress, N, desc="k-means features", unit="img")
        try:
            with task_pool(s.threads, s.parallel, "kmeans") as pool:
                pool.run(lambda span: work(X, span, out), spans(N, s.block_images),
                         lambda span, _: bar.update(span[1] - span[0]))
        finally:
            bar.close()
        return out

    def fit_transform(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        """fit(X) then transform(X)."""
        return self.fit(X).transform(X)

    # ------------------------------------------------------------------ storage

    def settings(self) -> dict[str, Any]:
        """The checked settings that define the features (not the execution ones: progress, threads, blocks)."""
        s = self._settings()
        return {name: getattr(s, name) for name in _SETTINGS}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no objects, loadable with allow_pickle=False): the fitted arrays and every setting."""
        s = self._fitted_settings()
        arrays = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
                  "centroids": np.array(self.centroids_), "whiten_mean": np.array(self.whiten_mean_),
                  "whiten": np.array(self.whiten_), "inertia": np.array(self.inertia_, dtype=np.float64)}
        for name in _INT_SETTINGS:
            arrays[name] = np.array(getattr(s, name), dtype=np.int64)
        for name in _FLOAT_SETTINGS:
            arrays[name] = np.array(getattr(s, name), dtype=np.float64)
        arrays["encoder"] = np.array(s.encoder)
        arrays["split"] = np.array(s.split)
        arrays["dtype"] = np.array(s.dtype.name)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Any, **options: Any) -> "KMeansFeatures":
        """Rebuild a fitted extractor from ``to_arrays()`` output (a dict or an NpzFile); ValueError naming the key on a bad one.

        ``options`` are execution settings (progress, threads, parallel, block_patches, block_images).
        """
        def get(key: str) -> np.ndarray:
            if key not in arrays:
                raise ValueError(f"{key}: missing from the k-means feature arrays")
            return np.asarray(arrays[key])

        def scalar(key: str, kinds: str) -> Any:
            a = get(key)
            if a.shape != () or a.dtype.kind not in kinds:
                raise ValueError(f"{key}: expected a scalar of kind {kinds!r}, got shape {a.shape} dtype {a.dtype}")
            return a.item()

        version = scalar("format_version", "iu")
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version: expected {FORMAT_VERSION}, got {version}")
        kwargs: dict[str, Any] = {name: scalar(name, "iu") for name in _INT_SETTINGS}
        kwargs.update({name: scalar(name, "fiu") for name in _FLOAT_SETTINGS})
        kwargs["encoder"] = scalar("encoder", "U")
        kwargs["split"] = bool(scalar("split", "b"))
        kwargs["dtype"] = scalar("dtype", "U")
        try:
            self = cls(**kwargs, **options)
            s = self._settings()
        except (ValueError, TypeError) as e:
            raise ValueError(f"bad k-means feature arrays: {e}") from None
        p = s.patch_dim
        fitted = {}
        for key, shape in (("centroids", (s.k, p)), ("whiten_mean", (p,)), ("whiten", (p, p))):
            a = get(key)
            if a.shape != shape:
                raise ValueError(f"{key}: expected shape {shape}, got {a.shape}")
            if a.dtype.kind != "f":
                raise ValueError(f"{key}: expected a float array, got dtype {a.dtype}")
            if not np.isfinite(a).all():
                raise ValueError(f"{key}: expected finite values, found NaN or infinity")
            fitted[key] = a.astype(s.dtype)
        inertia = scalar("inertia", "f") if "inertia" in arrays else math.nan
        self.centroids_, self.whiten_mean_, self.whiten_, self.inertia_ = (
            fitted["centroids"], fitted["whiten_mean"], fitted["whiten"], float(inertia))
        self.n_features_in_ = ROW
        return self


class _Extractor:
    """The per-block work of ``transform``: a callable (X, (i0, i1), out) writing out[i0:i1] (pooled codes).

    The patches of a block of images are laid out region-major (pooling
    region, then image, then the region's positions row by row), so each
    (region, image) pair is a contiguous segment of rows and pooling is one
    reduction along the rows of a sub-block. Sub-blocks ("chunks") gather
    whole segments up to ``block_patches`` rows or split a longer one. Each
    thread keeps its own buffers: the block's patches (with a column of ones,
    for the augmented products), the whitened patches and the codes of one
    chunk, and the pooled sums.
    """

    def __init__(self, f: _Settings, B: np.ndarray, Wb: np.ndarray):
        self.f, self.B, self.Wb = f, B, Wb
        self.zero = np.zeros(f.n_codes, dtype=f.dtype)      # np.maximum against a row is faster than against 0
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

    def plan(self, b: int) -> tuple[list, int]:
        """For b images: [(region row start, region row stop, target rows)] and [(chunk start, stop, segments)], max chunk rows.

        A chunk's segments are (offset in the chunk, image, region index).
        """
        if b in self.plans:
            return self.plans[b]
        limit = self.f.block_patches
        copies, segments, base = [], [], 0
        for r, (r0, r1, c0, c1) in enumerate(self.regions):
            size = (r1 - r0) * (c1 - c0)
            copies.append((base, base + b * size))
            segments += [(base + j * size, base + (j + 1) * size, j, r) for j in range(b)]
            base += b * size
        chunks: list = []
        cur: list = []
        for s, e, j, r in segments:
            if e - s > limit:                               # a long segment: its own chunks, split evenly
                if cur:
                    chunks.append(cur)
                    cur = []
                pieces = -(-(e - s) // limit)
                cuts = np.linspace(s, e, pieces + 1).round().astype(int)
                chunks += [[(int(u), int(v), j, r)] for u, v in zip(cuts[:-1], cuts[1:])]
                continue
            if cur and e - cur[0][0] > limit:
                chunks.append(cur)
                cur = []
            cur.append((s, e, j, r))
        if cur:
            chunks.append(cur)
        plan = [(c[0][0], c[-1][1], np.array([u - c[0][0] for u, _, _, _ in c]), np.array([j for _, _, j, _ in c]),
                 np.array([r for _, _, _, r in c])) for c in chunks]
        rows = max(e - s for s, e, *_ in plan)
        self.plans[b] = (copies, plan), rows
        return self.plans[b]

    def buffers(self) -> Any:
        loc = self.local
        if getattr(loc, "P", None) is None:
            f, p = self.f, self.f.patch_dim
            loc.P = np.empty((f.block_images * self.m * self.m, p + 1), dtype=f.dtype)
            loc.P[:, p] = 1
            loc.D = np.empty((self.chunk_rows, f.n_codes), dtype=f.dtype)
            if f.encoder == "triangle":
                loc.A = np.empty((self.chunk_rows, p + 2), dtype=f.dtype)
                loc.A[:, p] = 1
            loc.pooled = np.empty((f.block_images, len(self.regions), f.n_codes), dtype=f.dtype)
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
        pooled = loc.pooled[:b]
        pooled.fill(0)
        for s, e, offsets, images, regions in chunks:
            block = loc.P[s:e]
            self.scale(block[:, :p], exact)
            D = self.encode(block, loc)
            if len(offsets) == 1:
                pooled[images[0], regions[0]] += np.add.reduce(D, axis=0)
            else:
                pooled[images, regions] += np.add.reduceat(D, offsets, axis=0)   # (image, region) pairs distinct
        out[i0:i1] = pooled.reshape(b, -1)                                  # the buffer is this thread's: copy out here

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

    def encode(self, block: np.ndarray, loc: Any) -> np.ndarray:
        """Codes (n, n_codes) of scaled patches block (n, p + 1) (last column 1), in a reused buffer."""
        f = self.f
        n, p = block.shape[0], f.patch_dim
        D = loc.D[:n]
        if f.encoder == "soft":
            np.matmul(block, self.B, out=D)                               # c.x - alpha (and -c.x - alpha)
            np.maximum(D, self.zero, out=D)
            return D
        A = loc.A[:n]
        x = A[:, :p]
        np.matmul(block, self.Wb, out=x)                                  # x = (p - m) @ W
        np.einsum("ij,ij->i", x, x, out=A[:, p + 1])
        np.matmul(A, self.B, out=D)                                       # ||x - c||^2, (n, k)
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
        np.maximum(D, self.zero, out=D)
        return D

"""Coates, Lee & Ng (AISTATS 2011) single-layer k-means features of CIFAR rows: the estimator.

``fit`` samples random patches, normalises each one's brightness and contrast,
fits ZCA whitening on them and runs Lloyd's k-means on the whitened patches.
``transform`` takes every patch on a ``stride`` grid, normalises and whitens
it, encodes it against the centroids (triangle: max(0, mean(z) - z_k) with
z_k = ||x - c_k||; soft threshold: max(0, u_k . x - alpha) with u_k = c_k / ||c_k||,
the centroids as unit-length dictionary atoms as in Coates & Ng, ICML 2011) and sum-pools the
codes over a ``pool`` x ``pool`` grid of the map; ``power`` < 1 then
compresses the pooled sums (0.5, their square root, is the power
normalisation of bag-of-features and Fisher-vector pipelines: a few large
counts no longer dominate a linear classifier).

Here: the parameters (checked by ``kmeans_settings``), fit, transform and the
fitted state as plain arrays. Lloyd's iterations are in ``lloyd``, the fast
per-block extraction in ``encode``. Blocks of images run on a thread pool
(``threads.task_pool``; NumPy releases the GIL in products and ufuncs) with
OpenBLAS on one thread each: with one worker and OpenBLAS's threads the
encoding ufuncs would run on one core (``scripts/bench.py --only kmeans``
measures both).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..estimator_base import Params, not_fitted, transformer_tags
from ..progress import Bar
from ..threads import blas_threads, task_pool
from .checks import check_out, check_pixel_rows
from .encode import PatchEncoder
from .kmeans_settings import ENCODERS, KMeansSettings, check_settings
from .lloyd import lloyd, spans
from .patches import CHANNELS, IMAGE, normalize_patches, sample_patches

__all__ = ["KMeansFeatures", "ENCODERS", "FORMAT_VERSION", "lloyd"]

# 2: adds power; 1 (power 1) still loads, and an older linclf refuses a newer file. 3: the soft encoder
# thresholds unit-length centroids; a soft extractor of an older file cannot be reproduced and is refused
FORMAT_VERSION = 3
ROW = CHANNELS * IMAGE * IMAGE           # 3072 values a CIFAR row
_SETTINGS = ("k", "patch", "stride", "patches", "iterations", "encoder", "alpha", "pool", "power", "norm_eps",
             "zca_eps", "seed", "split", "dtype")
_INT_SETTINGS = ("k", "patch", "stride", "patches", "iterations", "pool", "seed")
_FLOAT_SETTINGS = ("alpha", "power", "norm_eps", "zca_eps")


# ----------------------------------------------------------------------------- input rows

def _rows(X: Any, name: str = "X") -> np.ndarray:
    """X as (N, 3072) pixel rows with N >= 1 (``check_pixel_rows``), else ValueError."""
    X = check_pixel_rows(X, name)
    if X.shape[0] < 1:
        raise ValueError(f"{name}: expected CIFAR rows of shape (N, {ROW}) with N >= 1, got shape {X.shape}")
    return X


# ----------------------------------------------------------------------------- the estimator

class KMeansFeatures(Params):
    """Coates k-means features of uint8 CIFAR rows X (N, 3072) (channel-major: R plane, G plane, B plane, each 32x32 row-major, as CIFAR stores them).

    Settings: ``k`` centroids of ``patch`` x ``patch`` x 3 patches; ``stride``
    over the map of patch positions ((32 - patch) // stride + 1 a side);
    ``patches`` random patches and ``iterations`` of Lloyd for ``fit``;
    ``encoder`` "triangle" or "soft" (max(0, u.x - alpha) against the
    centroids scaled to unit length u; ``split=True`` adds max(0, -u.x -
    alpha), doubling the features); ``pool`` x ``pool`` sum
    pooling over the map (split as evenly as possible), each sum raised to
    ``power`` (1: as published; 0.5: the square root); ``norm_eps`` in the
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
    ``split``, ``stride``, ``pool``, ``power`` and the execution settings may change
    after fit, ``k`` and ``patch`` must match the fitted centroids.

    Fitted: ``centroids_`` (k, 3 * patch**2), ``whiten_mean_`` (3 * patch**2,),
    ``whiten_`` (3 * patch**2, 3 * patch**2), ``inertia_`` (mean squared
    distance of the last assignment), ``n_features_in_`` (3072). A patch
    vector is ordered channel, patch row, patch column; features are ordered
    pool row, pool column, centroid (with ``split``: the k positive parts,
    then the k negative parts).
    """

    # the parameters fit reads (the others shape transform only): what a cached fit is keyed on
    FIT_PARAMS = ("k", "patch", "patches", "iterations", "norm_eps", "zca_eps", "seed", "dtype")

    def __init__(self, k: int = 1600, patch: int = 6, stride: int = 1, patches: int = 400_000, iterations: int = 50,
                 encoder: str = "triangle", alpha: float = 0.25, pool: int = 2, norm_eps: float = 10.0,
                 zca_eps: float = 0.1, seed: int = 0, progress: bool = False, dtype: Any = np.float32,
                 threads: int | None = None, *, split: bool = False, power: float = 1.0,
                 parallel: str = "threads", block_patches: int = 256, block_images: int = 8):
        # stored as given (scikit-learn's clone checks identity); checked by fit, transform and check_params
        self.k, self.patch, self.stride, self.patches, self.iterations = k, patch, stride, patches, iterations
        self.encoder, self.alpha, self.pool, self.norm_eps, self.zca_eps = encoder, alpha, pool, norm_eps, zca_eps
        self.seed, self.progress, self.dtype, self.threads, self.split = seed, progress, dtype, threads, split
        self.power = power
        self.parallel, self.block_patches, self.block_images = parallel, block_patches, block_images

    def _settings(self) -> KMeansSettings:
        return check_settings(self.get_params(deep=False))

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

    def _fitted_settings(self) -> KMeansSettings:
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
        # One BLAS thread: OpenBLAS's threaded products and eigh round differently from its one-thread ones
        # on some CPUs (AVX2 EPYC), and the centroids must not depend on ``threads``; this is about a second.
        with blas_threads(1):
            for a, b in runs:
                Pc = P[a:b].astype(np.float64) - mean
                cov += Pc.T @ Pc
            cov /= max(1, s.patches - 1)
            evals, evecs = np.linalg.eigh(cov)
            W = (evecs / np.sqrt(np.maximum(evals, 0.0) + s.zca_eps)) @ evecs.T   # (p, p), symmetric
            Xa = np.empty((s.patches, p + 1), dtype=s.dtype)         # whitened patches and a column of ones
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

    def transform(self, X: np.ndarray, out: np.ndarray | None = None, *, desc: str | None = None) -> np.ndarray:
        """Pooled codes (N, n_features) of rows X (N, 3072), in float32 (the dtype setting) or written into ``out``.

        ``out`` (N, n_features) of any float dtype (e.g. a float16 memmap) is
        written block by block; features are not standardised. ``desc`` labels
        the progress bar (default "k-means features").
        """
        s = self._fitted_settings()
        X = _rows(X)
        N, nf = X.shape[0], s.n_features
        out = np.empty((N, nf), dtype=s.dtype) if out is None else check_out(out, N, nf)
        work = PatchEncoder(s, self.centroids_, self.whiten_mean_, self.whiten_)
        bar = Bar(s.progress, N, desc=desc or "k-means features", unit="img")
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
        if not 1 <= version <= FORMAT_VERSION:
            raise ValueError(f"format_version: expected 1 to {FORMAT_VERSION}, got {version}")
        absent = {"power": 1.0} if version < 2 else {}                # version 1 had no power: it was 1
        kwargs: dict[str, Any] = {name: scalar(name, "iu") for name in _INT_SETTINGS}
        kwargs.update({name: absent[name] if name in absent else scalar(name, "fiu") for name in _FLOAT_SETTINGS})
        kwargs["encoder"] = scalar("encoder", "U")
        if version < 3 and kwargs["encoder"] == "soft":
            raise ValueError(f"encoder: a soft encoder of format_version {version} used the centroids' own "
                             "lengths, which this linclf no longer does; fit the features again")
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

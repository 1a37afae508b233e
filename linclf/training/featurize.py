"""Turning the image splits into feature rows as the config's ``features`` section says.

``featurize(cfg, splits, data_dir)`` fits the extractor on the training split
only (or takes a fitted one, e.g. from a model file), extracts every split's
features as float16 rows and returns new Splits plus the extractor. With
``features.cache`` (the default) both the fitted extractor and the features go
through ``features.cache`` in ``<data dir>/features-cache``, so a second run, a
sweep or ``eval`` reuse them. ``feature_prep`` is the standardisation fitted on
the training split's features, which the engine folds into W. ``training_rows``
is the training split as the classifier sees it, whatever the kind (what
``gradcheck`` checks the gradient on); ``row_width`` its width, without data.
``mirror_rows`` gives the rows of the mirror images, for ``model.flip_average``.
``run_features`` builds a config's features ahead of training (``linclf features``).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import Config, FeaturesConfig
from ..core import preprocess
from ..core.model import LinearClassifier
from ..core.preprocess import Preprocessor
from ..data.arrays import NUM_PIXELS
from ..data.cifar10 import resolve_data_dir
from ..data.splits import Splits, mirrored
from ..errors import ConfigError, Interrupted, ModelFileError, UsageError
from ..features import cache
from ..features.registry import LEARNED, extractor_class, extractor_from_arrays
from .run_data import load_data, make_splits

__all__ = ["SPLIT_NAMES", "settings", "feature_seed", "extraction", "make_extractor", "with_execution", "cache_root",
           "fit_extractor", "featurize", "mirror_rows", "feature_prep", "training_rows", "row_width", "model_extractor",
           "run_features"]

SPLIT_NAMES = ("train", "val", "test")
_SETTINGS = {
    "kmeans": ("k", "patch", "stride", "patches", "iterations", "encoder", "alpha", "split", "pool", "power",
               "norm_eps", "zca_eps"),
    "hog_color": ("orientations", "cell", "hue_bins"),
}


def settings(f: FeaturesConfig) -> dict[str, Any]:
    """The config keys that define an extractor of kind ``f.kind`` (its constructor arguments)."""
    return {k: getattr(f, k) for k in _SETTINGS.get(f.kind, ())}


def feature_seed(cfg: Config) -> int:
    """The seed of the extractor's random choices: ``features.seed``, else the config's ``seed``."""
    return cfg.seed if cfg.features.seed is None else cfg.features.seed


def extraction(cfg: Config) -> FeaturesConfig:
    """What decides the features of ``cfg`` (hashable): its features section, the seed resolved where one is used."""
    return dataclasses.replace(cfg.features, seed=feature_seed(cfg) if cfg.features.kind == "kmeans" else None)


def make_extractor(f: FeaturesConfig, seed: int) -> Any:
    """An unfitted extractor of ``f.kind`` with the config's settings (execution settings: ``with_execution``)."""
    kw = settings(f)
    if f.kind == "kmeans":
        kw["seed"] = seed
    extractor = extractor_class(f.kind)(**kw)
    try:
        extractor.check_params()       # the config's checks come first; this names the key all the same
    except ValueError as e:
        raise ConfigError(f"features.{e}") from None
    return extractor


def cache_root(cfg: Config, data_dir: str | os.PathLike | None) -> Path:
    """``<data dir>/features-cache``."""
    return resolve_data_dir(data_dir, cfg.data.dir) / "features-cache"


def fit_extractor(cfg: Config, X_train: np.ndarray, data_dir: str | os.PathLike | None = None, *,
                  progress: bool = False, workers: int | None = None) -> Any:
    """The extractor fitted on training images X_train (N, 3072) uint8; through the cache when enabled.

    ``workers``: threads of the extractor (None: its default, $LINCLF_WORKERS or the usable CPUs).
    """
    f = cfg.features
    extractor = with_execution(make_extractor(f, feature_seed(cfg)), progress, workers)
    if not f.cache:
        return extractor.fit(X_train)
    # keyed on what the fit reads (every setting for an extractor that does not say): the rest is applied to
    # a cached fit, so changing the encoder or the pooling does not fit k-means again
    fit_params = getattr(extractor_class(f.kind), "FIT_PARAMS", None)
    key = {"settings": {k: v for k, v in settings(f).items() if fit_params is None or k in fit_params},
           "seed": extraction(cfg).seed, "images": cache.fingerprint(X_train)}

    def loaded(arrays: Any) -> Any:
        fitted = extractor_from_arrays(f.kind, arrays).set_params(**settings(f))    # this config's transform
        return with_execution(fitted, progress, workers)

    return cache.cached_fit(cache_root(cfg, data_dir), f.kind, key, lambda: extractor.fit(X_train), loaded)


def with_execution(extractor: Any, progress: bool, workers: int | None = None) -> Any:
    """``extractor`` with its progress bar on or off and, where it has threads, ``workers`` of them (if given)."""
    if hasattr(extractor, "progress"):
        extractor.progress = progress
    if workers is not None and hasattr(extractor, "threads"):
        extractor.threads = workers
    return extractor


def extractor_fingerprint(kind: str, extractor: Any) -> str:
    """A digest of a fitted extractor: its kind and every array it stores."""
    return cache.arrays_fingerprint(extractor.to_arrays(), {"kind": kind})


def _rows(cfg: Config, extractor: Any, fp: str, X: np.ndarray, what: str, data_dir: str | os.PathLike | None) -> np.ndarray:
    D = int(extractor.n_features)
    if len(X) == 0:
        return np.empty((0, D), dtype=cache.FEATURE_DTYPE)
    if not cfg.features.cache:
        return extractor.transform(X, out=np.empty((len(X), D), dtype=cache.FEATURE_DTYPE),
                                   desc=f"{cfg.features.kind} features of {what}")
    seed = extraction(cfg).seed                 # set for the kinds whose features depend on it
    about = {**settings(cfg.features), **({"seed": seed} if seed is not None else {})}
    return cache.cached_features(cache_root(cfg, data_dir), cfg.features.kind, extractor, fp, X,
                                 cache.fingerprint(X), what, about)


def featurize(cfg: Config, splits: Splits, data_dir: str | os.PathLike | None = None, *,
              extractor: Any = None, progress: bool = False, only: Sequence[str] = SPLIT_NAMES,
              workers: int | None = None, images: str = "the {} split") -> tuple[Splits, Any]:
    """Splits of float16 feature rows (N, D) (memory-mapped from the cache) and the fitted extractor.

    The extractor is fitted on ``splits.X_train`` unless given. Splits not in
    ``only`` come back empty (0, D). ``workers``: the extractor's threads
    (None: its default). ``images`` names a split's images in notices and the
    cache's listing ({} is the split's name). Ctrl-C raises Interrupted;
    finished splits stay cached, the one being written is discarded.
    """
    kind = cfg.features.kind
    if kind not in LEARNED:
        raise ValueError(f"featurize: features.kind {kind!r} does not extract from images")
    try:
        if extractor is None:
            extractor = fit_extractor(cfg, splits.X_train, data_dir, progress=progress, workers=workers)
        else:
            extractor = with_execution(extractor, progress, workers)
        fp = extractor_fingerprint(kind, extractor)
        D = int(extractor.n_features)
        new = {}
        for name in SPLIT_NAMES:
            X = getattr(splits, f"X_{name}")
            new[f"X_{name}"] = (_rows(cfg, extractor, fp, X, images.format(name), data_dir) if name in only
                                else np.empty((0, D), dtype=cache.FEATURE_DTYPE))
            if name not in only:
                new[f"y_{name}"] = np.empty(0, dtype=getattr(splits, f"y_{name}").dtype)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while building the {kind} features; nothing half-written was kept "
                          "(finished parts stay cached): run the same command again to continue") from None
    return dataclasses.replace(splits, **new), extractor


def mirror_rows(cfg: Config, images: Splits, names: Sequence[str], data_dir: str | os.PathLike | None = None, *,
                extractor: Any = None, progress: bool = False, workers: int | None = None) -> dict[str, np.ndarray]:
    """{name: rows (N, P)} of the mirror images of the image splits ``names``: their pixels, or, with a fitted
    ``extractor``, their features (cached like any others)."""
    mirror = dataclasses.replace(images, **{f"X_{n}": mirrored(getattr(images, f"X_{n}")) for n in names})
    if extractor is not None:
        mirror, _ = featurize(cfg, mirror, data_dir, extractor=extractor, progress=progress, only=names,
                              workers=workers, images="the mirror images of the {} split")
    return {n: getattr(mirror, f"X_{n}") for n in names}


def feature_prep(cfg: Config, X_train: np.ndarray) -> Preprocessor:
    """The preprocessing of feature rows: standardisation fitted on the training split (``features.standardize``).

    With standardisation off, the ``preprocess`` section applies as for pixels.
    """
    p, s = cfg.preprocess, cfg.features.standardize
    return preprocess.fit(X_train, mean=p.mean or s, std=p.std or s, bias=p.bias)


def training_rows(cfg: Config, splits: Splits, data_dir: str | os.PathLike | None = None, *,
                  progress: bool = False, workers: int | None = None) -> tuple[np.ndarray, Preprocessor]:
    """The training rows (N, D) the classifier of ``cfg`` is trained on, and the preprocessing fitted on them.

    ``pixels``: the uint8 images (N, 3072) and the ``preprocess`` section's fit.
    ``npz``: ``splits`` already holds the feature file's rows. ``kmeans`` /
    ``hog_color``: the extractor is fitted and the training split extracted as
    ``linclf train`` does (through the feature cache, with its progress bars),
    on ``workers`` threads (None: the extractor's default); the other splits
    are not built. Features get ``feature_prep``.
    """
    kind = cfg.features.kind
    if kind in LEARNED:
        splits, _ = featurize(cfg, splits, data_dir, progress=progress, only=("train",), workers=workers)
    if kind == "pixels":
        p = cfg.preprocess
        return splits.X_train, preprocess.fit(splits.X_train, mean=p.mean, std=p.std, bias=p.bias)
    return splits.X_train, feature_prep(cfg, splits.X_train)


def row_width(cfg: Config) -> int:
    """Values in a row the classifier of ``cfg`` sees, before the bias: 3072 pixels, the extractor's features
    (from its settings, nothing fitted) or the feature file's columns (the file is read and validated)."""
    kind = cfg.features.kind
    if kind in LEARNED:
        return int(make_extractor(cfg.features, feature_seed(cfg)).n_features)
    if kind == "npz":
        from ..features.npzfile import load_feature_file

        return int(load_feature_file(cfg.features.path).X_train.shape[1])
    return NUM_PIXELS


def model_extractor(model: LinearClassifier, source: str) -> Any:
    """The fitted extractor a model file stores (None for pixels and npz models); ModelFileError if malformed."""
    kind = model.features_kind
    if kind in ("pixels", "npz"):
        return None
    if kind not in LEARNED:
        raise ModelFileError(f"{source}: unknown features kind {kind!r}; it is not a linclf model of this version")
    try:
        extractor = extractor_from_arrays(kind, model.features_arrays)
        D = int(extractor.n_features)
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"{source}: its {kind} feature extractor is malformed: {e}; retrain the model") from None
    if D != model.in_dim:
        raise ModelFileError(f"{source}: its {kind} extractor makes {D} features but W takes {model.in_dim}; "
                             "the file is inconsistent, retrain the model")
    return extractor


def run_features(cfg: Config, *, data_dir: str | os.PathLike | None = None, progress: bool = False,
                 quiet: bool = True, workers: int | None = None) -> dict:
    """Fit the config's extractor and write every split's features into the cache (with
    ``model.flip_average``, those of the val and test images' mirrors too); a summary dict.

    ``workers``: the extractor's threads (None: $LINCLF_WORKERS, else the usable CPUs).

    ``{"kind", "cache", "splits": {name: [rows, features]}, "mirrors": {name: [rows, features]} (empty
    without model.flip_average), "seconds"}``. For ``kind: npz`` the feature file is only validated
    (there is nothing to build).
    """
    t = time.perf_counter()
    kind = cfg.features.kind
    if kind == "pixels":
        raise UsageError("features.kind is pixels: there are no features to build; set features.kind "
                         "(kmeans, hog_color), e.g. --config configs/kmeans.yaml")
    if kind in LEARNED and not cfg.features.cache:
        raise UsageError("features.cache is false, so nothing built would be kept; drop --set features.cache=false")
    data = load_data(cfg, data_dir, quiet=quiet)
    splits = make_splits(cfg, data)
    mirrors = {}
    if kind in LEARNED:
        images = splits
        splits, extractor = featurize(cfg, splits, data_dir, progress=progress, workers=workers)
        if cfg.model.flip_average:                  # the mirrors of val and test, which train then scores
            mirrors = mirror_rows(cfg, images, ("val", "test"), data_dir, extractor=extractor, progress=progress,
                                  workers=workers)
    shapes = {name: list(getattr(splits, f"X_{name}").shape) for name in ("train", "val", "test")}
    where = str(cache_root(cfg, data_dir)) if kind in LEARNED else str(cfg.features.path)
    return {"kind": kind, "cache": where, "splits": shapes,
            "mirrors": {name: list(rows.shape) for name, rows in mirrors.items()},
            "seconds": round(time.perf_counter() - t, 3)}

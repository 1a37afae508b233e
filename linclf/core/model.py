"""LinearClassifier: W, the preprocessing it was trained with, class names; save/load as .npz.

Scores ``s = W x_pre`` are computed from raw uint8 rows with the preprocessing
folded into the weights (``preprocess.fold``), one block of rows at a time. Files
are .npz archives written atomically and read with ``allow_pickle=False``.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import MissingModelError, ModelFileError
from ..fsutil import atomic_open, check_not_folder, json_text, not_npz
from .losses import SCORE_LOSSES
from .objective import scores as chunk_scores
from .preprocess import Preprocessor, fold

__all__ = ["LinearClassifier", "FORMAT_VERSION", "READABLE_VERSIONS", "FEATURE_PREFIX", "save_npz_atomic", "load_npz"]

FORMAT_VERSION = 2          # 2: the feature extractor (kind + its fitted arrays); 1 (pixels only) still loads
READABLE_VERSIONS = (1, 2)
FEATURE_PREFIX = "feat_"


@dataclass
class LinearClassifier:
    """W (C, D) float, prep (how raw rows (N, P) become (N, D)), classes (C names), loss name.

    ``features_kind`` names what a row is ("pixels", or the extractor that made
    it from images: "kmeans", "hog_color", or "npz" for a user's feature file);
    ``features_arrays`` holds that extractor's fitted arrays (stored as
    ``feat_<name>``). The model itself scores rows; ``features.registry`` turns
    images into rows.
    """

    W: np.ndarray
    prep: Preprocessor
    classes: tuple[str, ...]
    loss: str = "softmax"
    config_yaml: str = ""
    metrics: dict = field(default_factory=dict)
    features_kind: str = "pixels"
    features_arrays: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        # the dataclass's own repr printed every array and the whole config YAML
        names = ", ".join(self.classes[:3]) + (", ..." if len(self.classes) > 3 else "")
        return (f"LinearClassifier(loss={self.loss!r}, W={self.W.dtype} {self.W.shape}, "
                f"features={self.features_kind!r}, {len(self.classes)} classes: {names})")

    @property
    def num_classes(self) -> int:
        """C, the number of rows of W."""
        return self.W.shape[0]

    @property
    def in_dim(self) -> int:
        """P, raw values per input row (3072 for CIFAR-10)."""
        return self.W.shape[1] - int(self.prep.bias)

    def check_input(self, X: np.ndarray) -> None:
        """Raise ValueError unless X is (N, P) for this model."""
        if X.ndim != 2 or X.shape[1] != self.in_dim:
            raise ValueError(f"the model expects rows of {self.in_dim} values, got an array of shape {X.shape}")

    def scores(self, X: np.ndarray, X_mirror: np.ndarray | None = None) -> np.ndarray:
        """Class scores (N, C) float32 of raw rows X (N, P), computed a chunk of rows at a time.

        With ``X_mirror`` (N, P), the rows of each image's mirror, the mean of the two scores.
        """
        self.check_input(X)
        A, b = fold(self.W.astype(np.float32, copy=False), self.prep.mean, self.prep.scale, self.prep.bias)
        s = chunk_scores(X, A, b)
        if X_mirror is not None:
            if X_mirror.shape != X.shape:
                raise ValueError(f"X_mirror must have X's shape {X.shape}, got {X_mirror.shape}")
            s += chunk_scores(X_mirror, A, b)
            s *= np.float32(0.5)
        return s

    def predict(self, X: np.ndarray, X_mirror: np.ndarray | None = None) -> np.ndarray:
        """Predicted class indices (N,) int64: the argmax of the scores (of both, with ``X_mirror``)."""
        return self.scores(X, X_mirror).argmax(axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the model, as plain (non-object) arrays."""
        return {
            "format_version": np.array(FORMAT_VERSION),
            "W": self.W,
            "classes": np.array(list(self.classes), dtype=str),
            "loss": np.array(self.loss),
            "config_yaml": np.array(self.config_yaml),
            "metrics_json": np.array(json_text(self.metrics)),
            **self.prep.to_arrays(),
            "features_kind": np.array(self.features_kind),
            **{FEATURE_PREFIX + k: v for k, v in self.features_arrays.items()},
        }

    def save(self, path: str | os.PathLike, extra: Mapping[str, np.ndarray] | None = None) -> Path:
        """Write the model (and ``extra`` arrays, e.g. optimizer state) to ``path`` atomically."""
        return save_npz_atomic(path, {**self.to_arrays(), **(extra or {})})

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], source: str = "model") -> "LinearClassifier":
        """Rebuild and validate; ModelFileError names the file and the field that is wrong."""

        def bad(why: str) -> ModelFileError:
            return ModelFileError(f"{source}: {why}; it is not a linclf model of this version (retrain it)")

        if "format_version" not in arrays:
            raise bad("no format_version field")
        version = arrays["format_version"]
        if version.shape != () or version.dtype.kind not in "iu":
            raise bad("format_version is not an integer")
        if int(version) not in READABLE_VERSIONS:
            raise ModelFileError(f"{source}: model format version {int(version)}, this linclf reads versions "
                                 f"{', '.join(map(str, READABLE_VERSIONS))}; retrain the model with this version")
        for key in ("W", "classes", "loss", "prep_bias"):
            if key not in arrays:
                raise bad(f"field {key} is missing")
        W = arrays["W"]
        if W.ndim != 2 or W.dtype.kind != "f" or min(W.shape) < 1:
            raise bad(f"W must be a 2-D float array (C, D), got {W.dtype} {W.shape}")
        if not np.all(np.isfinite(W)):
            raise bad("W holds non-finite values")
        try:
            prep = Preprocessor.from_arrays(dict(arrays))
        except ValueError as e:
            raise bad(str(e)) from None
        classes = arrays["classes"]
        if classes.dtype.kind != "U" or classes.shape != (W.shape[0],):
            raise bad(f"classes must be {W.shape[0]} names (one per row of W), got {classes.dtype} {classes.shape}")
        P = W.shape[1] - int(prep.bias)
        if prep.in_dim is not None and prep.in_dim != P:
            raise bad(f"W has {W.shape[1]} columns but the preprocessing is for {prep.in_dim} values"
                      f"{' plus a bias' if prep.bias else ''}")
        loss = str(arrays["loss"])
        if loss not in SCORE_LOSSES:
            raise bad(f"unknown loss {loss!r}")
        metrics: dict = {}
        if "metrics_json" in arrays:
            try:
                metrics = json.loads(str(arrays["metrics_json"]))
            except ValueError:
                raise bad("metrics_json is not JSON") from None
        config_yaml = str(arrays["config_yaml"]) if "config_yaml" in arrays else ""
        kind = "pixels"                      # version 1 models: raw pixel rows
        if int(version) >= 2:
            if "features_kind" not in arrays:
                raise bad("field features_kind is missing")
            k = arrays["features_kind"]
            if k.shape != () or k.dtype.kind != "U":
                raise bad("features_kind is not a string")
            kind = str(k)
        feats = {name[len(FEATURE_PREFIX):]: a for name, a in arrays.items() if name.startswith(FEATURE_PREFIX)}
        return cls(W=W, prep=prep, classes=tuple(str(c) for c in classes), loss=loss,
                   config_yaml=config_yaml, metrics=metrics, features_kind=kind, features_arrays=feats)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearClassifier":
        """Read a model file written by ``save`` (or a checkpoint); ModelFileError if it is not one."""
        return cls.from_arrays(load_npz(path), source=os.fspath(path))


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write an uncompressed .npz to a temporary name beside ``path``, fsync it, then move it into place.

    A ``path`` that is a folder: IsADirectoryError suggesting a file in it (``path/model.npz``).
    """
    check_not_folder(path, example="model.npz")
    with atomic_open(path, "wb", fsync=True) as fh:
        np.savez(fh, **arrays)
    return Path(path)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an .npz, loaded with ``allow_pickle=False``; ModelFileError on anything else."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise MissingModelError(f"no model file at {p}")
    if os.path.isdir(p):
        raise MissingModelError(f"{p} is a folder; give the model file inside it (e.g. {p}/model.npz)")
    try:
        why = not_npz(p)
    except OSError as e:
        raise ModelFileError(f"cannot read the model file {p}: {e.strerror or e}") from None
    if why is not None:
        raise ModelFileError(f"{p} is not a zip/npz file {why}", "give a model.npz written by `linclf train` or "
                             "by an estimator's to_model().save(PATH)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:
        why = "it holds pickled objects, which linclf never loads" if "pickle" in str(e) else str(e)
        raise ModelFileError(f"{p} is not a linclf model: {why}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ModelFileError(f"{p} is not a readable model file (truncated or corrupt: {e})") from None
    odd = next((k for k, v in arrays.items() if not isinstance(v, np.ndarray)), None)
    if odd is not None:                     # a zip member that is not an .npy comes back as bytes
        raise ModelFileError(f"{p} is not a linclf model: its member {odd} is not a NumPy array (.npy)")
    return arrays

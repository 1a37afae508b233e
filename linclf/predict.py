"""Classifying picture files with a saved model: the pictures as rows the model takes, their top classes."""
from __future__ import annotations

import os
from typing import Sequence

from .core.model import LinearClassifier
from .data.splits import mirrored
from .errors import UsageError
from .features.cache import FEATURE_DTYPE
from .images import NUM_VALUES, classify, image_files, load_image_rows, require_pillow
from .training.evaluate import model_config
from .training.featurize import model_extractor

__all__ = ["predict_files"]


def predict_files(model_path: str | os.PathLike, paths: Sequence[str | os.PathLike], top: int = 3) -> dict:
    """The ``top`` classes of each picture in ``paths`` (files, or folders of them) under the model saved at
    ``model_path``: ``{"model", "kind": "probability" | "score", "images": [{"path", "top": [{"class", kind}]}
    or {"path", "error"}]}``, in the order of the files.

    The pictures become the rows the model was trained on: 32x32 RGB pixels, through the model's own
    extractor for learned features, with their mirrors for ``model.flip_average``. UsageError for a model
    that cannot take pictures (precomputed features, rows of another width).
    """
    model = LinearClassifier.load(model_path)
    if model.features_kind == "npz":
        raise UsageError(f"{model_path} was trained on precomputed features (features.kind npz), so it cannot "
                         "turn a picture into its rows; score your own feature rows in Python with "
                         "LinearClassifier.load(PATH).predict(rows)")
    extractor = model_extractor(model, os.fspath(model_path))
    require_pillow()
    if extractor is None and model.in_dim != NUM_VALUES:
        raise UsageError(f"{model_path} takes rows of {model.in_dim} values; predict feeds it 32x32 RGB images "
                         f"({NUM_VALUES} values), so it needs a model trained on CIFAR-10-shaped data")
    files, empty = image_files(paths)
    loaded = load_image_rows([f for f in files if f not in empty])
    rows = loaded.rows
    mirror = mirrored(rows) if model_config(model, model_path).model.flip_average else None
    if extractor is not None and loaded.paths:
        rows = extractor.transform(rows).astype(FEATURE_DTYPE)   # as the model's training rows were stored
        if mirror is not None:
            mirror = extractor.transform(mirror).astype(FEATURE_DTYPE)
    found = dict(zip(loaded.paths, classify(model, rows, top, mirror))) if loaded.paths else {}
    failed = {**dict(loaded.errors), **empty}
    kind = "probability" if model.loss == "softmax" else "score"
    entries = []
    for path in files:
        if path in found:
            p = found[path]
            entries.append({"path": path, "top": [{"class": c, kind: v} for c, v in zip(p.classes, p.values)]})
        else:
            entries.append({"path": path, "error": failed[path]})
    return {"model": os.fspath(model_path), "kind": kind, "images": entries}

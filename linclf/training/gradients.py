"""The gradient check of a config: the rows its classifier sees, and its analytic gradient against numerical ones."""
from __future__ import annotations

import os

import numpy as np

from ..config import Config
from ..core.gradcheck import as_plain, check_loss
from ..core.losses import initial_loss
from ..errors import ConfigError, UsageError
from .featurize import row_width, training_rows
from .loop import rng_stream
from .run_data import load_data, make_splits

__all__ = ["gradcheck_data", "run_gradcheck"]


def gradcheck_data(cfg: Config, *, synthetic: bool, batch: int, data_dir: str | os.PathLike | None = None,
                   quiet: bool = True, workers: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """float64 rows X (batch, D) (the bias column last with preprocess.bias), labels y (batch,) and C, for a gradient
    check.

    Real data: ``batch`` random training rows as the classifier of the config
    sees them (``featurize.training_rows``: pixels, the feature file's rows, or
    k-means / HOG features built through the feature cache as ``train`` builds
    them), through the preprocessing ``train`` fits. Synthetic: standard-normal
    rows of the same width (``featurize.row_width``), 10 classes, so the check
    runs anywhere. ``workers``: the feature extractor's threads (None: $LINCLF_WORKERS, else the usable CPUs).
    """
    rng = rng_stream(cfg.seed, "gradcheck")
    if synthetic:
        C, P = 10, row_width(cfg)
        X = rng.standard_normal((batch, P))
        y = rng.integers(0, C, batch)
        if cfg.preprocess.bias:
            X = np.hstack([X, np.ones((batch, 1))])
        return X, y, C
    data = load_data(cfg, data_dir, quiet=quiet)
    splits = make_splits(cfg, data)
    if batch > len(splits.y_train):
        raise ConfigError(f"--batch {batch} is more than the {len(splits.y_train)} training rows")
    X_train, prep = training_rows(cfg, splits, data_dir, progress=not quiet, workers=workers)
    idx = np.sort(rng.choice(len(splits.y_train), size=batch, replace=False))
    return prep.transform(X_train[idx], np.float64), splits.y_train[idx], len(splits.classes)


def run_gradcheck(cfg: Config, *, synthetic: bool = False, batch: int = 100, checks: int = 20, h: float = 1e-5,
                  method: str = "centered", threshold: float | None = None,
                  data_dir: str | os.PathLike | None = None, quiet: bool = True,
                  workers: int | None = None) -> dict:
    """Check the configured loss's analytic gradient at the configured initial W, in float64.

    Returns ``gradcheck.check_loss``'s result (plain dicts) plus ``init_loss``
    (the data loss at W) and ``expected_init_loss`` (``losses.initial_loss``: what a
    small W starts near), where the data came from, the
    features kind and ``dim``, the width D of the rows checked (bias included).
    """
    X, y, C = gradcheck_data(cfg, synthetic=synthetic, batch=batch, data_dir=data_dir, quiet=quiet,
                             workers=workers)
    m = cfg.model
    W = rng_stream(cfg.seed, "init").standard_normal((C, X.shape[1])) * m.init_scale
    if np.any(W + h == W) or np.any(W - h == W):
        raise UsageError(f"--h {h:g} is below the spacing of W's float64 values (up to {np.abs(W).max():.3g} at "
                         f"model.init_scale {m.init_scale:g}): W + h rounds to W; use a larger --h, e.g. 1e-5")
    result = as_plain(check_loss(W, X, y, loss=m.loss, delta=m.delta, reg=m.reg,
                                 reg_bias=m.reg_bias or not cfg.preprocess.bias,     # no bias column: all weights
                                 checks=checks, h=h, method=method, rng=rng_stream(cfg.seed, "gradcheck"),
                                 threshold=threshold))
    expected = initial_loss(m.loss, C, m.delta)
    data = "synthetic" if synthetic else "feature file" if cfg.features.kind == "npz" else "cifar-10"
    return {**result, "init_loss": result["values"]["data"], "expected_init_loss": expected,
            "data": data, "features": cfg.features.kind, "dim": int(X.shape[1]), "batch": batch,
            "init_scale": m.init_scale}

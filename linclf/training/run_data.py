"""The data a run reads, with its paths made absolute, and the config's train / val / test split of it."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import Config, with_values
from ..data.cifar10 import CIFAR10, load_cifar10, resolve_data_dir
from ..data.splits import Splits, split, with_mirrors
from .loop import rng_stream

__all__ = ["located", "load_data", "make_splits"]


def located(cfg: Config, data_dir: str | os.PathLike | None = None) -> Config:
    """``cfg`` with ``data.dir`` (and a relative ``data.archive`` and ``features.path``) made absolute, as a
    run records them.

    The folder is the one ``load_data`` reads (``--data-dir``, $LINCLF_DATA_DIR, ``data.dir``, the user
    cache), so ``eval`` and ``plot`` of a run, and a sweep's workers, find its data from any working directory.
    """
    values: dict = {"data.dir": str(resolve_data_dir(data_dir, cfg.data.dir))}
    for key, path in (("data.archive", cfg.data.archive), ("features.path", cfg.features.path)):
        if path is not None:
            values[key] = str(Path(path).expanduser().absolute())
    return with_values(cfg, values)


def load_data(cfg: Config, data_dir: str | os.PathLike | None = None, *, quiet: bool = True) -> CIFAR10:
    """CIFAR-10 as the config's data section says (archive, format, mirrors); never downloads implicitly
    unless no archive is configured, in which case the official download is used. With
    ``features.kind: npz``, the user's feature file instead (the same fields, float rows)."""
    if cfg.features.kind == "npz":
        from ..features.npzfile import load_feature_file

        return load_feature_file(cfg.features.path)  # type: ignore[return-value]
    d = cfg.data
    return load_cifar10(resolve_data_dir(data_dir, d.dir), d.format, download=d.archive is None,
                        archive=d.archive, md5=d.md5, urls=d.urls, timeout=d.timeout, retries=d.retries,
                        quiet=quiet)


def make_splits(cfg: Config, data: CIFAR10, *, mirrors: bool = True) -> Splits:
    """The config's train / val / test split of ``data``; with ``data.flip`` (and ``mirrors``) the training
    split's mirror images are appended (a caller that never reads the training split skips that copy)."""
    d = cfg.data
    splits = split(data, d.num_train, d.num_val, d.num_test, d.num_dev, rng=rng_stream(cfg.seed, "dev"))
    return with_mirrors(splits) if d.flip and mirrors else splits

"""The .npy cache of the extracted batches: written once (arrays first, then the record that makes them valid),
memory-mapped and checked on later loads, rebuilt with a warning when damaged or built from other files."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError, LinclfWarning, short_reason
from ..fsutil import atomic_open, unlink_quiet, write_json_atomic
from .arrays import CIFAR10, NUM_PIXELS
from .batches import read_batch, read_classes
from .layout import LAYOUTS, NUM_CLASSES, Layout, folder_id

__all__ = ["load_folder"]

_CACHE_VERSION = 1
_ARRAYS = ("X_train", "y_train", "X_test", "y_test")


def _source_key(folder: Path, layout: Layout) -> dict:
    """What the cache was built from: the folder and each batch file's size and mtime."""
    return {"version": _CACHE_VERSION, **folder_id(folder, layout)}


def _cache_dir(data_dir: Path, fmt: str) -> Path:
    return data_dir / f"cifar-10-{fmt}-cache"


def _load_cache(cache: Path, key: dict) -> CIFAR10 | None:
    """The cached arrays (X memory-mapped) if the cache was built from ``key``'s batches, else None.

    Raises DataError naming the file when such a cache is damaged (unreadable,
    wrong dtype or shape, a label outside 0-9, not 10 distinct class names).
    """
    try:
        meta = json.loads((cache / "source.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None
    arrays = {name: _open_npy(cache / f"{name}.npy", mmap=name[0] == "X") for name in _ARRAYS}
    classes = meta.get("classes")
    if not (isinstance(classes, list) and all(isinstance(c, str) and c for c in classes)
            and len(classes) == len(set(classes)) == NUM_CLASSES):
        raise DataError(f"{cache / 'source.json'} does not list {NUM_CLASSES} distinct class names")
    for x, y in (("X_train", "y_train"), ("X_test", "y_test")):
        bad = _arrays_problem(arrays, x, y)
        if bad is not None:
            raise DataError(f"{cache / bad[0]}.npy {bad[1]}")
    return CIFAR10(classes=tuple(classes), **arrays)


def _open_npy(path: Path, mmap: bool) -> np.ndarray:
    """The array of the .npy file ``path`` (memory-mapped if ``mmap``), never a pickle; DataError if unreadable."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise DataError(f"{path} is not a .npy file")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path} cannot be read ({short_reason(e)})") from None


def _arrays_problem(arrays: dict[str, np.ndarray], x: str, y: str) -> tuple[str, str] | None:
    """(array name, what is wrong) for cached rows ``arrays[x]`` and their labels ``arrays[y]``, or None."""
    X, labels = arrays[x], arrays[y]
    if X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != NUM_PIXELS or not len(X) or not X.flags.c_contiguous:
        return x, f"holds {X.dtype} {X.shape}, expected uint8 rows (N, {NUM_PIXELS}), N >= 1"
    if labels.dtype != np.int64 or labels.shape != (len(X),):
        return y, f"holds {labels.dtype} {labels.shape}, expected int64 ({len(X)},)"
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= NUM_CLASSES:
        return y, f"holds labels in [{lo}, {hi}], expected 0-{NUM_CLASSES - 1}"
    return None


def _save_array_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def _write_cache(cache: Path, key: dict, data: CIFAR10) -> None:
    """Write the arrays, then the source record that makes them valid (last, so a crash leaves no valid cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    unlink_quiet(cache / "source.json")
    for name in _ARRAYS:
        _save_array_atomic(cache / f"{name}.npy", getattr(data, name))
    write_json_atomic(cache / "source.json", {"key": key, "classes": list(data.classes)})


def _read_folder(folder: Path, layout: Layout, fmt: str) -> CIFAR10:
    """Read and validate every batch of an extracted folder (the slow path, done once)."""
    train = [read_batch(folder / name, fmt) for name in layout.train_files]
    X_test, y_test = read_batch(folder / layout.test_file, fmt)
    X_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train]).astype(np.int64)
    classes = tuple(read_classes(folder / layout.meta_file, fmt))
    return CIFAR10(X_train, y_train, X_test, y_test.astype(np.int64), classes)


def load_folder(folder: Path, fmt: str, data_dir: str | os.PathLike, *, cache: bool = True,
                rebuild: bool = False) -> CIFAR10:
    """Read (and validate) the extracted batches in ``folder`` (format ``fmt``), through the .npy cache in
    ``data_dir``: built once, memory-mapped and checked on later loads, rebuilt when damaged or stale."""
    layout = LAYOUTS[fmt]
    key = _source_key(folder, layout)
    cache_dir = _cache_dir(Path(data_dir), fmt)
    if cache and not rebuild:
        try:
            cached = _load_cache(cache_dir, key)
        except DataError as e:
            warnings.warn(f"{e}; rebuilding the cache from {folder}", LinclfWarning, stacklevel=2)
            cached = None
        if cached is not None:
            return cached
    data = _read_folder(folder, layout, fmt)
    if cache:
        try:
            _write_cache(cache_dir, key, data)
        except OSError as e:
            warnings.warn(f"could not write the cache in {cache_dir} ({e.strerror}); "
                          "loading will be slow each time", LinclfWarning, stacklevel=2)
            return data
        try:
            cached = _load_cache(cache_dir, key)
        except DataError:
            cached = None   # written but not readable back: use the parsed copy
        if cached is not None:
            return cached   # memory-mapped: the parsed copy can be freed
    return data

"""Readers of the CIFAR-10 batch files of an extracted folder, which check every field they return.

``read_batch`` reads a binary batch (records of 1 label byte and 3072 pixel
bytes) or a python batch (a pickle read by ``unpickle.safe_unpickle``, its
'data' and 'labels' fields checked); ``read_classes`` reads the 10 class names
of the meta file of either format. Each error is a DataError that names the
file and the field, record or entry that is wrong. Files above
``MAX_MEMBER_BYTES`` are not read.

Shapes: a batch is X (N, 3072) uint8, rows of 1024 red, 1024 green, 1024 blue
pixels (32 x 32, row-major), and y (N,) uint8 labels in [0, 10).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from .layout import FORMATS, IMAGE_BYTES, LAYOUTS, MAX_MEMBER_BYTES, NUM_CLASSES, RECORD_BYTES, REEXTRACT
from .unpickle import safe_unpickle

__all__ = ["read_batch", "read_classes"]


def _check_format(fmt: str) -> None:
    """Raise UsageError unless ``fmt`` is one of FORMATS."""
    if fmt not in LAYOUTS:
        raise UsageError(f"unknown CIFAR-10 format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _read_bytes(path: Path) -> bytes:
    """The bytes of the regular file ``path`` (at most MAX_MEMBER_BYTES), or DataError."""
    try:
        size = os.stat(path).st_size
        if not path.is_file():
            raise DataError(f"{path} is not a regular file; {REEXTRACT}")
        if size > MAX_MEMBER_BYTES:
            raise DataError(f"{path} is {size} bytes, above the {MAX_MEMBER_BYTES}-byte cap for a CIFAR-10 file; "
                            f"{REEXTRACT}")
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} not found; {REEXTRACT}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}; check the file and its permissions") from None


def read_batch(path: str | os.PathLike, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file of format ``fmt`` ("binary" | "python").

    Returns X (N, 3072) uint8 C-contiguous and y (N,) uint8 in [0, 10), N >= 1.
    Raises DataError naming the file and the field that is wrong.
    """
    _check_format(fmt)
    path = Path(path)
    data = _read_bytes(path)
    return _parse_binary_batch(data, path) if fmt == "binary" else _parse_python_batch(data, path)


def _parse_binary_batch(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Split binary records (1 label byte + 3072 pixel bytes each) into X (N, 3072) and y (N,)."""
    if not data:
        raise DataError(f"{path} is empty; {REEXTRACT}")
    if len(data) % RECORD_BYTES:
        raise DataError(f"{path} is {len(data)} bytes, not a whole number of {RECORD_BYTES}-byte records; {REEXTRACT}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)  # (N, 3073)
    y = records[:, 0].copy()                                                 # (N,)
    bad = np.flatnonzero(y >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: record {i} (byte offset {i * RECORD_BYTES}) has label byte {int(y[i])}, "
                        f"not 0-9; {REEXTRACT}")
    X = np.ascontiguousarray(records[:, 1:])                                 # (N, 3072), a copy
    return X, y


def _parse_python_batch(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle a python-format batch and check its 'data' (N, 3072) uint8 and 'labels' (N,) fields."""
    batch = safe_unpickle(data, source=str(path))
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict with 'data' and 'labels'; "
                        f"{REEXTRACT}")
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{path} has no {key!r} field (keys: {', '.join(map(repr, batch))}); {REEXTRACT}")
    return _check_pixels(batch["data"], path), _check_labels(batch["labels"], len(batch["data"]), path)


def _check_pixels(X: Any, path: Path) -> np.ndarray:
    """``X`` as a C-contiguous writable uint8 (N, 3072) array, or DataError naming the field."""
    if not isinstance(X, np.ndarray):
        raise DataError(f"{path}: field 'data' is a {type(X).__name__}, not a numpy array; {REEXTRACT}")
    if X.dtype != np.uint8:
        raise DataError(f"{path}: field 'data' has dtype {X.dtype}, expected uint8; {REEXTRACT}")
    if X.ndim != 2 or X.shape[1] != IMAGE_BYTES or X.shape[0] < 1:
        raise DataError(f"{path}: field 'data' has shape {X.shape}, expected (N, {IMAGE_BYTES}) with N >= 1; "
                        f"{REEXTRACT}")
    X = np.ascontiguousarray(X)
    return X if X.flags.writeable else X.copy()


def _check_labels(labels: Any, n: int, path: Path) -> np.ndarray:
    """``labels`` (a list or 1-D array of n ints in [0, 10)) as uint8 (n,), or DataError naming the field."""
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise DataError(f"{path}: field 'labels' is a {type(labels).__name__}, not a list of ints; {REEXTRACT}")
    if len(labels) != n:
        raise DataError(f"{path}: field 'labels' has {len(labels)} entries but 'data' has {n} rows; {REEXTRACT}")
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{path}: field 'labels' is an array of dtype {labels.dtype} and shape {labels.shape}, "
                            f"expected ({n},) ints; {REEXTRACT}")
        bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
        i = int(bad[0]) if bad.size else None
    else:
        i = next((i for i, v in enumerate(labels) if not (_is_int(v) and 0 <= v < NUM_CLASSES)), None)
    if i is not None:
        v = labels[i]
        what = "not in 0-9" if _is_int(v) else "not an int"
        raise DataError(f"{path}: field 'labels' entry {i} is {v!r}, {what}; {REEXTRACT}")
    return np.array(labels, dtype=np.uint8)


def _is_int(v: Any) -> bool:
    """Whether ``v`` is an integer (Python or numpy), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def read_classes(path: str | os.PathLike, fmt: str) -> list[str]:
    """Read the 10 class names from a meta file (``batches.meta.txt`` or ``batches.meta``).

    Raises DataError naming the file when the count is not 10 or a name is
    empty, duplicated or not a string.
    """
    _check_format(fmt)
    path = Path(path)
    data = _read_bytes(path)
    names = _parse_meta_txt(data, path) if fmt == "binary" else _parse_meta_pickle(data, path)
    return _check_names(names, path)


def _parse_meta_txt(data: bytes, path: Path) -> list[Any]:
    """Class names of ``batches.meta.txt``: one a line, then blank lines."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}); {REEXTRACT}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _parse_meta_pickle(data: bytes, path: Path) -> list[Any]:
    """Class names of the pickled ``batches.meta`` (its 'label_names' field, bytes decoded)."""
    meta = safe_unpickle(data, source=str(path))
    if not isinstance(meta, dict):
        raise DataError(f"{path} holds a {type(meta).__name__}, not a CIFAR-10 meta dict with 'label_names'; "
                        f"{REEXTRACT}")
    if "label_names" not in meta:
        raise DataError(f"{path} has no 'label_names' field (keys: {', '.join(map(repr, meta))}); {REEXTRACT}")
    names = meta["label_names"]
    if not isinstance(names, (list, tuple)):
        raise DataError(f"{path}: field 'label_names' is a {type(names).__name__}, not a list of names; {REEXTRACT}")
    out: list[Any] = []
    for i, name in enumerate(names):
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}: field 'label_names' entry {i} is not UTF-8 text; {REEXTRACT}") from None
        out.append(name.strip() if isinstance(name, str) else name)
    return out


def _check_names(names: list[Any], path: Path) -> list[str]:
    """``names`` if they are exactly 10 distinct non-empty strings, else DataError naming the file."""
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path} lists {len(names)} class names, expected {NUM_CLASSES}; {REEXTRACT}")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise DataError(f"{path}: class name {i} is a {type(name).__name__}, not a string; {REEXTRACT}")
        if not name:
            raise DataError(f"{path}: class name {i} is empty; {REEXTRACT}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: class name {dup!r} appears twice; {REEXTRACT}")
    return list(names)

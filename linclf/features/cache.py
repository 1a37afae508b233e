"""The feature cache: extracted features and fitted extractors, written once, never trusted blindly.

Layout under ``root`` (``<data dir>/features-cache``)::

    fit-<kind>-<key hash>.npz            a fitted extractor's arrays + the key they were fitted under
    <kind>-<extractor hash>/<images hash>.npy    float16 features (N, D) of one set of images
    <kind>-<extractor hash>/<images hash>.json   the key of that file: settings, fingerprints, shape,
                                                 and a checksum of the .npy's bytes; what it holds
                                                 (``about``: which images, the extractor's settings)

The extractor hash covers the fitted arrays and settings; the images hash covers
the pixels themselves. Every file goes to a temporary name in the same folder,
then ``os.replace``. A truncated file, a key that differs (other settings, other
images) or a checksum that does not match is reported with a one-line warning
and rebuilt. Ctrl-C or a full disk during a write leaves the previous entry as
it was and no file under a final name.

A hit touches the entry (its modification time is its last use), which
``cache_contents`` lists; entries are deleted only there, when a user asks.
"""
from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from ..core.rows import float16_overflows
from ..errors import DataError, LinclfWarning
from ..fsutil import atomic_open, unlink_quiet, write_json_atomic

__all__ = ["Extractor", "CacheError", "CACHE_VERSION", "FEATURE_DTYPE", "fingerprint", "arrays_fingerprint", "cached_fit",
           "cached_features", "features_path"]

CACHE_VERSION = 3             # 3: float16 features (2: float32; 1: the checksum was BLAKE2b, now SHA-256)
# float16: half float32's memory and disk, relative rounding 2**-11, far below what a linear classifier on
# standardised features notices; the engine converts it by its bits (core.rows), as fast as a float32 gather
FEATURE_DTYPE = np.dtype(np.float16)
_CHUNK = 1 << 24              # bytes hashed at a time


class Extractor(Protocol):
    """What the cache needs of a feature extractor."""

    @property
    def n_features(self) -> int: ...

    def transform(self, X: np.ndarray, out: np.ndarray | None = None, *, desc: str | None = None) -> np.ndarray: ...

    def to_arrays(self) -> dict[str, np.ndarray]: ...


class CacheError(DataError):
    """A cache entry could not be written (disk full, permissions): exit 1, the previous entry intact."""


def _hash_bytes(h: "hashlib._Hash", a: np.ndarray) -> None:
    """Feed array ``a``'s bytes (C order) into ``h`` a chunk of rows at a time (no full copy)."""
    a = np.asarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if a.ndim == 0 or a.size == 0:
        h.update(np.ascontiguousarray(a).tobytes())
        return
    rows = max(1, _CHUNK // max(1, a[0].nbytes))
    for i in range(0, len(a), rows):
        h.update(np.ascontiguousarray(a[i:i + rows]).data)


def fingerprint(a: np.ndarray) -> str:
    """A hex digest of an array's dtype, shape and bytes (e.g. the pixels of a split)."""
    h = hashlib.blake2b(digest_size=20)
    _hash_bytes(h, a)
    return h.hexdigest()


def arrays_fingerprint(arrays: Mapping[str, np.ndarray], extra: Mapping[str, Any] | None = None) -> str:
    """A hex digest of named arrays (sorted by name) and a JSON-able mapping of settings."""
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps(extra or {}, sort_keys=True, default=str).encode())
    for name in sorted(arrays):
        h.update(name.encode())
        _hash_bytes(h, arrays[name])
    return h.hexdigest()


def _key_hash(key: Mapping[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()


def _notice(message: str) -> None:
    warnings.warn(message, LinclfWarning, stacklevel=3)


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"cannot create the feature cache folder {folder}: {e.strerror or e}; choose another "
                         "data folder (--data-dir) or set features.cache false") from None


def _write_failed(path: Path, e: OSError) -> CacheError:
    return CacheError(f"could not write the feature cache file {path}: {e.strerror or e}; the previous cache "
                      "is untouched; free some space or set features.cache false")


# ----------------------------------------------------------------- fitted extractors


def cached_fit(root: str | os.PathLike, kind: str, key: Mapping[str, Any], fit: Callable[[], Extractor],
               from_arrays: Callable[[dict[str, np.ndarray]], Extractor]) -> Extractor:
    """The extractor fitted under ``key`` (settings + training images' fingerprint): from the cache, else ``fit()``.

    A cached file that is unreadable, fitted under another key or rejected by
    ``from_arrays`` is reported (one warning) and refitted.
    """
    root = Path(root)
    full_key = {"version": CACHE_VERSION, "kind": kind, **key}
    path = root / f"fit-{kind}-{_key_hash(full_key)}.npz"
    if path.exists():
        why = None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            stored = json.loads(str(arrays.pop("cache_key")))
            if stored != full_key:
                why = "it was fitted with other settings or on other images"
            else:
                extractor = from_arrays(arrays)
                _touch(path)
                return extractor
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            # NumPy calls any file that is neither .npy nor zip "pickled data"; say what it is instead
            why = (f"it is unreadable ({e})" if zipfile.is_zipfile(path)
                   else "it is not a whole .npz file: truncated or overwritten")
        _notice(f"the cached {kind} extractor {path} is not usable ({why}); fitting it again")
    extractor = fit()
    _mkdir(root)
    try:
        with atomic_open(path, "wb") as fh:
            np.savez(fh, cache_key=np.array(json.dumps(full_key, sort_keys=True)), **extractor.to_arrays())
    except OSError as e:
        raise _write_failed(path, e) from None
    return extractor


# --------------------------------------------------------------------- features


def features_path(root: str | os.PathLike, kind: str, extractor_fp: str, images_fp: str) -> Path:
    """Where the features of one set of images under one fitted extractor live."""
    return Path(root) / f"{kind}-{extractor_fp[:16]}" / f"{images_fp[:16]}.npy"


def _file_checksum(path: Path) -> str:
    # SHA-256, not BLAKE2b: a warm run verifies every byte of its features, and OpenSSL's SHA-256 uses the
    # CPU's SHA instructions where they exist (scripts/bench.py, "checksum")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m, memoryview(m) as view:
                for i in range(0, len(view), _CHUNK):         # hashed in place: no copy out of the page cache
                    h.update(view[i:i + _CHUNK])
    return h.hexdigest()


def _load_entry(path: Path, key: dict, verify: bool = True) -> tuple[np.ndarray | None, str]:
    """The cached features memory-mapped (None with the reason when the entry is absent or not usable).

    ``verify=False`` skips the checksum, for an entry whose checksum was just computed from its bytes.
    """
    meta_path = path.with_suffix(".json")
    if not path.exists():
        return None, ""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        return None, f"its record {meta_path.name} is missing or unreadable ({type(e).__name__})"
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None, "it was built with other settings or from other images"
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        return None, f"it is truncated or corrupt ({e})"
    if X.dtype != FEATURE_DTYPE or X.shape != tuple(key["shape"]):
        return None, f"it holds {X.dtype} {X.shape}, expected {FEATURE_DTYPE} {tuple(key['shape'])}"
    if os.path.getsize(path) != meta.get("size") or (verify and _file_checksum(path) != meta.get("checksum")):
        return None, "its bytes do not match its checksum (modified or corrupt)"
    _touch(meta_path)
    return X, ""


def _reserve(fd: int, size: int) -> None:
    """Allocate the file's blocks up front, so a full disk fails here with ENOSPC, not later in a page fault."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    os.ftruncate(fd, size)


def cached_features(root: str | os.PathLike, kind: str, extractor: Extractor, extractor_fp: str,
                    X: np.ndarray, images_fp: str, what: str = "the images",
                    settings: Mapping[str, Any] | None = None) -> np.ndarray:
    """Features (N, D) float16 of image rows X (N, P), memory-mapped from the cache; built when absent or stale.

    ``extractor_fp`` fingerprints the fitted extractor, ``images_fp`` the rows X;
    ``what`` (which images) and ``settings`` (the extractor's) describe the
    entry in the listing, and are not part of its key.
    The features are written by ``extractor.transform(X, out=...)`` straight into
    a preallocated temporary .npy, checksummed, then moved into place.
    """
    D = int(extractor.n_features)
    key = {"version": CACHE_VERSION, "kind": kind, "extractor": extractor_fp, "images": images_fp,
           "shape": [int(len(X)), D]}
    path = features_path(root, kind, extractor_fp, images_fp)
    cached, why = _load_entry(path, key)
    if cached is not None:
        return cached
    if why:
        _notice(f"the cached {kind} features of {what} ({path}) are not usable ({why}); rebuilding them")
    _mkdir(path.parent)
    header = {"descr": np.lib.format.dtype_to_descr(FEATURE_DTYPE), "fortran_order": False,
              "shape": (int(len(X)), D)}
    try:
        with atomic_open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            fh.flush()
            offset = fh.tell()
            size = offset + len(X) * D * FEATURE_DTYPE.itemsize
            _reserve(fh.fileno(), size)
            if len(X):
                out = np.memmap(fh, dtype=FEATURE_DTYPE, mode="r+", offset=offset, shape=(len(X), D))
                try:
                    extractor.transform(X, out=out, desc=f"{kind} features of {what}")
                    if float16_overflows(out):
                        raise CacheError(f"the {kind} features of {what} exceed float16's range (65,504) or are "
                                         "not finite; they cannot be cached")
                    out.flush()
                finally:
                    del out
            fh.seek(0, os.SEEK_END)
        # the record last: until it is written, the entry does not validate
        write_json_atomic(path.with_suffix(".json"),
                          {"key": key, "size": os.path.getsize(path), "checksum": _file_checksum(path),
                           "about": {"images": what, "settings": dict(settings or {})}})
    except OSError as e:
        raise _write_failed(path, e) from None
    X_cached, why = _load_entry(path, key, verify=False)
    if X_cached is None:               # pragma: no cover - only if another process replaced it meanwhile
        unlink_quiet(path.with_suffix(".json"))
        raise CacheError(f"the feature cache file {path} changed while it was written ({why}); run again")
    return X_cached


def _touch(path: Path) -> None:
    """Mark an entry used now (its modification time), where the file system lets us."""
    try:
        os.utime(path)
    except OSError:
        pass

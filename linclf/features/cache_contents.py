"""What the feature cache holds, and deleting entries of it: ``linclf features --list`` and ``--clear``.

The cache (``cache``) never deletes an entry of other settings: it cannot
know whether a user will come back to them. Here a user sees each entry's
size, when it was last used (a cache hit touches it) and what it says of
itself, and deletes all entries or the ones unused for a while. Only files
the cache writes are listed, and so only they can be deleted.
"""
from __future__ import annotations

import json
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import CacheError

__all__ = ["CacheEntry", "UNFINISHED_AGE", "contents", "remove"]

# the names ``cache`` gives its files (``cache.features_path``, ``cache.cached_fit``); nothing else is touched
_FIT = re.compile(r"fit-([a-z_]+)-[0-9a-f]{16}\.npz")
_FOLDER = re.compile(r"([a-z_]+)-[0-9a-f]{16}")
_SET = re.compile(r"[0-9a-f]{16}\.(npy|json)")


@dataclass(frozen=True)
class CacheEntry:
    """One entry of the cache, as ``linclf features --list`` shows it.

    ``what`` is "features" (a .npy and its .json record), "extractor" (a
    fitted extractor's .npz) or "unfinished" (a temporary file a killed
    process left); ``used`` the last time it was written or read (POSIX
    seconds); ``shape`` the features' (N, D); ``about`` what the entry says of
    itself: for features "images" and the extractor's "settings", for an
    extractor the "settings" and "seed" it was fitted with ({} when unknown:
    written by an older linclf, or unreadable).
    """

    paths: tuple[Path, ...]
    what: str
    kind: str
    size: int
    used: float
    shape: tuple[int, int] | None = None
    about: dict = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _fit_entry(path: Path) -> CacheEntry:
    try:
        with np.load(path, allow_pickle=False) as npz:
            key = json.loads(str(npz["cache_key"]))
        about = {"settings": key.get("settings", {}), "seed": key.get("seed")}
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile):
        about = {}
    st = path.stat()
    return CacheEntry((path,), "extractor", _FIT.fullmatch(path.name).group(1), st.st_size, st.st_mtime,
                      about=about)


def _features_entry(folder: Path, stem: str) -> CacheEntry:
    paths = tuple(p for p in (folder / f"{stem}.npy", folder / f"{stem}.json") if p.exists())
    stats = [p.stat() for p in paths]
    record = _read_json(folder / f"{stem}.json")
    shape = record.get("key", {}).get("shape") if isinstance(record.get("key"), dict) else None
    about = record.get("about") if isinstance(record.get("about"), dict) else {}
    return CacheEntry(paths, "features", _FOLDER.fullmatch(folder.name).group(1), sum(st.st_size for st in stats),
                      max(st.st_mtime for st in stats),
                      tuple(shape) if isinstance(shape, list) and len(shape) == 2 else None, about)


def _unfinished(path: Path) -> bool:
    """A temporary file of ``fsutil.atomic_open`` (.<final name>.<random>.tmp)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _unfinished_entry(path: Path, kind: str) -> CacheEntry:
    st = path.stat()
    return CacheEntry((path,), "unfinished", kind, st.st_size, st.st_mtime)


def contents(root: str | os.PathLike) -> list[CacheEntry]:
    """The entries under ``root`` (none if it does not exist), most recently used first.

    Only files the cache writes are listed (and so only they can be removed):
    ``fit-*.npz``, ``<kind>-<hash>/*.npy|json`` and temporary files of
    unfinished writes; anything else in the folder is left alone.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    entries = []
    for path in sorted(root.iterdir()):
        if path.is_file() and _FIT.fullmatch(path.name):
            entries.append(_fit_entry(path))
        elif path.is_file() and _unfinished(path):
            entries.append(_unfinished_entry(path, ""))
        elif path.is_dir() and _FOLDER.fullmatch(path.name):
            files = sorted(p for p in path.iterdir() if p.is_file())
            for stem in sorted({p.stem for p in files if _SET.fullmatch(p.name)}):
                entries.append(_features_entry(path, stem))
            entries += [_unfinished_entry(p, _FOLDER.fullmatch(path.name).group(1)) for p in files if _unfinished(p)]
    return sorted(entries, key=lambda e: -e.used)


UNFINISHED_AGE = 3600.0     # seconds: a younger temporary file may be another process's write in progress


def remove(root: str | os.PathLike, entries: list[CacheEntry], now: float | None = None) -> tuple[int, int]:
    """Delete the entries' files (and a folder under ``root`` they leave empty); (entries removed, bytes freed).

    An unfinished write younger than ``UNFINISHED_AGE`` is kept: another
    process may be writing it. Raises CacheError if a file cannot be deleted.
    """
    now = time.time() if now is None else now
    count = freed = 0
    for entry in entries:
        if entry.what == "unfinished" and now - entry.used < UNFINISHED_AGE:
            continue
        for path in entry.paths:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise CacheError(f"could not delete {path}: {e.strerror or e}") from None
            freed += size
        count += 1
        folder = entry.paths[0].parent
        if folder != Path(root) and not any(folder.iterdir()):
            try:
                folder.rmdir()
            except OSError:
                pass
    return count, freed

"""CIFAR-10: where it comes from, how it is verified, cached, loaded and split.

The flow, each step idempotent:

    archive (downloaded, or given with --archive)  --md5-->  verified
    verified archive  --safe_extract-->  data_dir/cifar-10-batches-{bin,py}/
    extracted batches --read + validate-->  .npy cache (memory-mapped on later loads, checked)

A folder extracted elsewhere (e.g. a torchvision root) can stand in for the
archive: it is checked and copied into data_dir, so later commands find it
there. The pixels stay uint8 throughout; nothing here makes a float copy.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .batches import read_batch, read_classes
from .download import fetch, md5sum
from .extract import copy_folder, safe_extract
from .layout import IMAGE_BYTES, LAYOUTS, NUM_CLASSES, SOURCE_FILE, Layout, check_folder, folder_problem
from ..fsutil import atomic_open, unlink_quiet, write_json_atomic
from ..errors import (ChecksumError, ConfigError, DataError, DownloadError, Interrupted, LinclfWarning,
                      MissingArchiveError, short_reason)

__all__ = [
    "BASE_URL", "OFFICIAL", "ENV_DATA_DIR", "CIFAR10", "Splits", "Prepared",
    "default_data_dir", "resolve_data_dir", "WHERE_HINT", "prepare", "load_prepared", "load_cifar10", "split",
    "mirrored", "with_mirrors",
]

BASE_URL = "https://www.cs.toronto.edu/~kriz/"
ENV_DATA_DIR = "LINCLF_DATA_DIR"
NUM_PIXELS = IMAGE_BYTES      # values in a row of pixels


@dataclass(frozen=True)
class Official:
    """The published archive of one format: its file name, md5 and size in bytes."""

    file: str
    md5: str
    size: int


OFFICIAL: dict[str, Official] = {
    "binary": Official("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", 170_052_171),
    "python": Official("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", 170_498_071),
}
_CACHE_VERSION = 1


@dataclass(frozen=True)
class CIFAR10:
    """The whole dataset as uint8 pixel rows in the CIFAR order (1024 R, 1024 G, 1024 B).

    X_train (N_train, 3072) uint8, y_train (N_train,) int64, X_test (N_test, 3072)
    uint8, y_test (N_test,) int64, classes: the 10 names from the archive's meta file.
    Images loaded from the cache are read-only memory maps; labels are read into memory.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Prepared:
    """Where the extracted batches are, their format, and what ``prepare`` did."""

    folder: Path
    format: str
    status: str          # "already present" | "extracted" | "downloaded and extracted" | "copied"
    archive_md5: str | None


def default_data_dir() -> Path:
    """The per-user cache folder of the platform (``~/.cache/linclf`` on Linux, honouring $XDG_CACHE_HOME)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("linclf", appauthor=False))


def resolve_data_dir(flag: str | os.PathLike | None = None, config_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``--data-dir`` beats $LINCLF_DATA_DIR beats ``data.dir`` beats the user cache folder.

    The result does not depend on the working directory: a relative path is made absolute.
    """
    for candidate in (flag, os.environ.get(ENV_DATA_DIR) or None, config_dir):
        if candidate:
            return Path(candidate).expanduser().absolute()
    return default_data_dir()


WHERE_HINT = (f"point elsewhere with --data-dir DIR (data_dir= in Python), ${ENV_DATA_DIR} or data.dir in the "
              "config, or give an archive already on disk with --archive PATH (archive=)")


def _check_format(fmt: str) -> Layout:
    if fmt not in LAYOUTS:
        raise ConfigError(f"data.format: expected one of {', '.join(LAYOUTS)}, got {fmt!r}")
    return LAYOUTS[fmt]


def _archive_format(path: Path) -> str | None:
    """The layout a tar archive holds, judged by its first member's folder (None if unknown)."""
    try:
        with tarfile.open(path) as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError):
        return None
    if first is None:
        return None
    top = first.name.split("/", 1)[0]
    for fmt, layout in LAYOUTS.items():
        if top == layout.folder:
            return fmt
    return None


def _folder_format(path: Path, fmt: str) -> tuple[Path, str] | None:
    """An extracted batches folder at ``path`` or directly inside it: (folder, format), preferring ``fmt``."""
    order = [fmt] + [f for f in LAYOUTS if f != fmt]
    for f in order:
        layout = LAYOUTS[f]
        if path.name == layout.folder:
            return path, f
    for f in order:
        inner = path / LAYOUTS[f].folder
        if inner.is_dir():
            return inner, f
    return None


def _file_id(path: Path) -> dict:
    """Who a local archive is, cheaply: resolved path, size and modification time."""
    st = path.stat()
    return {"archive": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_source(folder: Path) -> dict:
    """The record of the archive or folder an extraction came from ({} when there is none)."""
    try:
        record = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _mkdir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {data_dir}: {e.strerror}; "
                        f"choose another with --data-dir or ${ENV_DATA_DIR}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataError(f"the data folder {data_dir} is not writable; "
                        f"choose another with --data-dir or ${ENV_DATA_DIR}")


def _fetch_into(data_dir: Path, target: Path, urls: list[str], md5: str, size: int | None, timeout: float,
                retries: int, quiet: bool) -> None:
    """Download into data_dir; a failure names the folder and how to point elsewhere, and leaves no
    folder that was made only for this download (a partly downloaded .part is kept for a resume)."""
    created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]
    _mkdir(data_dir)
    part = target.with_name(target.name + ".part")
    try:
        fetch(urls, target, md5=md5, size=size, timeout=timeout, retries=retries, quiet=quiet)
    except KeyboardInterrupt:
        have = part.stat().st_size if part.is_file() else 0
        kept = (f"{have:,} bytes kept in {part}; run the same command again to resume the download" if have
                else "nothing was kept")
        _remove_empty(created)
        raise Interrupted(f"download interrupted; {kept}") from None
    except (DownloadError, DataError) as e:
        _remove_empty(created)
        raise type(e)(f"{e}. Looked for CIFAR-10 in {data_dir}: {WHERE_HINT}") from None


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (innermost first) this call created, if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _extract(archive_path: Path, data_dir: Path, fmt: str, md5: str, quiet: bool, user_file: bool = False) -> Path:
    """Extract a verified archive into data_dir atomically and record which archive it was."""
    _mkdir(data_dir)
    folder = safe_extract(archive_path, data_dir, LAYOUTS[fmt], quiet=quiet, user_file=user_file)
    try:
        write_json_atomic(folder / SOURCE_FILE, {"md5": md5, **_file_id(archive_path)})
    except OSError:
        pass  # only costs a re-extraction next time
    return folder


def _verify_local_archive(path: Path, fmt: str, md5: str | None) -> tuple[str, str, bool]:
    """Checksum a user-given archive: (format, md5, whether it is unpinned: neither --md5 nor official).

    An unpinned archive is accepted only when its extraction checks out (the caller warns after that).
    """
    if not path.is_file():
        raise MissingArchiveError(f"--archive {path}: no such file or folder")
    got = md5sum(path)
    if md5 is not None:
        if got != md5.lower():
            raise ChecksumError(f"{path}: md5 expected {md5.lower()}, got {got}; "
                                "the file is damaged or not the one you meant")
        detected = _archive_format(path) or fmt
        return detected, got, False
    for f, official in OFFICIAL.items():
        if got == official.md5:
            return f, got, False
    return _archive_format(path) or fmt, got, True


def _already_extracted(src: Path, data_dir: Path, md5: str | None) -> Prepared | None:
    """The extraction in data_dir made from this very archive file (same path, size, mtime), if intact.

    Saves hashing 170 MB on every run that names the same --archive.
    """
    me = _file_id(src)
    for f, layout in LAYOUTS.items():
        folder = data_dir / layout.folder
        record = _read_source(folder)
        if not record or any(record.get(k) != v for k, v in me.items()):
            continue
        if md5 is not None and record.get("md5") != md5.lower():
            continue
        try:
            check_folder(folder, layout)
        except DataError:
            continue
        return Prepared(folder, f, "already present", record.get("md5"))
    return None


def _copy_in(src: Path, data_dir: Path, fmt: str, force: bool) -> Prepared:
    """Copy the extracted folder at or inside ``src`` into data_dir (once: a copy of the same files is kept)."""
    found = _folder_format(src, fmt)
    if found is None:
        raise DataError(f"--archive {src}: the folder holds neither cifar-10-batches-bin/ "
                        "nor cifar-10-batches-py/")
    folder, f = found
    layout = LAYOUTS[f]
    check_folder(folder, layout)
    dest = data_dir / layout.folder
    if dest.exists() and dest.resolve() == folder.resolve():     # --archive names the data folder itself
        return Prepared(dest, f, "already present", _read_source(dest).get("md5"))
    origin = _folder_id(folder, layout)
    if not force and _read_source(dest) == origin and folder_problem(dest, layout) is None:
        return Prepared(dest, f, "already present", None)
    created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]
    try:
        _mkdir(data_dir)
        copy_folder(folder, data_dir, layout)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        write_json_atomic(dest / SOURCE_FILE, origin)
    except OSError:
        pass  # only costs a copy next time
    return Prepared(dest, f, "copied", None)


def _other_format(data_dir: Path, fmt: str) -> Prepared | None:
    """An intact extraction of the format other than ``fmt`` in data_dir (both hold the same images), or None."""
    for f, layout in LAYOUTS.items():
        folder = data_dir / layout.folder
        if f != fmt and folder.is_dir() and folder_problem(folder, layout) is None:
            return Prepared(folder, f, "already present", _read_source(folder).get("md5"))
    return None


def prepare(data_dir: str | os.PathLike, fmt: str = "binary", *, archive: str | os.PathLike | None = None,
            md5: str | None = None, urls: Sequence[str] = (), download: bool = True, force: bool = False,
            timeout: float = 30.0, retries: int = 5, quiet: bool = True) -> Prepared:
    """Make the extracted batches available and say where they are.

    ``archive`` may be a local .tar.gz (checked by ``md5``, the official md5, or
    failing both by its structure, with a warning), extracted into ``data_dir``,
    or an already extracted folder (``cifar-10-batches-*`` or a folder holding
    one), copied into ``data_dir``. Without it, an extraction or archive in
    ``data_dir`` is used (failing both, an extraction of the other format), else
    the archive is downloaded (``urls`` first, then the official URL) when
    ``download`` is true; a damaged extraction is named in a warning before it
    is rebuilt, or in the error.
    ``force`` re-verifies and re-extracts (and re-downloads without ``archive``).
    """
    _check_format(fmt)
    data_dir = Path(data_dir)
    if archive is not None:
        src = Path(archive).expanduser()
        if src.is_dir():
            return _copy_in(src, data_dir, fmt, force)
        if not force and src.is_file():
            done = _already_extracted(src, data_dir, md5)
            if done is not None:
                return done
        created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]
        if src.is_file():
            _mkdir(data_dir)          # a read-only data folder is reported before hashing 170 MB
        try:
            f, got, unpinned = _verify_local_archive(src, fmt, md5)
            folder = _extract(src, data_dir, f, got, quiet, user_file=True)
        except BaseException:
            _remove_empty(created)
            raise
        if unpinned:
            warnings.warn(f"{src} is not the official archive (md5 {got}); accepted because its structure "
                          "checks out; pass --md5 to pin it", LinclfWarning, stacklevel=2)
        return Prepared(folder, f, "extracted", got)

    layout = LAYOUTS[fmt]
    official = OFFICIAL[fmt]
    expected = (md5 or official.md5).lower()
    folder = data_dir / layout.folder
    target = data_dir / official.file
    damage = None
    if not force and folder.is_dir():
        bad = folder_problem(folder, layout)
        if bad is None:
            return Prepared(folder, fmt, "already present", _read_source(folder).get("md5"))
        damage = f"{folder / bad[0]} {bad[1]}"     # rebuilt below from the archive, if there is one
    elif not force and not target.is_file():
        other = _other_format(data_dir, fmt)
        if other is not None:
            return other
    if target.is_file() and not force:
        _mkdir(data_dir)
        got = md5sum(target)
        if got != expected:
            raise ChecksumError(f"{target}: md5 expected {expected}, got {got}; delete it or run "
                                "`linclf download --force` to download it again")
        if damage:
            warnings.warn(f"{damage}; extracting {target} again", LinclfWarning, stacklevel=2)
        return Prepared(_extract(target, data_dir, fmt, got, quiet), fmt, "extracted", got)
    if not download:
        what = f"is damaged: {damage}" if damage else f"is not in {data_dir}"
        raise DataError(f"CIFAR-10 ({fmt}) {what}; run `linclf download`, or {WHERE_HINT}")
    if damage:
        warnings.warn(f"{damage}; downloading CIFAR-10 again", LinclfWarning, stacklevel=2)
    _fetch_into(data_dir, target, [*urls, BASE_URL + official.file], expected,
                official.size if md5 is None else None, timeout, retries, quiet)
    return Prepared(_extract(target, data_dir, fmt, expected, quiet), fmt, "downloaded and extracted", expected)


# --------------------------------------------------------------------- cache

_ARRAYS = ("X_train", "y_train", "X_test", "y_test")


def _folder_id(folder: Path, layout: Layout) -> dict:
    """Who an extracted folder is, cheaply: its resolved path and each required file's size and mtime."""
    files = {}
    for name in layout.required_files:
        st = (folder / name).stat()
        files[name] = [st.st_size, st.st_mtime_ns]
    return {"folder": str(folder.resolve()), "files": files}


def _source_key(folder: Path, layout: Layout) -> dict:
    """What the cache was built from: the folder and each batch file's size and mtime."""
    return {"version": _CACHE_VERSION, **_folder_id(folder, layout)}


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


def load_cifar10(data_dir: str | os.PathLike | None = None, format: str = "binary", download: bool = False, *,
                 archive: str | os.PathLike | None = None, md5: str | None = None, urls: Sequence[str] = (),
                 force: bool = False, cache: bool = True, timeout: float = 30.0, retries: int = 5,
                 quiet: bool = True) -> CIFAR10:
    """Load CIFAR-10 as uint8 rows: X_train (50000, 3072), X_test (10000, 3072), labels int64, classes.

    ``data_dir`` None means $LINCLF_DATA_DIR, else the user cache folder (``default_data_dir``). The first load reads the
    batches and writes a cache of .npy files in ``data_dir``; later loads map them
    into memory and take milliseconds. ``download``, ``archive``, ``md5``, ``urls``,
    ``force`` are as in ``prepare``. A read-only ``data_dir`` works, without a cache.
    """
    data_dir = resolve_data_dir(data_dir)
    prepared = prepare(data_dir, format, archive=archive, md5=md5, urls=urls, download=download,
                       force=force, timeout=timeout, retries=retries, quiet=quiet)
    return load_prepared(prepared, data_dir, cache=cache, rebuild=force)


def load_prepared(prepared: Prepared, data_dir: str | os.PathLike, *, cache: bool = True,
                  rebuild: bool = False) -> CIFAR10:
    """Read (and validate) the batches ``prepare`` made available, through the .npy cache in ``data_dir``."""
    layout = LAYOUTS[prepared.format]
    key = _source_key(prepared.folder, layout)
    cache_dir = _cache_dir(Path(data_dir), prepared.format)
    if cache and not rebuild:
        try:
            cached = _load_cache(cache_dir, key)
        except DataError as e:
            warnings.warn(f"{e}; rebuilding the cache from {prepared.folder}", LinclfWarning, stacklevel=2)
            cached = None
        if cached is not None:
            return cached
    data = _read_folder(prepared.folder, layout, prepared.format)
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


# -------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Splits:
    """Train / validation / test rows (uint8, (N, 3072)) and labels (int64, (N,)); views where possible."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


def split(data: CIFAR10, num_train: int | None = None, num_val: int = 1000, num_test: int | None = None,
          num_dev: int = 0, *, rng: np.random.Generator | None = None) -> Splits:
    """Carve validation from the end of the training set, training from the start, test from the start.

    ``num_dev`` > 0 replaces the training split by a random subset of that size
    (drawn with ``rng``), for quick runs. Sizes the archive cannot supply are
    ConfigErrors naming the ``data.*`` key.
    """
    n_all = len(data.X_train)
    if num_val > n_all - 1:
        raise ConfigError(f"data.num_val: {num_val} leaves no training rows; the data holds "
                          f"{n_all} training rows, so at most {n_all - 1}")
    available = n_all - num_val
    if num_train is None:
        num_train = available
    elif num_train > available:
        raise ConfigError(f"data.num_train: {num_train} is more than the {available} training rows left "
                          f"after data.num_val={num_val} ({n_all} in the data)")
    n_test = len(data.X_test)
    if num_test is None:
        num_test = n_test
    elif num_test > n_test:
        raise ConfigError(f"data.num_test: {num_test} is more than the {n_test} test rows in the data")
    X_train, y_train = data.X_train[:num_train], data.y_train[:num_train]
    if num_dev:
        if num_dev > num_train:
            raise ConfigError(f"data.num_dev: {num_dev} is more than the {num_train} training images")
        if rng is None:
            raise ValueError("split(num_dev > 0) needs an rng")
        idx = np.sort(rng.choice(num_train, size=num_dev, replace=False))
        X_train, y_train = X_train[idx], y_train[idx]
    return Splits(X_train, y_train, data.X_train[available:], data.y_train[available:],
                  data.X_test[:num_test], data.y_test[:num_test], data.classes)


def mirrored(X: np.ndarray) -> np.ndarray:
    """The horizontal mirror images (N, 3072) of CIFAR rows X (N, 3072), channel-major 32x32 planes, same dtype."""
    if X.ndim != 2 or X.shape[1] != NUM_PIXELS:
        raise ValueError(f"mirrored: expected CIFAR rows of shape (N, {NUM_PIXELS}), got {X.shape}")
    planes = np.asarray(X).reshape(len(X), 3, 32, 32)
    return np.ascontiguousarray(planes[..., ::-1]).reshape(len(X), NUM_PIXELS)


def with_mirrors(splits: Splits) -> Splits:
    """``splits`` whose training split is followed by its mirror images (2N rows, labels repeated).

    Flip augmentation: a mirrored photo is as likely as the original, so the
    classifier sees twice the training images; validation and test are untouched.
    """
    X = splits.X_train
    return dataclasses.replace(splits, X_train=np.concatenate([X, mirrored(X)]),
                               y_train=np.concatenate([splits.y_train, splits.y_train]))

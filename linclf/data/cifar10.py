"""CIFAR-10: where it comes from, how it is verified and extracted, and loading it.

The flow, each step idempotent:

    archive (downloaded, or given with --archive)  --md5-->  verified
    verified archive  --safe_extract-->  data_dir/cifar-10-batches-{bin,py}/
    extracted batches --read + validate-->  .npy cache (``npy_cache``: memory-mapped on later loads, checked)

The arrays are ``arrays.CIFAR10``; ``splits`` cuts them into train / val / test.

A folder extracted elsewhere (e.g. a torchvision root) can stand in for the
archive: it is checked and copied into data_dir, so later commands find it
there. The pixels stay uint8 throughout; nothing here makes a float copy.
"""
from __future__ import annotations

import json
import os
import tarfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

from .arrays import CIFAR10
from .download import fetch, md5sum
from .extract import copy_folder, safe_extract
from .layout import LAYOUTS, SOURCE_FILE, Layout, check_folder, folder_id, folder_problem
from .npy_cache import load_folder
from ..fsutil import LOCK_FILE, hold_lock, shell_path, unlink_quiet, write_json_atomic
from ..errors import (ChecksumError, ConfigError, DataError, DownloadError, Interrupted, LinclfWarning,
                      MissingArchiveError, UsageError)

__all__ = [
    "BASE_URL", "OFFICIAL", "ENV_DATA_DIR", "CIFAR10", "Prepared", "default_data_dir", "resolve_data_dir",
    "WHERE_HINT", "prepare", "load_prepared", "load_cifar10",
]

BASE_URL = "https://www.cs.toronto.edu/~kriz/"
ENV_DATA_DIR = "LINCLF_DATA_DIR"


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

    The result does not depend on the working directory: a relative path is made absolute. One that is a
    file is a UsageError naming where it came from.
    """
    sources = (("given", flag), (f"${ENV_DATA_DIR}", os.environ.get(ENV_DATA_DIR) or None), ("data.dir", config_dir))
    for source, candidate in sources:
        if candidate:
            path = Path(candidate).expanduser().absolute()
            if path.is_file():
                raise UsageError(f"the data folder {path} ({source}) is a file, not a folder; give a folder")
            return path
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


def _recorded_archive(folder: Path) -> tuple[Path, str] | None:
    """The archive file an extraction's record names, with its md5, if it is still there unchanged (same size,
    modification time and md5 as recorded); else None."""
    record = _read_source(folder)
    path, md5 = record.get("archive"), record.get("md5")
    if not (isinstance(path, str) and isinstance(md5, str) and Path(path).is_file()):
        return None
    if any(record.get(k) != v for k, v in _file_id(Path(path)).items()) or md5sum(Path(path)) != md5:
        return None
    return Path(path), md5


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
    """The extraction in data_dir made from this very archive file (same path, size, mtime), if intact; for an
    archive that no longer exists, the one made from a file of that path.

    Saves hashing 170 MB on every run that names the same --archive, and lets a run whose archive was
    deleted after its extraction be evaluated or resumed from the data folder alone.
    """
    me = _file_id(src) if src.is_file() else {"archive": str(src.resolve())}
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
        names = [OFFICIAL[fmt].file, *(o.file for f, o in OFFICIAL.items() if f != fmt)]  # the format asked for first
        archives = [name for name in names if (src / name).is_file()]          # a root before its extraction
        hint = f"; give the archive inside it: --archive {shell_path(src / archives[0])}" if archives else ""
        raise DataError(f"--archive {src}: the folder holds neither cifar-10-batches-bin/ "
                        f"nor cifar-10-batches-py/{hint}")
    folder, f = found
    layout = LAYOUTS[f]
    check_folder(folder, layout)
    dest = data_dir / layout.folder
    if dest.exists() and dest.resolve() == folder.resolve():     # --archive names the data folder itself
        return Prepared(dest, f, "already present", _read_source(dest).get("md5"))
    origin = folder_id(folder, layout)
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


def _lock_folder(data_dir: Path) -> tuple[IO | None, list[Path]]:
    """``data_dir/.linclf.lock`` held (``fsutil.hold_lock``; None when the folder cannot be made or written, or
    its file system has no locks), and the folders made for it. Another process's lock is waited for, with a
    notice; a folder that went with the file waited on is made again."""
    warned = False

    def notice() -> None:
        nonlocal warned
        warnings.warn(f"waiting for another linclf process preparing the data in {data_dir}", LinclfWarning,
                      stacklevel=6)
        warned = True

    while True:
        created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            return hold_lock(data_dir / LOCK_FILE, wait=True, on_wait=None if warned else notice), created
        except FileNotFoundError:       # removed with the lock by the process waited on, which made it in vain
            continue
        except OSError:
            return None, created


@contextmanager
def _preparing(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``data_dir/.linclf.lock`` while the data folder is filled: of two processes
    preparing one folder at once (two CI jobs on one cache), the second waits, then finds the work done
    instead of downloading into the same partial file. A folder that cannot be made or written is prepared
    unlocked (its errors are reported where the files are written); one made here only for the lock is removed,
    under the lock, so a waiting process sees its file gone and locks anew.
    """
    try:
        import fcntl  # noqa: F401 - POSIX only
    except ImportError:                 # pragma: no cover - not POSIX: no lock
        yield
        return
    fh, created = _lock_folder(data_dir)

    def undo() -> None:
        if created and data_dir.is_dir() and {p.name for p in data_dir.iterdir()} <= {LOCK_FILE}:   # made in vain
            unlink_quiet(data_dir / LOCK_FILE)
            _remove_empty(created)

    if fh is None:
        try:
            yield
        finally:
            undo()
        return
    with fh:                                   # closing it releases the lock: undo() runs under it
        try:
            yield
        finally:
            undo()


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
    Another process preparing the same folder is waited for.
    """
    _check_format(fmt)
    data_dir = Path(data_dir)
    if any(data_dir.name == layout.folder and (data_dir / layout.test_file).is_file() for layout in LAYOUTS.values()):
        # the extracted folder itself given as the data folder (a torchvision-style root is one level up)
        raise UsageError(f"the data folder {data_dir} is an extracted CIFAR-10 folder itself; give the folder "
                         f"that holds it: {data_dir.parent}")
    with _preparing(data_dir):
        return _prepare(data_dir, fmt, archive=archive, md5=md5, urls=urls, download=download, force=force,
                        timeout=timeout, retries=retries, quiet=quiet)


def _prepare(data_dir: Path, fmt: str, *, archive: str | os.PathLike | None, md5: str | None, urls: Sequence[str],
             download: bool, force: bool, timeout: float, retries: int, quiet: bool) -> Prepared:
    """``prepare``'s work, under its lock."""
    if archive is not None:
        src = Path(archive).expanduser()
        if src.is_dir():
            return _copy_in(src, data_dir, fmt, force)
        if not force:
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
    source = _recorded_archive(folder) if damage and not force else None
    if source is not None and md5 is not None and source[1] != md5.lower():
        source = None                       # not the archive asked for
    if source is not None:                  # the archive on disk it was extracted from, unchanged: again from it
        warnings.warn(f"{damage}; extracting {source[0]} again", LinclfWarning, stacklevel=2)
        return Prepared(_extract(source[0], data_dir, fmt, source[1], quiet, user_file=True), fmt, "extracted",
                        source[1])
    if not download:
        what = f"is damaged: {damage}" if damage else f"is not in {data_dir}"
        raise DataError(f"CIFAR-10 ({fmt}) {what}; run `linclf download`, or {WHERE_HINT}")
    if damage:
        warnings.warn(f"{damage}; downloading CIFAR-10 again", LinclfWarning, stacklevel=2)
    _fetch_into(data_dir, target, [*urls, BASE_URL + official.file], expected,
                official.size if md5 is None else None, timeout, retries, quiet)
    return Prepared(_extract(target, data_dir, fmt, expected, quiet), fmt, "downloaded and extracted", expected)



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
    return load_folder(prepared.folder, prepared.format, data_dir, cache=cache, rebuild=rebuild)

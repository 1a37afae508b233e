"""Putting untrusted CIFAR-10 files into the data folder: extracting a .tar.gz, copying an extracted folder.

``safe_extract`` streams the archive and writes only the members its layout
(``layout.LAYOUTS``) holds, as regular files capped at ``MAX_MEMBER_BYTES``,
into a temporary folder inside the destination; links, devices, absolute or
escaping paths, duplicates and unknown members are refused
(UnsafeArchiveError) before anything of them is written. linclf's own
record (``SOURCE_FILE``) in a tarball of an extracted folder is skipped.
``copy_folder`` copies the required files of a folder extracted elsewhere
the same way (regular files only, links never followed). Either new folder
replaces a previous one only once it is complete and its structure
checked, so a failure leaves the previous folder as it was and no temporary
folder behind.
"""
from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO, Callable

from ..errors import DataError, UnsafeArchiveError, short_reason
from ..progress import Bar
from .layout import MAX_MEMBER_BYTES, REDOWNLOAD, SOURCE_FILE, Layout, check_folder, folder_problem

__all__ = ["safe_extract", "copy_folder"]

_MAX_TRAILING_BYTES = 2**20     # decompressed bytes after the tar's end we read to check the gzip CRC
_CHUNK = 2**20

_NOT_CIFAR = ("check that --archive names a complete CIFAR-10 archive (cifar-10-binary.tar.gz or "
              "cifar-10-python.tar.gz) or its extracted folder")


def safe_extract(archive: str | os.PathLike, dest_dir: str | os.PathLike, layout: Layout,
                 *, quiet: bool = True, user_file: bool = False) -> Path:
    """Extract ``layout``'s members of the .tar.gz ``archive`` into ``dest_dir/layout.folder``; return that folder.

    Only the layout's files are written, as regular files, first into a
    temporary folder inside ``dest_dir``; a previous extraction is replaced
    only when the new one is complete and checked. Raises UnsafeArchiveError
    for anything an official archive would not hold and DataError for a
    missing, truncated or non-gzip archive or missing members. ``user_file``: the
    archive is the user's own (``--archive``), so errors do not tell them to delete it.
    """
    try:
        return _safe_extract(Path(archive), Path(dest_dir), layout, quiet)
    except DataError as e:
        if user_file and REDOWNLOAD in str(e):
            raise type(e)(str(e).replace(REDOWNLOAD, _NOT_CIFAR)) from None
        raise


def _safe_extract(archive: Path, dest: Path, layout: Layout, quiet: bool) -> Path:
    _check_gzip_file(archive)
    return _build_folder(dest, layout, lambda tmp: _extract_members(archive, tmp, layout, quiet),
                         lambda name, why: f"member {layout.folder}/{name} of {archive} {why}; {REDOWNLOAD}")


def copy_folder(src: str | os.PathLike, dest_dir: str | os.PathLike, layout: Layout) -> Path:
    """Copy the required files of the extracted folder ``src`` into ``dest_dir/layout.folder``; return that folder.

    ``src`` is checked first (``check_folder``); only regular files are copied
    (a link is copied as a link and then refused, never followed), first into
    a temporary folder; a previous folder is replaced only by a complete,
    checked copy. Raises DataError naming the file that is wrong.
    """
    src, dest = Path(src), Path(dest_dir)
    check_folder(src, layout)

    def fill(tmp: Path) -> None:
        for name in layout.required_files:
            try:
                shutil.copyfile(src / name, tmp / name, follow_symlinks=False)
            except OSError as e:
                raise DataError(f"cannot copy {src / name} into {dest}: {e.strerror or e}; "
                                "check free space and permissions") from None

    return _build_folder(dest, layout, fill,
                         lambda name, why: f"{src / name} {why} (it changed while it was copied?); try again")


def _build_folder(dest: Path, layout: Layout, fill: Callable[[Path], None],
                  problem: Callable[[str, str], str]) -> Path:
    """``fill`` a new temporary folder in ``dest``, check it, and move it to ``dest/layout.folder``.

    ``problem(name, why)`` is the message when the filled folder's structure is
    wrong. Any failure (Ctrl-C too) removes the temporary folder.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{layout.folder}.tmp-", dir=dest))
    except OSError as e:
        raise DataError(f"cannot create a folder in {dest}: {e.strerror or e}; "
                        "check the path and its permissions") from None
    try:
        os.chmod(tmp, 0o755)
        fill(tmp)
        bad = folder_problem(tmp, layout)
        if bad is not None:
            raise DataError(problem(*bad))
        return _install(tmp, dest / layout.folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_gzip_file(archive: Path) -> None:
    """Raise DataError unless ``archive`` is an existing regular file that starts like gzip."""
    try:
        with archive.open("rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise DataError(f"archive {archive} not found; download it or give the right path") from None
    except OSError as e:
        raise DataError(f"cannot read archive {archive}: {e.strerror or e}; "
                        "check the path and its permissions") from None
    if not head:
        raise DataError(f"{archive} is empty (0 bytes), not a gzip file; {REDOWNLOAD}")
    if head[:2] != b"\x1f\x8b":
        what = "an HTML page (an error or login page saved under the archive's name?)" \
            if head.lstrip().startswith(b"<") else f"something starting {head[:8]!r}"
        raise DataError(f"{archive} is not a gzip file but {what}; {REDOWNLOAD}")


def _extract_members(archive: Path, root: Path, layout: Layout, quiet: bool) -> None:
    """Stream ``archive`` and write each allowed member into ``root`` (refusing anything else)."""
    seen: set[str] = set()
    shown = not quiet and sys.stderr is not None and sys.stderr.isatty()
    bar = Bar(shown, len(layout.all_files), desc=f"extracting {archive.name}", unit="file")
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    name = _allowed_name(member, layout, seen, archive)
                    if name is not None:
                        _write_member(tar, member, root / name, archive)
                        bar.update(1)
            ended = _drain(gz)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{archive} is truncated or corrupt ({short_reason(e)}); {REDOWNLOAD}") from None
    except OSError as e:
        raise DataError(f"cannot read archive {archive}: {e.strerror or e}; "
                        "check the file and its permissions") from None
    finally:
        bar.close()
    missing = [n for n in layout.required_files if n not in seen]
    if missing:
        listed = ", ".join(f"{layout.folder}/{n}" for n in missing)
        what = ("is corrupt: its files break off where a damaged entry starts, with more data after it"
                if not ended else f"lacks {listed}: not a complete CIFAR-10 {layout.archive_name}")
        raise DataError(f"{archive} {what}; {REDOWNLOAD}")


def _allowed_name(member: tarfile.TarInfo, layout: Layout, seen: set[str], archive: Path) -> str | None:
    """The name inside the folder ``member`` may be written to (None: nothing to write); raise if unsafe."""
    if member.isreg() and member.name == f"{layout.folder}/{SOURCE_FILE}" and member.size < 2**16:
        return None   # linclf's record in a tarball of its own extraction: skipped, never trusted
    rel = _relative_name(member.name, layout)
    why = _unsafe_reason(member) or _unexpected_reason(member, rel, layout, seen)
    if why is not None:
        raise UnsafeArchiveError(f"refusing member {member.name!r} of {archive}: {why}; "
                                 f"do not use this file, {REDOWNLOAD}")
    seen.add(rel)
    return rel or None


def _unexpected_reason(member: tarfile.TarInfo, rel: str | None, layout: Layout, seen: set[str]) -> str | None:
    """Why a safe-looking ``member`` (``rel``: its name inside the folder) does not belong in the archive, or None."""
    if rel is None:
        return f"unexpected member; a CIFAR-10 archive ({layout.archive_name}) holds only {_describe(layout)}"
    if rel in seen:
        return "appears twice in the archive"
    if member.isdir() != (rel == ""):
        return "unexpected member type; the archive holds its folder and regular files in it"
    if rel and not 0 <= member.size <= MAX_MEMBER_BYTES:
        return f"is {member.size} bytes, above the {MAX_MEMBER_BYTES}-byte cap for a CIFAR-10 file (a tar bomb?)"
    return None


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` is unsafe whatever its name (path escapes, links, devices), or None."""
    name = member.name
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' path component (would escape the target folder)"
    if not _stays_inside(name):
        return "resolves outside the target folder"
    if member.issym():
        return f"symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO (named pipe)"
    if not (member.isreg() or member.isdir()):
        return f"not a regular file (tar type {member.type!r})"
    return None


def _stays_inside(name: str) -> bool:
    """Whether the tar name ``name`` joined to a folder stays inside it (lexically)."""
    full = posixpath.normpath(posixpath.join("/target", name.replace("\\", "/")))
    return full == "/target" or full.startswith("/target/")


def _relative_name(name: str, layout: Layout) -> str | None:
    """``name``'s file name inside the layout's folder, "" for the folder itself, None if not in the layout."""
    if name.rstrip("/") == layout.folder:
        return ""
    prefix = layout.folder + "/"
    if name.startswith(prefix) and name[len(prefix):] in layout.all_files:
        return name[len(prefix):]
    return None


def _describe(layout: Layout) -> str:
    """A short listing of a layout's members for error messages."""
    return f"{layout.folder}/{{{', '.join(layout.all_files)}}}"


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, archive: Path) -> None:
    """Copy the regular-file ``member`` from the stream into the new file ``path``."""
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover - regular members always have a stream
        raise UnsafeArchiveError(f"refusing member {member.name!r} of {archive}: no file data; {REDOWNLOAD}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}; check free space and permissions") from None
    with os.fdopen(fd, "wb") as out:
        written = 0
        while chunk := src.read(_CHUNK):  # tarfile returns at most member.size bytes
            written += len(chunk)
            try:
                out.write(chunk)
            except OSError as e:
                raise DataError(f"cannot write {path}: {e.strerror or e}; check free space and permissions") from None
    if written != member.size:
        raise DataError(f"{archive} is truncated: member {member.name!r} has {written} of {member.size} bytes; "
                        f"{REDOWNLOAD}")


def _drain(gz: BinaryIO) -> bool:
    """Read what follows the tar's end (padding) so gzip checks its CRC and notices truncation: True when the
    stream ended within ``_MAX_TRAILING_BYTES``, False when more follows (the tar broke off: a damaged header
    ends tarfile's iteration silently)."""
    left = _MAX_TRAILING_BYTES
    while left > 0:
        chunk = gz.read(min(_CHUNK, left))
        if not chunk:
            return True
        left -= len(chunk)
    return False


def _install(new: Path, final: Path) -> Path:
    """Move the complete folder ``new`` to ``final``, replacing a previous one only after the move succeeded."""
    try:
        if not os.path.lexists(final):
            os.rename(new, final)
            return final
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        old = aside / final.name
        os.rename(final, old)
        try:
            os.rename(new, final)
        except BaseException:
            os.rename(old, final)
            shutil.rmtree(aside, ignore_errors=True)
            raise
    except OSError as e:
        raise DataError(f"cannot move the extracted folder to {final}: {e.strerror or e}; check permissions") from None
    shutil.rmtree(aside, ignore_errors=True)
    return final

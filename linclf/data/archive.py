"""The untrusted-input layer for CIFAR-10 files: safe extraction, safe unpickling, validating readers.

Everything here treats its input as hostile. ``safe_extract`` writes only the
members an official archive holds, as regular files, into a temporary folder
inside ``dest_dir`` that replaces a previous extraction only once complete.
``safe_unpickle`` resolves only the few numpy globals a CIFAR batch pickle
needs, so nothing else can run. ``read_batch`` and ``read_classes`` check
every field and name the file and field in each error.

Shapes: a batch is X (N, 3072) uint8, rows of 1024 red, 1024 green, 1024 blue
pixels (32 x 32, row-major), and y (N,) uint8 labels in [0, 10).
"""
from __future__ import annotations

import _compat_pickle
import gzip
import io
import math
import os
import pickle
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError, UnsafeArchiveError, UsageError

try:  # progress bars are a nicety, never a requirement
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is a declared dependency
    tqdm = None

__all__ = [
    "Layout", "LAYOUTS", "FORMATS", "IMAGE_BYTES", "RECORD_BYTES", "NUM_CLASSES",
    "MAX_MEMBER_BYTES", "safe_extract", "safe_unpickle", "read_batch", "read_classes",
    "check_folder",
]

IMAGE_BYTES = 3072            # 32 x 32 x 3 pixels of one image
RECORD_BYTES = 1 + IMAGE_BYTES  # a binary record: 1 label byte, then the pixels
NUM_CLASSES = 10
MAX_MEMBER_BYTES = 200 * 2**20  # the largest member we write (official batches are ~30 MB)
_MAX_TRAILING_BYTES = 2**20     # decompressed bytes after the tar's end we read to check the gzip CRC
_CHUNK = 2**20


@dataclass(frozen=True)
class Layout:
    """Where an official CIFAR-10 archive keeps its files (names relative to ``folder``)."""

    archive_name: str               # e.g. "cifar-10-binary.tar.gz"
    folder: str                     # the archive's single top-level folder
    train_files: tuple[str, ...]    # the five training batches, in order
    test_file: str
    meta_file: str                  # class names
    optional_files: tuple[str, ...] = ()

    @property
    def required_files(self) -> tuple[str, ...]:
        """Names of the files an archive must hold (train batches, test batch, meta)."""
        return (*self.train_files, self.test_file, self.meta_file)

    @property
    def all_files(self) -> tuple[str, ...]:
        """Names of every file an archive may hold."""
        return (*self.required_files, *self.optional_files)

    @property
    def member_names(self) -> tuple[str, ...]:
        """Tar member names of every file an archive may hold (``folder/name``)."""
        return tuple(f"{self.folder}/{name}" for name in self.all_files)


LAYOUTS: dict[str, Layout] = {
    "binary": Layout(
        archive_name="cifar-10-binary.tar.gz",
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_file="test_batch.bin",
        meta_file="batches.meta.txt",
        optional_files=("readme.html",),
    ),
    "python": Layout(
        archive_name="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        optional_files=("readme.html",),
    ),
}
FORMATS = tuple(LAYOUTS)

_REDOWNLOAD = "delete it and download the archive again"
_REEXTRACT = "delete the folder and extract the archive again"
_NOT_CIFAR = ("check that --archive names a complete CIFAR-10 archive (cifar-10-binary.tar.gz or "
              "cifar-10-python.tar.gz) or its extracted folder")


# --------------------------------------------------------------------------- extraction

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
        if user_file and _REDOWNLOAD in str(e):
            raise type(e)(str(e).replace(_REDOWNLOAD, _NOT_CIFAR)) from None
        raise


def _safe_extract(archive: Path, dest: Path, layout: Layout, quiet: bool) -> Path:
    _check_gzip_file(archive)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{layout.folder}.tmp-", dir=dest))
    except OSError as e:
        raise DataError(f"cannot create a folder in {dest}: {e.strerror or e}; "
                        "check the path and its permissions") from None
    try:
        os.chmod(tmp, 0o755)
        _extract_members(archive, tmp, layout, quiet)
        problem = _folder_problem(tmp, layout)
        if problem is not None:
            name, why = problem
            raise DataError(f"member {layout.folder}/{name} of {archive} {why}; {_REDOWNLOAD}")
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
        raise DataError(f"{archive} is empty (0 bytes), not a gzip file; {_REDOWNLOAD}")
    if head[:2] != b"\x1f\x8b":
        what = "an HTML page (an error or login page saved under the archive's name?)" \
            if head.lstrip().startswith(b"<") else f"something starting {head[:8]!r}"
        raise DataError(f"{archive} is not a gzip file but {what}; {_REDOWNLOAD}")


def _extract_members(archive: Path, root: Path, layout: Layout, quiet: bool) -> None:
    """Stream ``archive`` and write each allowed member into ``root`` (refusing anything else)."""
    seen: set[str] = set()
    bar = tqdm(total=len(layout.all_files), desc=f"extracting {archive.name}", unit="file",
               disable=True if quiet else None, leave=False) if tqdm is not None else None
    try:
        with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    name = _allowed_name(member, layout, seen, archive)
                    if name is not None:
                        _write_member(tar, member, root / name, archive)
                        if bar is not None:
                            bar.update(1)
            _drain(gz)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{archive} is truncated or corrupt ({_reason(e)}); {_REDOWNLOAD}") from None
    except OSError as e:
        raise DataError(f"cannot read archive {archive}: {e.strerror or e}; "
                        "check the file and its permissions") from None
    finally:
        if bar is not None:
            bar.close()
    missing = [n for n in layout.required_files if n not in seen]
    if missing:
        listed = ", ".join(f"{layout.folder}/{n}" for n in missing)
        raise DataError(f"{archive} lacks {listed}: not a complete CIFAR-10 {layout.archive_name}; {_REDOWNLOAD}")


def _allowed_name(member: tarfile.TarInfo, layout: Layout, seen: set[str], archive: Path) -> str | None:
    """The name inside the folder ``member`` may be written to (None: the folder's own entry); raise if unsafe."""
    rel = _relative_name(member.name, layout)
    why = _unsafe_reason(member) or _unexpected_reason(member, rel, layout, seen)
    if why is not None:
        raise UnsafeArchiveError(f"refusing member {member.name!r} of {archive}: {why}; "
                                 f"do not use this file, {_REDOWNLOAD}")
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
        raise UnsafeArchiveError(f"refusing member {member.name!r} of {archive}: no file data; {_REDOWNLOAD}")
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
                        f"{_REDOWNLOAD}")


def _drain(gz: BinaryIO) -> None:
    """Read what follows the tar's end (padding) so gzip checks its CRC and notices truncation."""
    left = _MAX_TRAILING_BYTES
    while left > 0:
        chunk = gz.read(min(_CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)


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


def _reason(e: BaseException) -> str:
    """A short one-line description of an exception for a message."""
    text = " ".join(str(e).split())
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# --------------------------------------------------------------------------- folder check

def check_folder(folder: str | os.PathLike, layout: Layout) -> None:
    """Check an extracted folder's structure: required files present, regular, binary sizes whole records.

    Raises DataError naming the first file that is wrong. Contents are checked
    by ``read_batch`` / ``read_classes``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "not found" if not os.path.lexists(folder) else "not a folder"
        raise DataError(f"CIFAR-10 folder {folder} {what}; extract {layout.archive_name} into its parent folder")
    problem = _folder_problem(folder, layout)
    if problem is not None:
        name, why = problem
        raise DataError(f"{folder / name} {why}; {_REEXTRACT}")


def _folder_problem(folder: Path, layout: Layout) -> tuple[str, str] | None:
    """(file name, what is wrong) for the first bad file of ``folder``, or None if its structure is right."""
    for name in layout.required_files:
        try:
            st = os.lstat(folder / name)
        except FileNotFoundError:
            return name, "is missing"
        except OSError as e:
            return name, f"cannot be read ({e.strerror or e})"
        if not stat.S_ISREG(st.st_mode):
            return name, "is not a regular file (a link, folder or device)"
        if st.st_size == 0:
            return name, "is empty"
        if name.endswith(".bin") and st.st_size % RECORD_BYTES:
            return name, f"is {st.st_size} bytes, not a whole number of {RECORD_BYTES}-byte records"
    return None


# --------------------------------------------------------------------------- unpickling

try:  # numpy's array reconstructor: numpy 2 keeps it in numpy._core, numpy 1 in numpy.core
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class _Refused(Exception):
    """Raised inside the unpickler for what a CIFAR-10 pickle never does; its text completes "refusing ..."."""


class _NDArrayRef:
    """Stands for ``numpy.ndarray`` inside a pickle: only ``_reconstruct`` may use it, it cannot be called."""

    def __new__(cls, *args: Any, **kwargs: Any):  # noqa: D102
        raise _Refused("to construct numpy.ndarray directly (numpy pickles go through _reconstruct)")


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` limited to an empty plain ndarray (what ndarray pickles start from)."""
    if subtype is not _NDArrayRef:
        raise _Refused(f"numpy _reconstruct of {subtype!r} (only numpy.ndarray is allowed)")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and 0 <= n for n in shape)
            and math.prod(shape) <= 1):
        raise _Refused(f"numpy _reconstruct with shape {shape!r} (numpy pickles start from (0,))")
    return _np_reconstruct(np.ndarray, shape, dtype)


_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "iso_8859_1", "l1"}


def _safe_encode(obj: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes: str -> bytes via latin-1 only."""
    if not isinstance(obj, str) or not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
        raise _Refused(f"_codecs.encode with encoding {encoding!r} (pickles use it only for latin-1 bytes)")
    return obj.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as Python 3 protocol-2 pickles use it for an empty bytes object; nothing else."""
    if args:
        raise _Refused(f"builtins.bytes with arguments {args!r}"[:100] + " (pickles call it only as bytes())")
    return b""


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): _NDArrayRef,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _safe_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}
_OS_MODULES = {"posix": "os", "nt": "os"}  # os.system pickles as posix.system


class _CifarUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals a CIFAR-10 batch needs (and never imports anything)."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed stand-in for ``module.name`` or refuse before anything runs."""
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"to unpickle {_display_global(module, name)}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (CIFAR-10 pickles have none)."""
        raise _Refused(f"a persistent id {pid!r}"[:80])


def _display_global(module: str, name: str) -> str:
    """``module.name`` as a reader knows it: ``posix.system`` shows as ``os.system``."""
    raw = f"{module}.{name}"
    # Python-2 names (``commands.Popen``, ``__builtin__.eval``) mapped as pickle itself maps them
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _OS_MODULES.get(module, _compat_pickle.IMPORT_MAPPING.get(module, module))
    shown = f"{module}.{name}"
    return shown if shown == raw else f"{shown} (pickled as {raw})"


def safe_unpickle(data: bytes, *, source: str) -> object:
    """Unpickle ``data`` allowing only numpy arrays, dtypes and latin-1 bytes; a dict's keys come back as str.

    ``source`` names the data in messages. Raises UnsafeArchiveError for any
    other global (before it could run) and DataError for any other failure.
    """
    try:
        obj = _CifarUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise UnsafeArchiveError(f"refusing {e} in {source}: a CIFAR-10 batch needs only numpy arrays; "
                                 f"do not use this file, {_REDOWNLOAD}") from None
    except RecursionError:
        raise DataError(f"cannot unpickle {source}: nested too deeply, not a CIFAR-10 pickle; {_REEXTRACT}") from None
    except Exception as e:  # untrusted bytes can fail in any way; all of them mean "not a good batch"
        raise DataError(f"cannot unpickle {source} ({_reason(e)}): truncated or not a CIFAR-10 pickle; "
                        f"{_REEXTRACT}") from None
    return _str_keys(obj, source) if isinstance(obj, dict) else obj


def _str_keys(d: dict, source: str) -> dict:
    """``d`` with bytes keys decoded (latin-1) to str."""
    out: dict = {}
    for key, value in d.items():
        k = key.decode("latin-1") if isinstance(key, bytes) else key
        if k in out:
            raise DataError(f"{source} has the key {k!r} twice (as bytes and as str); {_REEXTRACT}")
        out[k] = value
    return out


# --------------------------------------------------------------------------- readers

def _check_format(fmt: str) -> None:
    """Raise UsageError unless ``fmt`` is one of FORMATS."""
    if fmt not in LAYOUTS:
        raise UsageError(f"unknown CIFAR-10 format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _read_bytes(path: Path) -> bytes:
    """The bytes of the regular file ``path`` (at most MAX_MEMBER_BYTES), or DataError."""
    try:
        size = os.stat(path).st_size
        if not path.is_file():
            raise DataError(f"{path} is not a regular file; {_REEXTRACT}")
        if size > MAX_MEMBER_BYTES:
            raise DataError(f"{path} is {size} bytes, above the {MAX_MEMBER_BYTES}-byte cap for a CIFAR-10 file; "
                            f"{_REEXTRACT}")
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} not found; {_REEXTRACT}") from None
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
        raise DataError(f"{path} is empty; {_REEXTRACT}")
    if len(data) % RECORD_BYTES:
        raise DataError(f"{path} is {len(data)} bytes, not a whole number of {RECORD_BYTES}-byte records; {_REEXTRACT}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)  # (N, 3073)
    y = records[:, 0].copy()                                                 # (N,)
    bad = np.flatnonzero(y >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: record {i} (byte offset {i * RECORD_BYTES}) has label byte {int(y[i])}, "
                        f"not 0-9; {_REEXTRACT}")
    X = np.ascontiguousarray(records[:, 1:])                                 # (N, 3072), a copy
    return X, y


def _parse_python_batch(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle a python-format batch and check its 'data' (N, 3072) uint8 and 'labels' (N,) fields."""
    batch = safe_unpickle(data, source=str(path))
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict with 'data' and 'labels'; "
                        f"{_REEXTRACT}")
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{path} has no {key!r} field (keys: {', '.join(map(repr, batch))}); {_REEXTRACT}")
    return _check_pixels(batch["data"], path), _check_labels(batch["labels"], len(batch["data"]), path)


def _check_pixels(X: Any, path: Path) -> np.ndarray:
    """``X`` as a C-contiguous writable uint8 (N, 3072) array, or DataError naming the field."""
    if not isinstance(X, np.ndarray):
        raise DataError(f"{path}: field 'data' is a {type(X).__name__}, not a numpy array; {_REEXTRACT}")
    if X.dtype != np.uint8:
        raise DataError(f"{path}: field 'data' has dtype {X.dtype}, expected uint8; {_REEXTRACT}")
    if X.ndim != 2 or X.shape[1] != IMAGE_BYTES or X.shape[0] < 1:
        raise DataError(f"{path}: field 'data' has shape {X.shape}, expected (N, {IMAGE_BYTES}) with N >= 1; "
                        f"{_REEXTRACT}")
    X = np.ascontiguousarray(X)
    return X if X.flags.writeable else X.copy()


def _check_labels(labels: Any, n: int, path: Path) -> np.ndarray:
    """``labels`` (a list or 1-D array of n ints in [0, 10)) as uint8 (n,), or DataError naming the field."""
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise DataError(f"{path}: field 'labels' is a {type(labels).__name__}, not a list of ints; {_REEXTRACT}")
    if len(labels) != n:
        raise DataError(f"{path}: field 'labels' has {len(labels)} entries but 'data' has {n} rows; {_REEXTRACT}")
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{path}: field 'labels' is an array of dtype {labels.dtype} and shape {labels.shape}, "
                            f"expected ({n},) ints; {_REEXTRACT}")
        bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
        i = int(bad[0]) if bad.size else None
    else:
        i = next((i for i, v in enumerate(labels) if not (_is_int(v) and 0 <= v < NUM_CLASSES)), None)
    if i is not None:
        v = labels[i]
        what = "not in 0-9" if _is_int(v) else "not an int"
        raise DataError(f"{path}: field 'labels' entry {i} is {v!r}, {what}; {_REEXTRACT}")
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
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}); {_REEXTRACT}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _parse_meta_pickle(data: bytes, path: Path) -> list[Any]:
    """Class names of the pickled ``batches.meta`` (its 'label_names' field, bytes decoded)."""
    meta = safe_unpickle(data, source=str(path))
    if not isinstance(meta, dict):
        raise DataError(f"{path} holds a {type(meta).__name__}, not a CIFAR-10 meta dict with 'label_names'; "
                        f"{_REEXTRACT}")
    if "label_names" not in meta:
        raise DataError(f"{path} has no 'label_names' field (keys: {', '.join(map(repr, meta))}); {_REEXTRACT}")
    names = meta["label_names"]
    if not isinstance(names, (list, tuple)):
        raise DataError(f"{path}: field 'label_names' is a {type(names).__name__}, not a list of names; {_REEXTRACT}")
    out: list[Any] = []
    for i, name in enumerate(names):
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}: field 'label_names' entry {i} is not UTF-8 text; {_REEXTRACT}") from None
        out.append(name.strip() if isinstance(name, str) else name)
    return out


def _check_names(names: list[Any], path: Path) -> list[str]:
    """``names`` if they are exactly 10 distinct non-empty strings, else DataError naming the file."""
    if len(names) != NUM_CLASSES:
        raise DataError(f"{path} lists {len(names)} class names, expected {NUM_CLASSES}; {_REEXTRACT}")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise DataError(f"{path}: class name {i} is a {type(name).__name__}, not a string; {_REEXTRACT}")
        if not name:
            raise DataError(f"{path}: class name {i} is empty; {_REEXTRACT}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: class name {dup!r} appears twice; {_REEXTRACT}")
    return list(names)

"""Files: atomic writes (a temporary name in the same folder, then ``os.replace``), strict JSON, npz sniffing,
the lock a process holds on a folder it writes.

A failure at any point leaves the previous file (if any) intact and no
half-written file under the final name.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

__all__ = ["LOCK_FILE", "hold_lock", "atomic_open", "check_not_folder", "not_npz", "write_text_atomic",
           "write_json_atomic", "unlink_quiet", "json_safe", "json_text", "shell_path"]

LOCK_FILE = ".linclf.lock"      # in a run or data folder: held (flock) by the process writing there


def hold_lock(path: Path, *, wait: bool, on_wait: Callable[[], None] | None = None) -> IO:
    """``path`` opened (made if missing) under an exclusive flock, once the file locked is the one at ``path``: a
    holder that removes the file as it lets go leaves its waiters holding a deleted file, so they lock the new one.

    Another holder: BlockingIOError, or with ``wait`` a blocking wait (``on_wait()`` called once first). OSError
    when the file cannot be made (FileNotFoundError: its folder is gone) or its file system has no locks. POSIX.
    """
    import fcntl

    waited = False
    while True:
        fh = open(path, "a")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise
                if on_wait is not None and not waited:
                    on_wait()
                waited = True
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if os.path.samestat(os.fstat(fh.fileno()), os.stat(path)):
                    return fh
            except FileNotFoundError:
                pass
        except BaseException:
            fh.close()
            raise
        fh.close()


def unlink_quiet(path: str | os.PathLike) -> None:
    """Remove a file if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def shell_path(path: str | os.PathLike) -> str:
    """``path`` as a command suggested in a message must spell it to be pasted into a shell (quoted if needed)."""
    return shlex.quote(os.fspath(path))


def not_npz(path: str | os.PathLike) -> str | None:
    """Why the file at ``path`` is not an .npz (a zip of .npy arrays), judged by its first bytes; None if it may be.

    The reason reads after "is not an .npz": "(empty (0 bytes))", "(it holds one array, an .npy)", ...
    OSError if it cannot be read.
    """
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    what = ("empty (0 bytes)" if not head else "it holds one array, an .npy" if head.startswith(b"\x93NUMPY")
            else "it holds pickled objects, which linclf never loads" if head[:1] == b"\x80"
            else f"it starts with {head!r}")
    return f"({what})"


def check_not_folder(path: str | os.PathLike, example: str | None = None) -> None:
    """Raise IsADirectoryError with a message saying what to do when ``path`` is a folder (no file can replace it).

    ``example``, a file name, makes the message suggest ``path/example`` (``model.npz``: "such as run/model.npz").
    """
    if not os.path.isdir(path):
        return
    where = os.fspath(path)
    if example and os.path.basename(where) != example:
        raise IsADirectoryError(f"{where} is a folder; give a file name such as {os.path.join(where, example)}")
    raise IsADirectoryError(f"{where} is a folder, so no file can be written under that name; give another file "
                            "name or move the folder away")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit move it over ``path``, else delete it.

    A ``path`` that is a folder, or whose folder is missing or not writable, is an OSError that names
    ``path`` (not the temporary name), raised before anything is written. The temporary name is drawn
    before the file is made, so a Ctrl-C at any point, even as the file comes into being, removes it.
    """
    path = Path(path)
    check_not_folder(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"      # 64 random bits: no other writer's name
    # read-write (a caller may memory-map the file); 0o666 less the umask, as for any new file
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        try:
            fd = os.open(tmp, flags, 0o666)
        except OSError as e:          # the error would name the temporary file: name the file asked for
            raise type(e)(e.errno, e.strerror, os.fspath(path)) from None
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def json_safe(obj: object) -> object:
    """``obj`` with every NaN or infinite float (Python or NumPy) replaced by None, and NumPy scalars
    and arrays turned into plain Python values, so that strict JSON parsers accept it."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):     # numpy scalars and arrays
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj: object, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (non-finite numbers written as null; never NaN or Infinity)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json_atomic(path: str | os.PathLike, obj: object, indent: int | None = None) -> None:
    """Write ``obj`` as strict JSON (non-finite numbers as null) to ``path`` atomically."""
    write_text_atomic(path, json_text(obj, indent=indent) + ("\n" if indent else ""))

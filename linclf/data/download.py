"""Fetch one file over HTTP(S) from a list of URLs: resumable, verified, atomic.

The network is treated as hostile: servers stall, cut bodies short, ignore
Range, redirect to login pages or answer with HTML. Each URL gets a few retries
with exponential backoff for transient failures (connection errors, timeouts,
5xx, 429); any other failure moves on to the next URL at once. Bytes go to
``<dest>.part`` in the same folder and only a complete, verified file is moved
to ``dest`` with ``os.replace``; a good file already at ``dest`` is never
touched otherwise. This module is that policy; the requests and what their
answers mean are ``http``'s.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

from tqdm import tqdm

from linclf.errors import ChecksumError, DataError, DownloadError, UsageError

from .http import (CHUNK, AttemptFailed, check_body, check_url, network_failure, open_body, open_url, plan_body,
                   redirect_target)

__all__ = ["fetch", "md5sum", "redirect_target", "retry_delay"]

MAX_DELAY = 60.0                # cap on any wait between attempts, Retry-After included
_MD5 = re.compile(r"[0-9a-f]{32}")


class _Mismatch(AttemptFailed):
    """A URL delivered a whole file whose md5 is not the expected one."""


@dataclass(frozen=True)
class _Target:
    """Where the bytes go and what the finished file must be."""

    dest: Path
    part: Path
    md5: str | None
    size: int | None


@dataclass(frozen=True)
class _Policy:
    """How hard to try: timeouts, retries, waits, progress output."""

    timeout: float
    retries: int
    backoff: float
    sleep: Callable[[float], None]
    quiet: bool


# ---------------------------------------------------------------- public API


def fetch(urls: Sequence[str], dest: str | os.PathLike, *, md5: str | None, size: int | None = None,
          timeout: float = 30.0, retries: int = 5, backoff: float = 1.0, quiet: bool = False,
          sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download the first URL that works into `dest`, verified by md5, atomically.

    URLs are tried in order; each gets up to ``retries`` retries (waiting
    ``backoff * 2**attempt`` s, or a server's Retry-After, at most 60 s) on
    connection errors, timeouts, 5xx and 429. A ``<dest>.part`` left by an
    earlier attempt or run is resumed with a Range request. Raises
    ``ChecksumError`` if some URL delivered a file with the wrong md5 and no URL
    delivered the right one, ``DownloadError`` if every URL failed otherwise
    (the message lists each URL and its failure), ``DataError`` if the file
    cannot be written, ``UsageError`` for invalid arguments.
    """
    urls = _check_args(urls, dest, md5, size, timeout, retries, backoff)
    dest = Path(dest)
    target = _Target(dest, dest.with_name(dest.name + ".part"), md5.lower() if md5 else None, size)
    policy = _Policy(float(timeout), int(retries), float(backoff), sleep, quiet)
    _make_folder(dest.parent)
    failures: list[str] = []
    mismatch = False
    for url in urls:
        try:
            _fetch_verified(url, target, policy)
        except AttemptFailed as exc:
            failures.append(f"{url}: {exc}")
            mismatch = mismatch or isinstance(exc, _Mismatch)
            continue
        _move(target.part, dest)
        return dest
    raise _final_error(dest.name, failures, mismatch)


def md5sum(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex md5 digest of the file at ``path``, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def retry_delay(attempt: int, backoff: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt + 1``: Retry-After if given, else exponential."""
    delay = retry_after if retry_after is not None else backoff * 2 ** attempt
    return min(max(delay, 0.0), MAX_DELAY)


# ------------------------------------------------------- arguments and files


def _check_args(urls: Sequence[str], dest: str | os.PathLike, md5: str | None, size: int | None,
                timeout: float, retries: int, backoff: float) -> list[str]:
    """Validate fetch's arguments; return the URLs as a list."""
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise UsageError(f"no URL given to download {Path(dest).name} from")
    for url in urls:
        check_url(url)
    if md5 is not None and not _MD5.fullmatch(md5.lower()):
        raise UsageError(f"md5 {md5!r} is not an MD5 checksum (32 hexadecimal digits)")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise UsageError(f"size must be a byte count >= 0 or None, got {size!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise UsageError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not isinstance(retries, int) or retries < 0 or not backoff >= 0:
        raise UsageError(f"retries and backoff must be >= 0, got retries={retries!r}, backoff={backoff!r}")
    return urls


def _make_folder(folder: Path) -> None:
    """Create the download folder, or raise DataError saying why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(folder, exc) from None


def _write_error(path: Path, exc: OSError) -> DataError:
    """A DataError naming the path that could not be written and what to do."""
    reason = exc.strerror or str(exc)
    return DataError(f"cannot write {path}: {reason}; free disk space, fix the folder's permissions "
                     "or choose another data folder")


def _part_size(target: _Target) -> int:
    """Bytes already in the .part file (0 if none); drops a .part larger than the expected size."""
    try:
        have = target.part.stat().st_size
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise _write_error(target.part, exc) from None
    if target.size is not None and have > target.size:
        _remove(target.part)
        return 0
    return have


def _remove(path: Path) -> None:
    """Delete ``path`` if it exists."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from None


def _open_part(part: Path, start: int) -> BinaryIO:
    """Open the .part for writing at ``start`` (append) or from zero (truncate)."""
    try:
        return open(part, "ab" if start else "wb")
    except OSError as exc:
        raise _write_error(part, exc) from None


def _write(f: BinaryIO, data: bytes, part: Path) -> None:
    """Write ``data`` to the open .part, turning OS errors into DataError."""
    try:
        f.write(data)
    except OSError as exc:
        raise _write_error(part, exc) from None


def _sync(f: BinaryIO, part: Path) -> None:
    """Flush the .part to disk so a crash after os.replace cannot leave a short file."""
    try:
        f.flush()
        os.fsync(f.fileno())
    except OSError as exc:
        raise _write_error(part, exc) from None


def _part_md5(part: Path) -> str:
    """md5 of the finished .part, turning OS errors into DataError."""
    try:
        return md5sum(part)
    except OSError as exc:
        raise DataError(f"cannot read back {part}: {exc.strerror or exc}") from None


def _move(part: Path, dest: Path) -> None:
    """Atomically put the verified .part in place of ``dest``."""
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise _write_error(dest, exc) from None


def _final_error(name: str, failures: list[str], mismatch: bool) -> DownloadError | ChecksumError:
    """The one-line error listing every URL's failure, with a hint on how to recover."""
    listed = "; ".join(failures)
    if mismatch:
        return ChecksumError(f"could not download {name}: {listed}. A server sent a different file: "
                             "check the expected md5 or use another mirror")
    return DownloadError(f"could not download {name}: {listed}. Check the URLs and the network, or get "
                         "the file another way and pass it with --archive PATH (or data.archive)")


# ------------------------------------------------------------ one URL


def _fetch_verified(url: str, target: _Target, policy: _Policy) -> None:
    """Download ``url`` into the .part and verify it; raise AttemptFailed if that fails."""
    stale = _part_size(target) > 0    # bytes from another URL or an earlier run
    while True:
        _download(url, target, policy)
        if target.md5 is None:
            return
        got = _part_md5(target.part)
        if got == target.md5:
            return
        _remove(target.part)
        if not stale:
            raise _Mismatch(f"md5 checksum mismatch: expected {target.md5}, got {got}")
        stale = False                 # the old .part may have been the culprit: one fresh try


def _download(url: str, target: _Target, policy: _Policy) -> None:
    """Complete the .part from ``url``, retrying transient failures with backoff."""
    for attempt in range(policy.retries + 1):
        try:
            _attempt(url, target, policy, attempt)
            return
        except AttemptFailed as exc:
            if not exc.retry:
                raise
            if attempt == policy.retries:
                raise AttemptFailed(f"{exc}{_after_retries(policy.retries)}") from None
            policy.sleep(retry_delay(attempt, policy.backoff, exc.retry_after))


def _after_retries(retries: int) -> str:
    """The `` after N retries`` suffix of a failure message ('' without retries)."""
    if not retries:
        return ""
    return f" after {retries} {'retry' if retries == 1 else 'retries'}"


def _attempt(url: str, target: _Target, policy: _Policy, attempt: int) -> None:
    """One request (following redirects) that appends what it receives to the .part."""
    offset = _part_size(target)
    conn, resp = open_url(url, offset, policy.timeout)
    try:
        plan = plan_body(resp, offset, target.size)
        if plan is None:
            return                    # 416 on a .part that already has the whole file
        start, total = plan
        check_body(resp, target.size, total)
        desc = target.dest.name + (f" (retry {attempt})" if attempt else "")
        _receive(resp, target, start, total, desc, policy.quiet)
    except AttemptFailed as exc:
        if exc.restart:
            _remove(target.part)      # its bytes are not a prefix of this file
        raise
    except (OSError, http.client.HTTPException) as exc:
        raise network_failure(exc, policy.timeout, "read") from None
    finally:
        conn.close()


def _receive(resp: http.client.HTTPResponse, target: _Target, start: int, total: int | None,
             desc: str, quiet: bool) -> None:
    """Stream the body into the .part from byte ``start``; fail if it is short or HTML."""
    body = open_body(resp, start)
    expected = target.size if target.size is not None else total
    with _open_part(target.part, start) as f, _progress(desc, start, expected, quiet) as bar:
        for block in body:
            _write(f, block, target.part)
            bar.update(len(block))
        _sync(f, target.part)
    body.check_complete(expected)


def _progress(desc: str, start: int, total: int | None, quiet: bool) -> tqdm:
    """A byte progress bar on stderr, silent when quiet or when stderr is not a terminal."""
    stderr = sys.stderr
    tty = stderr is not None and getattr(stderr, "isatty", lambda: False)()
    return tqdm(total=total, initial=start, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=stderr, disable=quiet or not tty, leave=True, dynamic_ncols=True)

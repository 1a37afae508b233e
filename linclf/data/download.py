"""Fetch one file over HTTP(S) from a list of URLs: resumable, verified, atomic.

The network is treated as hostile: servers stall, cut bodies short, ignore
Range, redirect to login pages or answer with HTML. Each URL gets a few retries
with exponential backoff for transient failures (connection errors, timeouts,
5xx, 429); any other failure moves on to the next URL at once. Bytes go to
``<dest>.part`` in the same folder and only a complete, verified file is moved
to ``dest`` with ``os.replace``; a good file already at ``dest`` is never
touched otherwise.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import BinaryIO, Callable, Sequence, Tuple
from urllib.parse import quote, urljoin, urlsplit

from tqdm import tqdm

from linclf.errors import ChecksumError, DataError, DownloadError, UsageError

__all__ = ["fetch", "md5sum", "redirect_target", "retry_delay"]

CHUNK = 1 << 20                 # bytes per read and per hash update
MAX_REDIRECTS = 5
MAX_DELAY = 60.0                # cap on any wait between attempts, Retry-After included
SCHEMES = ("http", "https")
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = ("text/html", "application/xhtml+xml")
HTML_MAGIC = (b"<!doctype html", b"<html")
SNIFF_BYTES = 64
_Conn = Tuple[http.client.HTTPConnection, http.client.HTTPResponse]
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_MD5 = re.compile(r"[0-9a-f]{32}")


def _user_agent() -> str:
    """``linclf/<version>`` from the installed package metadata."""
    try:
        return f"linclf/{metadata.version('linclf')}"
    except metadata.PackageNotFoundError:
        return "linclf"


USER_AGENT = _user_agent()


class _Failure(Exception):
    """One attempt at one URL failed; ``retry`` says whether another attempt may help."""

    def __init__(self, message: str, *, retry: bool = False, retry_after: float | None = None,
                 checksum: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
        self.checksum = checksum


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
        except _Failure as exc:
            failures.append(f"{url}: {exc}")
            mismatch = mismatch or exc.checksum
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


def redirect_target(current: str, location: str) -> str:
    """The absolute URL a redirect from ``current`` to ``location`` leads to; refuses HTTPS->HTTP."""
    new = urljoin(current, location.strip())
    if urlsplit(current).scheme.lower() == "https" and urlsplit(new).scheme.lower() == "http":
        raise DownloadError(f"refused redirect from {current} to {new}: it downgrades HTTPS to plain HTTP")
    _check_url(new, what="redirect target")
    return new


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
        _check_url(url)
    if md5 is not None and not _MD5.fullmatch(md5.lower()):
        raise UsageError(f"md5 {md5!r} is not an MD5 checksum (32 hexadecimal digits)")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise UsageError(f"size must be a byte count >= 0 or None, got {size!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise UsageError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not isinstance(retries, int) or retries < 0 or not backoff >= 0:
        raise UsageError(f"retries and backoff must be >= 0, got retries={retries!r}, backoff={backoff!r}")
    return urls


def _check_url(url: str, what: str = "URL") -> None:
    """Raise DownloadError unless ``url`` is an http(s) URL with a host and a valid port."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise DownloadError(f"cannot download {what} {url!r}: {exc}; fix the URL") from None
    if parts.scheme.lower() not in SCHEMES:
        scheme = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise DownloadError(f"cannot download {what} {url!r}: unsupported scheme ({scheme}); "
                            "only http:// and https:// URLs can be downloaded")
    if not parts.hostname or not port_ok:
        raise DownloadError(f"cannot download {what} {url!r}: it has no valid host or port; fix the URL")


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
    """Download ``url`` into the .part and verify it; raise _Failure if that fails."""
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
            raise _Failure(f"md5 checksum mismatch: expected {target.md5}, got {got}", checksum=True)
        stale = False                 # the old .part may have been the culprit: one fresh try


def _download(url: str, target: _Target, policy: _Policy) -> None:
    """Complete the .part from ``url``, retrying transient failures with backoff."""
    for attempt in range(policy.retries + 1):
        try:
            _attempt(url, target, policy, attempt)
            return
        except _Failure as exc:
            if not exc.retry:
                raise
            if attempt == policy.retries:
                raise _Failure(f"{exc}{_after_retries(policy.retries)}") from None
            policy.sleep(retry_delay(attempt, policy.backoff, exc.retry_after))


def _after_retries(retries: int) -> str:
    """The `` after N retries`` suffix of a failure message ('' without retries)."""
    if not retries:
        return ""
    return f" after {retries} {'retry' if retries == 1 else 'retries'}"


def _attempt(url: str, target: _Target, policy: _Policy, attempt: int) -> None:
    """One request (following redirects) that appends what it receives to the .part."""
    offset = _part_size(target)
    conn, resp = _open(url, offset, policy.timeout)
    try:
        plan = _plan(resp, target, offset)
        if plan is None:
            return                    # 416 on a .part that already has the whole file
        start, total = plan
        _check_body(resp, target, total)
        desc = target.dest.name + (f" (retry {attempt})" if attempt else "")
        _receive(resp, target, start, total, desc, policy.quiet)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_failure(exc, policy.timeout, "read") from None
    finally:
        conn.close()


# --------------------------------------------------------- HTTP requests


def _open(url: str, offset: int, timeout: float) -> _Conn:
    """GET ``url`` (from byte ``offset``), following up to MAX_REDIRECTS redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        conn, resp = _request(url, offset, timeout)
        if resp.status not in REDIRECT_CODES:
            return conn, resp
        location = resp.getheader("Location")
        conn.close()
        if not location:
            raise _Failure(f"HTTP {resp.status} redirect without a Location header")
        try:
            url = redirect_target(url, location)
        except DownloadError as exc:
            raise _Failure(str(exc)) from None
    raise _Failure(f"more than {MAX_REDIRECTS} redirects (the last one to {url})")


def _request(url: str, offset: int, timeout: float) -> _Conn:
    """Send one GET and read the status line and headers; ``timeout`` bounds connect and each read."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise _network_failure(exc, timeout, "connect") from None
        try:
            conn.request("GET", _request_path(parts.path, parts.query), headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise _network_failure(exc, timeout, "read") from None
    except BaseException:
        conn.close()
        raise


def _request_path(path: str, query: str) -> str:
    """The request target: the URL's path (percent-encoded where needed) and query."""
    target = quote(path or "/", safe="/%:@!$&'()*+,;=~")
    return f"{target}?{query}" if query else target


def _network_failure(exc: BaseException, timeout: float, phase: str) -> _Failure:
    """Translate a socket or HTTP exception into a failure saying what happened."""
    if isinstance(exc, TimeoutError):
        what = "no answer" if phase == "connect" else "no data"
        return _Failure(f"{phase} timed out ({what} for {timeout:g} s)", retry=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _Failure(f"TLS certificate verification failed ({exc.verify_message})")
    if isinstance(exc, socket.gaierror):
        return _Failure(f"could not resolve the host name ({exc.strerror})",
                        retry=exc.errno == socket.EAI_AGAIN)
    if isinstance(exc, ConnectionRefusedError):
        return _Failure("connection refused", retry=True)
    if isinstance(exc, http.client.RemoteDisconnected):
        return _Failure("server closed the connection without answering", retry=True)
    if isinstance(exc, http.client.IncompleteRead):
        return _Failure(f"connection closed mid-body ({len(exc.partial)} bytes of a chunk read)", retry=True)
    if isinstance(exc, http.client.InvalidURL):
        return _Failure(f"invalid URL ({exc})")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _Failure(f"{phase} failed: {reason}", retry=True)


# ------------------------------------------------------------ responses


def _plan(resp: http.client.HTTPResponse, target: _Target, offset: int) -> tuple[int, int | None] | None:
    """From the status: (byte where the body starts, total file size or None), or None if already complete."""
    status = resp.status
    if status == 200:
        return 0, resp.length         # a Range we sent was ignored: start over from zero
    if status == 206 and offset:
        return _plan_partial(resp, target, offset)
    if status == 416 and offset:
        return _plan_unsatisfiable(resp, target, offset)
    if status == 429 or 500 <= status < 600:
        raise _Failure(f"HTTP {status} {resp.reason}".rstrip(), retry=True, retry_after=_retry_after(resp))
    raise _Failure(f"HTTP {status} {resp.reason}".rstrip())


def _plan_partial(resp: http.client.HTTPResponse, target: _Target, offset: int) -> tuple[int, int | None]:
    """A 206 must continue exactly at ``offset``; otherwise drop the .part and start over."""
    first, _last, total = _content_range(resp.getheader("Content-Range", ""))
    if first == offset:
        return offset, total
    if first == 0:
        return 0, total
    _remove(target.part)
    raise _Failure(f"server answered Range bytes={offset}- with Content-Range "
                   f"{resp.getheader('Content-Range')!r}; starting over", retry=True)


def _plan_unsatisfiable(resp: http.client.HTTPResponse, target: _Target, offset: int) -> None:
    """A 416 means the .part is complete only if its size is the expected size; else start over."""
    expected = target.size
    if expected is None:
        expected = _content_range(resp.getheader("Content-Range", ""))[2]
    if expected is not None and offset == expected:
        return None
    _remove(target.part)
    raise _Failure(f"HTTP 416 for Range bytes={offset}-: the partial file was not a prefix of this "
                   "file; starting over", retry=True)


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a Content-Range header such as ``bytes 0-99/1000`` or ``bytes */1000``."""
    match = _CONTENT_RANGE.match(value.strip())
    if match:
        total = None if match[3] == "*" else int(match[3])
        return int(match[1]), int(match[2]), total
    unsatisfied = re.fullmatch(r"bytes\s+\*/(\d+)", value.strip(), re.IGNORECASE)
    return None, None, int(unsatisfied[1]) if unsatisfied else None


def _retry_after(resp: http.client.HTTPResponse) -> float | None:
    """Seconds of a numeric Retry-After header (dates and garbage are ignored)."""
    try:
        value = float(resp.getheader("Retry-After", ""))
    except ValueError:
        return None
    return value if 0 <= value < float("inf") else None


def _check_body(resp: http.client.HTTPResponse, target: _Target, total: int | None) -> None:
    """Refuse an HTML body or one whose announced total size is not the expected size."""
    ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if ctype in HTML_TYPES:
        _remove(target.part)
        raise _Failure(_html_message(f"Content-Type {ctype}"))
    if target.size is not None and total is not None and total != target.size:
        raise _Failure(f"server says the file is {total} bytes, expected {target.size}")


def _html_message(evidence: str) -> str:
    """The failure text for a URL that answered with a web page instead of the file."""
    return f"the answer looks like an HTML page ({evidence}), e.g. a login or error page, not the file"


def _looks_like_html(head: bytes) -> bool:
    """True if the first bytes of a body start an HTML document."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(HTML_MAGIC)


def _read_head(resp: http.client.HTTPResponse) -> bytes:
    """Read the first SNIFF_BYTES bytes of the body (fewer if it ends sooner)."""
    head = b""
    while len(head) < SNIFF_BYTES:
        block = resp.read1(SNIFF_BYTES - len(head))
        if not block:
            break
        head += block
    return head


def _receive(resp: http.client.HTTPResponse, target: _Target, start: int, total: int | None,
             desc: str, quiet: bool) -> None:
    """Stream the body into the .part from byte ``start``; fail if it is short or HTML."""
    announced = resp.length           # Content-Length of this body, None if unknown
    head = b""
    if start == 0:
        head = _read_head(resp)
        if _looks_like_html(head):
            _remove(target.part)
            raise _Failure(_html_message("it starts with " + repr(head.lstrip()[:15].decode("latin-1"))))
    expected = target.size if target.size is not None else total
    got = 0
    with _open_part(target.part, start) as f, _progress(desc, start, expected, quiet) as bar:
        block = head or resp.read1(CHUNK)
        while block:
            _write(f, block, target.part)
            got += len(block)
            bar.update(len(block))
            block = resp.read1(CHUNK)
        _sync(f, target.part)
    _check_length(target, start + got, got, announced, expected)


def _check_length(target: _Target, have: int, got: int, announced: int | None, expected: int | None) -> None:
    """Fail (retryably) if the body was shorter than announced or the file is still incomplete."""
    if announced is not None and got < announced:
        raise _Failure(f"connection closed after {got} of {announced} bytes", retry=True)
    if expected is not None and have < expected:
        raise _Failure(f"the body ended at byte {have} of {expected}", retry=True)
    if expected is not None and have > expected:
        _remove(target.part)
        raise _Failure(f"the server sent {have} bytes, more than the expected {expected}")


def _progress(desc: str, start: int, total: int | None, quiet: bool) -> tqdm:
    """A byte progress bar on stderr, silent when quiet or when stderr is not a terminal."""
    stderr = sys.stderr
    tty = stderr is not None and getattr(stderr, "isatty", lambda: False)()
    return tqdm(total=total, initial=start, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=stderr, disable=quiet or not tty, leave=True, dynamic_ncols=True)

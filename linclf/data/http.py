"""The HTTP side of a download: one GET, its redirects, and what its answer allows.

Connections and requests (a Range from a byte offset, a User-Agent, no
content encoding), redirects (never HTTPS to HTTP), the status and
Content-Range read as a plan (where the body starts, the file's total size),
Retry-After, pages that are HTML instead of the file, and the body in blocks.
Every failure is an ``AttemptFailed`` that says whether another attempt may
help and whether the bytes received so far must be dropped; files, retries and
checksums are the business of ``download``.
"""
from __future__ import annotations

import http.client
import re
import socket
import ssl
from importlib import metadata
from typing import Iterator, Tuple
from urllib.parse import quote, urljoin, urlsplit

from linclf.errors import DownloadError

__all__ = ["CHUNK", "USER_AGENT", "AttemptFailed", "Body", "check_body", "check_url", "network_failure",
           "open_body", "open_url", "plan_body", "redirect_target"]

CHUNK = 1 << 20                 # bytes per read (and per hash update in download)
MAX_REDIRECTS = 5
SCHEMES = ("http", "https")
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = ("text/html", "application/xhtml+xml")
HTML_MAGIC = (b"<!doctype html", b"<html")
SNIFF_BYTES = 64
Conn = Tuple[http.client.HTTPConnection, http.client.HTTPResponse]
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


def _user_agent() -> str:
    """``linclf/<version>`` from the installed package metadata."""
    try:
        return f"linclf/{metadata.version('linclf')}"
    except metadata.PackageNotFoundError:
        return "linclf"


USER_AGENT = _user_agent()


class AttemptFailed(Exception):
    """One attempt at one URL failed.

    ``retry``: another attempt at the same URL may help (after ``retry_after``
    seconds if the server said so); ``restart``: the bytes received so far are
    not a prefix of this file, so the next attempt starts from zero.
    """

    def __init__(self, message: str, *, retry: bool = False, retry_after: float | None = None,
                 restart: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after
        self.restart = restart


# ------------------------------------------------------------------ URLs


def check_url(url: str, what: str = "URL") -> None:
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


def redirect_target(current: str, location: str) -> str:
    """The absolute URL a redirect from ``current`` to ``location`` leads to; refuses HTTPS->HTTP."""
    new = urljoin(current, location.strip())
    if urlsplit(current).scheme.lower() == "https" and urlsplit(new).scheme.lower() == "http":
        raise DownloadError(f"refused redirect from {current} to {new}: it downgrades HTTPS to plain HTTP")
    check_url(new, what="redirect target")
    return new


# --------------------------------------------------------------- requests


def open_url(url: str, offset: int, timeout: float) -> Conn:
    """GET ``url`` (from byte ``offset``), following up to MAX_REDIRECTS redirects; the caller closes it."""
    for _ in range(MAX_REDIRECTS + 1):
        conn, resp = _request(url, offset, timeout)
        if resp.status not in REDIRECT_CODES:
            return conn, resp
        location = resp.getheader("Location")
        conn.close()
        if not location:
            raise AttemptFailed(f"HTTP {resp.status} redirect without a Location header")
        try:
            url = redirect_target(url, location)
        except DownloadError as exc:
            raise AttemptFailed(str(exc)) from None
    raise AttemptFailed(f"more than {MAX_REDIRECTS} redirects (the last one to {url})")


def _request(url: str, offset: int, timeout: float) -> Conn:
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
            raise network_failure(exc, timeout, "connect") from None
        try:
            conn.request("GET", _request_path(parts.path, parts.query), headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise network_failure(exc, timeout, "read") from None
    except BaseException:
        conn.close()
        raise


def _request_path(path: str, query: str) -> str:
    """The request target: the URL's path (percent-encoded where needed) and query."""
    target = quote(path or "/", safe="/%:@!$&'()*+,;=~")
    return f"{target}?{query}" if query else target


def network_failure(exc: BaseException, timeout: float, phase: str) -> AttemptFailed:
    """Translate a socket or HTTP exception during ``phase`` (connect, read) into a failure saying what happened."""
    if isinstance(exc, TimeoutError):
        what = "no answer" if phase == "connect" else "no data"
        return AttemptFailed(f"{phase} timed out ({what} for {timeout:g} s)", retry=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AttemptFailed(f"TLS certificate verification failed ({exc.verify_message})")
    if isinstance(exc, socket.gaierror):
        return AttemptFailed(f"could not resolve the host name ({exc.strerror})",
                             retry=exc.errno == socket.EAI_AGAIN)
    if isinstance(exc, ConnectionRefusedError):
        return AttemptFailed("connection refused", retry=True)
    if isinstance(exc, http.client.RemoteDisconnected):
        return AttemptFailed("server closed the connection without answering", retry=True)
    if isinstance(exc, http.client.IncompleteRead):
        return AttemptFailed(f"connection closed mid-body ({len(exc.partial)} bytes of a chunk read)", retry=True)
    if isinstance(exc, http.client.InvalidURL):
        return AttemptFailed(f"invalid URL ({exc})")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return AttemptFailed(f"{phase} failed: {reason}", retry=True)


# -------------------------------------------------------------- responses


def plan_body(resp: http.client.HTTPResponse, offset: int, size: int | None) -> tuple[int, int | None] | None:
    """From the status: (byte where the body starts, total file size or None), or None if already complete.

    ``offset`` is the byte the request's Range asked for (0: no Range), ``size``
    the expected size of the whole file (None: unknown).
    """
    status = resp.status
    if status == 200:
        return 0, resp.length         # a Range we sent was ignored: start over from zero
    if status == 206 and offset:
        return _plan_partial(resp, offset)
    if status == 416 and offset:
        return _plan_unsatisfiable(resp, offset, size)
    if status == 429 or 500 <= status < 600:
        raise AttemptFailed(f"HTTP {status} {resp.reason}".rstrip(), retry=True, retry_after=_retry_after(resp))
    raise AttemptFailed(f"HTTP {status} {resp.reason}".rstrip())


def _plan_partial(resp: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """A 206 must continue exactly at ``offset``; otherwise start over."""
    first, _last, total = _content_range(resp.getheader("Content-Range", ""))
    if first == offset:
        return offset, total
    if first == 0:
        return 0, total
    raise AttemptFailed(f"server answered Range bytes={offset}- with Content-Range "
                        f"{resp.getheader('Content-Range')!r}; starting over", retry=True, restart=True)


def _plan_unsatisfiable(resp: http.client.HTTPResponse, offset: int, size: int | None) -> None:
    """A 416 means the file is complete only if ``offset`` is the expected size; else start over."""
    expected = size
    if expected is None:
        expected = _content_range(resp.getheader("Content-Range", ""))[2]
    if expected is not None and offset == expected:
        return None
    raise AttemptFailed(f"HTTP 416 for Range bytes={offset}-: the partial file was not a prefix of this "
                        "file; starting over", retry=True, restart=True)


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


def check_body(resp: http.client.HTTPResponse, size: int | None, total: int | None) -> None:
    """Refuse an HTML body or one whose announced ``total`` file size is not the expected ``size``."""
    ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if ctype in HTML_TYPES:
        raise AttemptFailed(_html_message(f"Content-Type {ctype}"), restart=True)
    if size is not None and total is not None and total != size:
        raise AttemptFailed(f"server says the file is {total} bytes, expected {size}")


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


# ------------------------------------------------------------------ bodies


class Body:
    """A response body that holds the file from byte ``start``; iterate for its blocks (at most CHUNK bytes)."""

    def __init__(self, resp: http.client.HTTPResponse, start: int, announced: int | None, head: bytes) -> None:
        self.resp = resp
        self.start = start
        self.announced = announced    # Content-Length of this body, None if unknown
        self.received = 0
        self._head = head

    def __iter__(self) -> Iterator[bytes]:
        block = self._head or self.resp.read1(CHUNK)
        while block:
            self.received += len(block)
            yield block
            block = self.resp.read1(CHUNK)

    def check_complete(self, expected: int | None) -> None:
        """Fail (retryably) if the body was shorter than announced or the file of ``expected`` bytes is incomplete."""
        have, got = self.start + self.received, self.received
        if self.announced is not None and got < self.announced:
            raise AttemptFailed(f"connection closed after {got} of {self.announced} bytes", retry=True)
        if expected is not None and have < expected:
            raise AttemptFailed(f"the body ended at byte {have} of {expected}", retry=True)
        if expected is not None and have > expected:
            raise AttemptFailed(f"the server sent {have} bytes, more than the expected {expected}", restart=True)


def open_body(resp: http.client.HTTPResponse, start: int) -> Body:
    """The body of ``resp``, which starts at byte ``start`` of the file; refuses one that starts an HTML page."""
    announced = resp.length           # before any byte is read: reading counts it down
    head = b""
    if start == 0:
        head = _read_head(resp)
        if _looks_like_html(head):
            raise AttemptFailed(_html_message("it starts with " + repr(head.lstrip()[:15].decode("latin-1"))),
                                restart=True)
    return Body(resp, start, announced, head)

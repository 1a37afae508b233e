"""Tests of linclf.data.download against a scripted HTTP server on 127.0.0.1.

Each test scripts what the server answers to each request on a path, then
checks both the outcome of ``fetch`` and the files left on disk.
"""
from __future__ import annotations

import errno
import hashlib
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

from linclf.data.download import fetch, md5sum, redirect_target, retry_delay
from linclf.errors import ChecksumError, DataError, DownloadError, UsageError

PAYLOAD = random.Random(0).randbytes(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
OLD = b"a previous good file that must survive a failed download"

Action = Callable[[BaseHTTPRequestHandler], None]


# ------------------------------------------------------------- the server


class Server:
    """A local HTTP server whose answers each test scripts; it records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Action]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()   # set at teardown to free stalled handlers
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def script(self, path: str, *actions: Action) -> str:
        """Answer successive requests to ``path`` with ``actions`` (the last one repeats); return its URL."""
        self.routes[path] = list(actions)
        return self.url(path)

    def hits(self, path: str) -> list[dict[str, str]]:
        """Headers of every request made to ``path``, in order."""
        return [headers for p, headers in self.requests if p == path]

    def next_action(self, path: str) -> Action | None:
        """The action for the next request to ``path``."""
        actions = self.routes.get(path)
        if not actions:
            return None
        return actions.pop(0) if len(actions) > 1 else actions[0]


def _handler_for(server: Server) -> type[BaseHTTPRequestHandler]:
    """A request handler class that records requests and runs the scripted actions."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            action = server.next_action(self.path) or status(404)
            action(self)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server():
    """A running scripted server, shut down after the test."""
    s = Server()
    s.thread.start()
    yield s
    s.release.set()
    s.httpd.shutdown()
    s.httpd.server_close()


# ------------------------------------------------------------- actions


def _requested_start(h: BaseHTTPRequestHandler) -> int | None:
    """The first byte of a ``Range: bytes=N-`` request header, or None."""
    value = h.headers.get("Range")
    return int(value.removeprefix("bytes=").rstrip("-")) if value else None


def serve(payload: bytes = PAYLOAD, *, ranges: bool = True, content_type: str = "application/octet-stream",
          cut: float | None = None) -> Action:
    """Serve ``payload`` (honouring Range unless told not to); ``cut`` sends only that fraction of the body."""

    def act(h: BaseHTTPRequestHandler) -> None:
        start = _requested_start(h) if ranges else None
        if start is not None and start >= len(payload):
            return status(416, {"Content-Range": f"bytes */{len(payload)}"})(h)
        body = payload[start or 0:]
        h.send_response(206 if start is not None else 200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        if start is not None:
            h.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        h.end_headers()
        h.wfile.write(body if cut is None else body[: int(len(body) * cut)])
        h.close_connection = True

    return act


def status(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Action:
    """Answer with ``code``, extra ``headers`` and a small ``body``."""

    def act(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return act


def redirect(location: str, code: int = 302) -> Action:
    """Redirect to ``location``."""
    return status(code, {"Location": location})


def stall(server: Server) -> Action:
    """Send the headers of the payload, then no body until the test ends."""

    def act(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(PAYLOAD)))
        h.end_headers()
        h.wfile.flush()
        server.release.wait(10)
        h.close_connection = True

    return act


def drop(h: BaseHTTPRequestHandler) -> None:
    """Close the connection without answering."""
    h.close_connection = True


def wrong_range(h: BaseHTTPRequestHandler) -> None:
    """Answer any request with a 206 that starts at byte 10, whatever was asked."""
    body = PAYLOAD[10:]
    h.send_response(206)
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Content-Range", f"bytes 10-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
    h.end_headers()
    h.wfile.write(body)


# ------------------------------------------------------------- helpers


class Sleeps(list):
    """A ``sleep`` replacement that records the requested delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def get(dest: Path, *urls: str, **kwargs) -> Path:
    """Call fetch with test defaults: md5 of PAYLOAD, no waiting, no progress, short timeout."""
    kwargs.setdefault("md5", MD5)
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("timeout", 5.0)
    return fetch(list(urls), dest, quiet=True, **kwargs)


def part_of(dest: Path) -> Path:
    """The .part file fetch uses for ``dest``."""
    return dest.with_name(dest.name + ".part")


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.bin"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """Where the download goes (inside a folder fetch must create)."""
    return tmp_path / "data" / "file.bin"


@pytest.fixture
def old_dest(dest: Path) -> Path:
    """``dest`` already holding a previous good file."""
    dest.parent.mkdir(parents=True)
    dest.write_bytes(OLD)
    return dest


def assert_failed_cleanly(dest: Path, *, old: bool = False, part: bool = False) -> None:
    """No new file under ``dest`` (the old one intact if there was one) and no .part unless expected."""
    if old:
        assert dest.read_bytes() == OLD
    else:
        assert not dest.exists()
    assert part_of(dest).exists() == part


# ------------------------------------------------------------- success paths


def test_plain_download(server, dest):
    url = server.script("/f.bin", serve())
    assert get(dest, url) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_of(dest).exists()
    (headers,) = server.hits("/f.bin")
    assert headers["user-agent"].startswith("linclf/")
    assert "range" not in headers


def test_replaces_previous_file_only_when_verified(server, old_dest):
    url = server.script("/f.bin", serve())
    get(old_dest, url, size=len(PAYLOAD))
    assert old_dest.read_bytes() == PAYLOAD


def test_no_md5_given(server, dest):
    url = server.script("/f.bin", serve())
    get(dest, url, md5=None, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


def test_md5sum_streams(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(PAYLOAD)
    assert md5sum(path, chunk=4096) == MD5


# ------------------------------------------------------------- retries


def test_404_is_not_retried(server, old_dest):
    url = server.script("/missing.bin", status(404))
    with pytest.raises(DownloadError, match="404") as err:
        get(old_dest, url)
    assert url in str(err.value)
    assert len(server.hits("/missing.bin")) == 1
    assert_failed_cleanly(old_dest, old=True)


def test_503_then_200_is_retried(server, dest):
    sleeps = Sleeps()
    url = server.script("/f.bin", status(503), serve())
    get(dest, url, sleep=sleeps, backoff=1.0)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits("/f.bin")) == 2
    assert sleeps == [1.0]


@pytest.mark.parametrize("retry_after, waited", [("7", 7.0), ("100000", 60.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.5)])
def test_429_then_200_honours_retry_after(server, dest, retry_after, waited):
    sleeps = Sleeps()
    url = server.script("/f.bin", status(429, {"Retry-After": retry_after}), serve())
    get(dest, url, sleep=sleeps, backoff=0.5)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits("/f.bin")) == 2
    assert sleeps == [waited]


def test_retries_run_out_on_503(server, old_dest):
    sleeps = Sleeps()
    url = server.script("/f.bin", status(503))
    with pytest.raises(DownloadError, match=r"HTTP 503 Service Unavailable after 2 retries"):
        get(old_dest, url, retries=2, backoff=1.0, sleep=sleeps)
    assert len(server.hits("/f.bin")) == 3
    assert sleeps == [1.0, 2.0]
    assert_failed_cleanly(old_dest, old=True)


def test_dropped_connection_is_retried(server, dest):
    url = server.script("/f.bin", drop, serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits("/f.bin")) == 2


def test_retry_delay_is_exponential_and_capped():
    assert [retry_delay(a, 1.5) for a in range(4)] == [1.5, 3.0, 6.0, 12.0]
    assert retry_delay(10, 1.0) == 60.0
    assert retry_delay(0, 1.0, retry_after=3.0) == 3.0
    assert retry_delay(0, 1.0, retry_after=3600.0) == 60.0


# ------------------------------------------------------------- resuming


def test_short_body_is_resumed_with_range(server, dest):
    url = server.script("/f.bin", serve(cut=0.5), serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    first, second = server.hits("/f.bin")
    assert "range" not in first
    assert second["range"] == f"bytes={len(PAYLOAD) // 2}-"
    assert not part_of(dest).exists()


def test_short_body_until_retries_run_out(server, old_dest):
    url = server.script("/f.bin", serve(cut=0.5))
    with pytest.raises(DownloadError, match=r"connection closed after \d+ of \d+ bytes after 2 retries"):
        get(old_dest, url, retries=2)
    assert len(server.hits("/f.bin")) == 3
    # the .part is kept, holding a correct prefix, so the next run resumes it
    assert_failed_cleanly(old_dest, old=True, part=True)
    kept = part_of(old_dest).read_bytes()
    assert len(kept) == len(PAYLOAD) * 7 // 8 and PAYLOAD.startswith(kept)


def test_existing_part_is_resumed(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD[:100_000])
    url = server.script("/f.bin", serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    (headers,) = server.hits("/f.bin")
    assert headers["range"] == "bytes=100000-"
    assert not part_of(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(b"garbage that must be thrown away")
    url = server.script("/f.bin", serve(ranges=False))
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    (headers,) = server.hits("/f.bin")
    assert headers["range"] == "bytes=32-"


def test_wrong_content_range_restarts(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD[:1000])
    url = server.script("/f.bin", wrong_range, serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    first, second = server.hits("/f.bin")
    assert first["range"] == "bytes=1000-" and "range" not in second


def test_416_on_complete_part_finishes(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD)
    url = server.script("/f.bin", serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits("/f.bin")) == 1


def test_416_on_oversized_part_restarts(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD + b"extra")
    url = server.script("/f.bin", serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    first, second = server.hits("/f.bin")
    assert first["range"] == f"bytes={len(PAYLOAD) + 5}-" and "range" not in second


def test_stale_part_with_wrong_bytes_is_refetched(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(b"\0" * 5000)
    url = server.script("/f.bin", serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    first, second = server.hits("/f.bin")
    assert first["range"] == "bytes=5000-" and "range" not in second


# ------------------------------------------------------------- hostile answers


def test_stalled_server_times_out(server, old_dest):
    url = server.script("/f.bin", stall(server))
    with pytest.raises(DownloadError, match=r"read timed out \(no data for 0.5 s\) after 1 retry\."):
        get(old_dest, url, timeout=0.5, retries=1)
    assert len(server.hits("/f.bin")) == 2
    assert_failed_cleanly(old_dest, old=True)


def test_connect_timeout_is_retried(server, dest, monkeypatch):
    def unreachable(*args, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(DownloadError, match=r"connect timed out \(no answer for 0.5 s\) after 2 retries"):
        get(dest, server.url("/f.bin"), timeout=0.5, retries=2)
    assert_failed_cleanly(dest)


@pytest.mark.parametrize("body, content_type", [
    (b"<html><body>Please log in</body></html>", "text/html; charset=utf-8"),
    (b"\n  <!DOCTYPE html>\n<html><body>Not found</body></html>" + b"x" * 500, "application/octet-stream"),
])
def test_html_page_is_refused(server, old_dest, body, content_type):
    url = server.script("/f.bin", serve(body, content_type=content_type))
    with pytest.raises(DownloadError, match="looks like an HTML page") as err:
        get(old_dest, url)
    assert url in str(err.value)
    assert len(server.hits("/f.bin")) == 1
    assert_failed_cleanly(old_dest, old=True)


def test_size_disagreeing_with_content_length(server, dest):
    url = server.script("/f.bin", serve())
    with pytest.raises(DownloadError, match=f"server says the file is {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        get(dest, url, size=len(PAYLOAD) + 1)
    assert len(server.hits("/f.bin")) == 1
    assert_failed_cleanly(dest)


def test_checksum_mismatch(server, old_dest):
    url = server.script("/f.bin", serve())
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as err:
        get(old_dest, url, md5=wrong)
    message = str(err.value)
    assert f"expected {wrong}, got {MD5}" in message and url in message
    assert_failed_cleanly(old_dest, old=True)


def test_checksum_mismatch_moves_to_next_mirror(server, dest):
    bad = server.script("/bad.bin", serve(PAYLOAD[::-1]))
    good = server.script("/good.bin", serve())
    get(dest, bad, good)
    assert dest.read_bytes() == PAYLOAD


# ------------------------------------------------------------- mirrors


def test_falls_back_to_next_url(server, dest):
    first = server.script("/a.bin", status(404))
    second = server.script("/b.bin", serve())
    get(dest, first, second)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits("/a.bin")) == 1


def test_all_mirrors_fail(server, old_dest):
    missing = server.script("/a.bin", status(404))
    busy = server.script("/b.bin", status(503))
    refused = closed_port_url()
    with pytest.raises(DownloadError) as err:
        get(old_dest, missing, busy, refused, retries=1)
    message = str(err.value)
    assert message.startswith("could not download file.bin: ")
    assert "\n" not in message
    assert f"{missing}: HTTP 404 Not Found; " in message
    assert f"{busy}: HTTP 503 Service Unavailable after 1 retry; " in message
    assert f"{refused}: connection refused after 1 retry." in message
    assert message.index(missing) < message.index(busy) < message.index(refused)
    assert_failed_cleanly(old_dest, old=True)


# ------------------------------------------------------------- redirects


@pytest.mark.parametrize("location, final", [
    ("new.bin", "/dir/new.bin"),
    ("../other/new.bin", "/other/new.bin"),
    ("/abs/new.bin", "/abs/new.bin"),
])
def test_relative_redirect_is_followed(server, dest, location, final):
    url = server.script("/dir/old.bin", redirect(location, 301))
    server.script(final, serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits(final)) == 1


def test_redirect_chain_keeps_range(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD[:1234])
    url = server.script("/a", redirect("/b", 307))
    server.script("/b", redirect(server.url("/c"), 308))
    server.script("/c", serve())
    get(dest, url)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits("/c")[0]["range"] == "bytes=1234-"


def test_redirect_loop_is_cut(server, dest):
    url = server.script("/loop", redirect("/loop"))
    with pytest.raises(DownloadError, match="more than 5 redirects"):
        get(dest, url)
    assert len(server.hits("/loop")) == 6
    assert_failed_cleanly(dest)


def test_redirect_policy():
    assert redirect_target("https://a.org/x/f", "g") == "https://a.org/x/g"
    assert redirect_target("https://a.org/x/f", "//b.org/g") == "https://b.org/g"
    assert redirect_target("http://a.org/f", "https://b.org/g") == "https://b.org/g"
    with pytest.raises(DownloadError, match="downgrades HTTPS to plain HTTP") as err:
        redirect_target("https://a.org/f", "http://b.org/g")
    assert "https://a.org/f" in str(err.value) and "http://b.org/g" in str(err.value)
    with pytest.raises(DownloadError, match="unsupported scheme"):
        redirect_target("http://a.org/f", "ftp://b.org/g")


# ------------------------------------------------------------- bad arguments, bad folders


@pytest.mark.parametrize("url", ["ftp://example.org/f.bin", "file:///etc/passwd", "example.org/f.bin"])
def test_unsupported_scheme(server, dest, url):
    good = server.script("/f.bin", serve())
    with pytest.raises(DownloadError, match="unsupported scheme") as err:
        get(dest, url, good)
    assert url in str(err.value)
    assert server.requests == []
    assert_failed_cleanly(dest)


def test_unwritable_folder(server, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_bytes(b"")
    url = server.script("/f.bin", serve())
    with pytest.raises(DataError, match="not_a_folder"):
        get(blocker / "file.bin", url)
    assert server.requests == []


def test_disk_full_keeps_previous_file(server, old_dest, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("linclf.data.download.os.fsync", full)
    url = server.script("/f.bin", serve())
    with pytest.raises(DataError, match="No space left on device") as err:
        get(old_dest, url)
    assert str(part_of(old_dest)) in str(err.value)
    assert old_dest.read_bytes() == OLD


@pytest.mark.parametrize("kwargs, match", [
    ({"md5": "not-a-checksum"}, "not an MD5 checksum"),
    ({"size": -1}, "size must be"),
    ({"timeout": 0}, "timeout must be"),
    ({"retries": -1}, "retries and backoff"),
])
def test_bad_arguments(dest, kwargs, match):
    with pytest.raises(UsageError, match=match):
        get(dest, "http://127.0.0.1:9/f.bin", **kwargs)

"""HTTP(S) to one origin: the one way the device speaks HTTP, to keep-server
(through `remote.Remote`) and to keep-checkin (the DNS pointer and the
update check, including python-tuf's downloads).

What every request gets here, once: TLS verified against the system's CAs or
the configured CA file, with a one-line error naming --ca-file when that
fails; plain http refused except to this machine unless the owner allows it;
a fixed User-Agent; one keep-alive connection per calling thread; every body
read bounded by a limit the caller states, so a hostile server cannot
exhaust memory; no redirects followed, so a credential never goes where it
was not sent. Retries, when the caller allows them: on network errors, 5xx
and 429, after the server's Retry-After in seconds (at most RETRY_AFTER_MAX)
or else after an exponential backoff jittered by ±50%, so devices that failed
together do not return together; never on other 4xx. A large body can be
read a piece at a time (`BodyStream`), and a range of an object resumed
where its connection broke (`RangeReader`). HTTP(S)_PROXY is not used: the
device connects to its servers directly (docs/cli.md).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import ipaddress
import os
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

from keep.protocol.errors import ExitCode, KeepError, ProtocolViolationError, ServerUnreachableError
from keep.protocol.limits import MiB

JSON_MAX = 16 * MiB
RETRIES = 4
BACKOFF_FIRST = 0.5  # seconds, doubled per retry, each wait jittered by ±50%
RETRY_AFTER_MAX = 60  # seconds: the longest a server's Retry-After is honoured
READ_TIMEOUT = 120.0  # seconds without progress on a connection
USER_AGENT = "keep"  # fixed, no version: what the check-in status shows is what is sent
RECORD_MAX = 16 * 1024  # bytes of a request kept for `record`
# Errors of a reused keep-alive connection that the server had already closed.
STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class InsecureTransportError(KeepError):
    """Raised for a URL keep will not use: not http(s), or plain http to another machine."""

    exit_code = ExitCode.USAGE


class Reply(NamedTuple):
    status: int
    body: bytes  # empty when `stream` carries it
    content_type: str  # without parameters: "application/json"
    retry_after: float | None  # seconds, if the server said
    stream: BodyStream | None = None  # a 2xx body not read yet (`Transport.request(stream=True)`)


class BodyStream:
    """A reply body taken off the connection as the caller reads it, so a
    large one is never held whole. It is read on the thread that asked for
    it, and read to its end or closed before that thread's next request;
    closing it part-way drops the connection (what is left of the body is
    never read). At most the limit the request gave is read."""

    def __init__(
        self,
        transport: Transport,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        limit: int,
    ) -> None:
        self._transport, self._conn, self._resp = transport, conn, resp
        self.left = limit  # bytes the caller may still read
        header = resp.getheader("Content-Length")
        self.length = int(header) if header is not None and header.isdigit() else None  # as declared

    def read(self, n: int) -> bytes:
        """The body's next `n` bytes. A body that ends before them is a
        network failure (http.client.IncompleteRead), as in `request`; one
        longer than the limit is a protocol violation."""
        if n > self.left:
            self.close()
            raise ProtocolViolationError("the server sent a body larger than allowed")
        data = self._resp.read(n)
        self.left -= len(data)
        if len(data) < n:
            self.close()
            raise http.client.IncompleteRead(data, n - len(data))
        return data

    def close(self) -> None:
        """Done with the body: the connection stays for the next request
        only if the body was read to its end and the server keeps it open."""
        if not self._resp.isclosed() or self._resp.will_close:
            self._resp.close()
            self._transport._drop(self._conn)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(url: str, service: str = "keep-server", allow_insecure_http: bool = False) -> str | None:
    """Why keep will not use `url`, or None: not http(s), or plain http to
    another machine (unless the owner allows it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"the {service} URL must be http:// or https://, not {url!r}"
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        return (
            f"refusing plain http to {parts.hostname}: credentials and data would cross "
            "the network without TLS. Use https:// (with --ca-file if needed), or --insecure-http"
        )
    return None


class Transport:
    """Blocking HTTP(S) to `base_url`, safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        allow_insecure_http: bool = False,
        service: str = "keep-server",
        timeout: float = READ_TIMEOUT,
        record: Callable[[bytes], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service  # what errors call the far side
        refused = refusal(self.base_url, service, allow_insecure_http)
        if refused:
            raise InsecureTransportError(refused)
        parts = urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self.ca_file = ca_file
        self._timeout = timeout
        self._record = record  # gets each request's bytes as they went out (head and a small body)
        self._ssl: ssl.SSLContext | None = None
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._answered = False  # has the server ever replied (so a failure now is a cut)

    def close(self) -> None:
        """Close every thread's connection; only once no thread uses it any more."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # Connections ---------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            recording = self._record is not None
            if self._https:
                if self._ssl is None:
                    self._ssl = ssl.create_default_context(cafile=self.ca_file)
                secure = _RecordingHTTPS if recording else http.client.HTTPSConnection
                conn = secure(self.host, self._port, timeout=self._timeout, context=self._ssl)
            else:
                plain = _Recording if recording else http.client.HTTPConnection
                conn = plain(self.host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        """Close `conn` and forget it; this thread's next request opens a new one."""
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)  # a long run with many drops holds no dead ones

    # Requests -------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        limit: int = JSON_MAX,
        retry: bool = True,
        stream: bool = False,
    ) -> Reply:
        """One request (`path` below the base URL), retried as the module
        says if `retry`. A file body must carry its Content-Length header and
        starts again from its beginning on a retry. Network failures that
        outlast the retries raise ServerUnreachableError. With `stream`, a
        2xx reply's body is left on the connection for the caller to read
        (`Reply.stream`); a failure while reading it is the caller's to retry."""
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        if isinstance(body, bytes):
            hdrs["Content-Length"] = str(len(body))
        elif body is None and method in ("POST", "PUT"):
            hdrs["Content-Length"] = "0"
        delay = BACKOFF_FIRST
        attempts = RETRIES if retry else 1
        attempt = 0
        while True:
            if body is not None and not isinstance(body, bytes):
                body.seek(0)
            reused = getattr(self._local, "conn", None) is not None
            try:
                reply = self._exchange(method, path, body, hdrs, limit, stream)
            except ssl.SSLCertVerificationError as exc:
                self._drop_connection()
                raise ServerUnreachableError(
                    f"the TLS certificate of {self.base_url} could not be verified ({exc.verify_message}); "
                    "if the server uses a private CA, give it with --ca-file or KEEP_CA_FILE"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if reused and isinstance(exc, STALE_CONNECTION):
                    continue  # the server closed an idle keep-alive connection: not a failure
                attempt += 1
                if attempt >= attempts:
                    raise self.unreachable(exc) from None
                time.sleep(_jittered(delay))
                delay *= 2
                continue
            self._answered = True
            attempt += 1
            if (reply.status >= 500 or reply.status == 429) and attempt < attempts:
                wait = reply.retry_after
                time.sleep(min(wait, RETRY_AFTER_MAX) if wait is not None else _jittered(delay))
                delay *= 2
                continue
            return reply

    def unreachable(self, exc: BaseException) -> ServerUnreachableError:
        """What went wrong reaching the server, and what to check, in one line."""
        url = self.base_url
        if self._answered:  # it did answer before: the server went away, or the network
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            what = (
                f"cannot reach the server at {url} any more ({reason}) — "
                "is the server still up and the network working?"
            )
        elif isinstance(exc, socket.gaierror):
            what = f"cannot resolve the host name {self.host!r} — is the server address right?"
        elif isinstance(exc, ConnectionRefusedError):
            what = (
                f"no {self.service} answers at {url} (connection refused) — "
                "is the URL right and the server running?"
            )
        elif isinstance(exc, TimeoutError):
            what = f"the server at {url} did not answer in time — is it up, and is the network working?"
        elif isinstance(exc, ssl.SSLError):
            what = (
                f"TLS with {url} failed ({exc.reason or exc}) — is that port an https server? "
                "(a plain-http server needs an http:// URL)"
            )
        elif isinstance(exc, http.client.HTTPException):
            what = (
                f"the server at {url} closed the connection or answered something that is not HTTP — "
                "is the URL right (https vs http, port)?"
            )
        elif isinstance(exc, OSError) and exc.strerror:
            what = f"cannot reach the server at {url}: {exc.strerror}"
        else:
            what = f"cannot reach the server at {url} ({type(exc).__name__})"
        return ServerUnreachableError(what)

    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None,
        headers: dict[str, str],
        limit: int,
        stream: bool = False,
    ) -> Reply:
        """One request on this thread's connection; the body read is bounded.
        A file body goes out with sendfile(2): the kernel copies it to the
        socket (plain HTTP; under TLS Python falls back to sends)."""
        conn = self._connection()
        if isinstance(conn, _Recording):
            conn.sent.clear()
        if body is None or isinstance(body, bytes):
            conn.request(method, self._prefix + path, body=body, headers=headers)
        else:
            conn.request(method, self._prefix + path, headers=headers)  # headers carry the length
            body.flush()
            if conn.sock is None:
                raise ConnectionResetError("connection closed before the body was sent")
            send_file(conn.sock, body, int(headers["Content-Length"]))
        if self._record is not None and isinstance(conn, _Recording):
            self._record(bytes(conn.sent))
        resp = conn.getresponse()
        header = resp.getheader("Content-Length")
        declared = int(header) if header is not None and header.isdigit() else None
        if declared is not None and declared > limit:
            self._drop_connection()
            raise ProtocolViolationError("the server sent a body larger than allowed")
        content_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        retry_after = _seconds(resp.getheader("Retry-After"))
        if stream and 200 <= resp.status < 300:
            return Reply(resp.status, b"", content_type, retry_after, BodyStream(self, conn, resp, limit))
        raw = resp.read(limit + 1)
        if len(raw) > limit:
            self._drop_connection()
            raise ProtocolViolationError("the server sent a body larger than allowed")
        if declared is not None and len(raw) < declared:
            # http.client returns what arrived when the connection ends early;
            # a server that died mid-reply is a network failure (retried), not
            # a damaged object.
            self._drop_connection()
            raise http.client.IncompleteRead(raw, declared - len(raw))
        if resp.will_close:
            self._drop_connection()
        return Reply(resp.status, raw, content_type, retry_after)


class RangeReader:
    """Bytes [start, end) of one object, read piece by piece (`read`,
    `skip`) off the body `open(position)` returns for bytes position…end —
    so a caller that takes one blob at a time holds one blob, never the
    range. Small pieces are served from up to READ_AHEAD bytes read at once.
    A body that breaks part-way is asked for again from the first byte not
    yet read off it, rounded down to a multiple of `align` (so that where a
    reader resumes says no more than where a range starts): at most RETRIES
    breaks in all, after a backoff like `Transport.request`'s, then
    ServerUnreachableError. Read on one thread; close it (or use it as a
    context manager) when done."""

    # Pieces smaller than this are served from one read of this many bytes
    # (a range of 4 KiB blobs would otherwise be one small socket read per
    # blob, each giving up the interpreter lock and waiting to win it back).
    READ_AHEAD = 256 * 1024
    # What is left of a body when the caller is done (a range is widened past
    # its last blob, to RANGE_ALIGN) is read off, up to this much, so that the
    # connection serves the next request: dropping it cost the small-files
    # restore a new connection per range.
    DRAIN_MAX = 256 * 1024

    def __init__(
        self, transport: Transport, open: Callable[[int], BodyStream], start: int, end: int, align: int = 1
    ) -> None:
        self._transport, self._open, self.end = transport, open, end
        self._start, self._align = start, align
        self.position = start  # of the next byte the caller gets
        self._ahead = memoryview(b"")  # bytes read off the body, not yet given out
        self._body: BodyStream | None = None
        self._breaks = 0

    def read(self, n: int) -> bytes:
        """The next `n` bytes (the range must hold them)."""
        if n < 0 or self.position + n > self.end:
            raise ValueError(f"{n} bytes at {self.position} are outside the range")
        ahead = self._ahead
        if n <= len(ahead):
            self._ahead = ahead[n:]
            self.position += n
            return bytes(ahead[:n])
        want = n - len(ahead)
        fetched = self.position + len(ahead)  # where the body is
        take = want if want >= self.READ_AHEAD else min(self.READ_AHEAD, self.end - fetched)
        data = self._take(fetched, take)
        self.position += n
        if take == want:
            self._ahead = memoryview(b"")
            return data if not ahead else b"".join((ahead, data))
        self._ahead = memoryview(data)[want:]
        return b"".join((ahead, data[:want])) if ahead else data[:want]

    def skip(self, n: int) -> None:
        """Read past the next `n` bytes."""
        if n < 0 or self.position + n > self.end:
            raise ValueError(f"{n} bytes at {self.position} are outside the range")
        buffered = min(n, len(self._ahead))
        self._ahead = self._ahead[buffered:]
        self.position += buffered
        n -= buffered
        while n > 0:  # a gap between blobs: read off and dropped, a piece at a time
            piece = min(n, self.READ_AHEAD)
            self._take(self.position, piece)
            self.position += piece
            n -= piece

    def _take(self, at: int, count: int) -> bytes:
        """`count` bytes off the body, which is at `at`; a body that breaks
        is asked for again from `at`."""
        delay = BACKOFF_FIRST
        while True:
            try:
                if self._body is None:
                    resume = max(self._start, at - at % self._align)
                    self._body = self._open(resume)
                    if resume < at:
                        self._body.read(at - resume)  # asked for again, from the boundary before it
                return self._body.read(count)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                self._breaks += 1
                if self._breaks >= RETRIES:
                    raise self._transport.unreachable(exc) from None
                time.sleep(_jittered(delay))
                delay *= 2

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self, drain: bool = False) -> None:
        """Done with the range. With `drain`, up to DRAIN_MAX bytes still
        unread are read off and the connection is kept; otherwise (and on
        any failure to read them) it is dropped."""
        body, self._body = self._body, None
        self._ahead = memoryview(b"")
        if body is None:
            return
        left = body.left
        if drain and 0 < left <= self.DRAIN_MAX:
            with contextlib.suppress(OSError, http.client.HTTPException, ProtocolViolationError):
                body.read(left)
        body.close()

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(drain=exc_type is None)  # after a failure, nothing more is read


def send_file(sock: socket.socket, file: BinaryIO, count: int) -> None:
    """The first `count` bytes of `file` to `sock`: by sendfile(2) (the
    kernel copies them), or under TLS by sends. `socket.sendfile` does the
    same, but every call of it leaves a reference cycle behind (its
    selector), garbage that only the cyclic collector frees — and a backup
    pauses the collector (`collector.paused`) for its whole length."""
    if isinstance(sock, ssl.SSLSocket):
        sock.sendfile(file, 0, count)  # sends through TLS: no selector
        return
    timeout = sock.gettimeout()
    writable = select.poll()
    writable.register(sock, select.POLLOUT)
    sent = 0
    while sent < count:
        if timeout is not None and not writable.poll(timeout * 1000):
            raise TimeoutError("timed out sending a request body")
        try:
            n = os.sendfile(sock.fileno(), file.fileno(), sent, count - sent)
        except BlockingIOError:
            continue
        if n == 0:
            raise OSError(errno.EIO, f"a request body ended after {sent} of its {count} bytes")
        sent += n


class _Recording(http.client.HTTPConnection):
    """A connection that keeps what http.client writes for the current
    request: it hands the request head (with a small body) to `send`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = bytearray()

    def send(self, data: Any) -> None:
        if isinstance(data, bytes | bytearray) and len(self.sent) < RECORD_MAX:
            self.sent += data[: RECORD_MAX - len(self.sent)]
        super().send(data)


class _RecordingHTTPS(_Recording, http.client.HTTPSConnection):
    """The same over TLS (the bytes before encryption)."""


def _jittered(delay: float) -> float:
    return delay * random.uniform(0.5, 1.5)  # noqa: S311 — spreading retries, not a secret


def _seconds(header: str | None) -> float | None:
    """A Retry-After given in seconds (the HTTP-date form is not honoured)."""
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None

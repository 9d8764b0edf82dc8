"""HTTP adapter to keep-server: the client's only network edge.

Blocking calls for the (synchronous, multi-threaded) engine, plus background
uploads (`put_object_async`, `put_file_async`) so uploads overlap with CPU work. Translates HTTP errors into
the `KeepError` tree exactly once, here. Retries idempotent requests on network
errors, 5xx and 429: after the server's Retry-After (in seconds, at most
RETRY_AFTER_MAX) if it gives one, else after an exponential backoff jittered by
±50% so devices that failed together do not return together; never retries
other 4xx. Every body read is bounded by a limit the caller states, so a
hostile server cannot exhaust memory. http.client does not use HTTP(S)_PROXY:
connections to keep-server go direct (the check-in agent's use urllib, which
does honour them).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import random
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from keep.protocol.api import LIST_LIMIT_MAX, Route, object_path, route_path
from keep.protocol.errors import (
    AuthError,
    ErrorCode,
    ExitCode,
    IntegrityError,
    KeepError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolViolationError,
    QuotaExceededError,
    ServerUnreachableError,
)
from keep.protocol.limits import OBJECT_MAX, MiB

JSON_MAX = 16 * MiB
LIST_OBJECTS_MAX = 2_000_000  # of one kind: 32 TB of packs, far beyond a home server
RETRIES = 4
BACKOFF_FIRST = 0.5  # seconds, doubled per retry, each wait jittered by ±50%
RETRY_AFTER_MAX = 60  # seconds: the longest a server's Retry-After is honoured
READ_TIMEOUT = 120.0  # seconds without progress on a connection
USER_AGENT = "keep"
# Errors of a reused keep-alive connection that the server had already closed.
STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
UPLOAD_CONCURRENCY = 4  # packs in flight: overlaps the server's per-object fsync


class InsecureTransportError(KeepError):
    """Raised for a server URL keep will not use: not http(s), or plain http to another machine."""

    exit_code = ExitCode.USAGE


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    id: str
    size: int
    created: int


def _error(status: int, body: dict[str, Any], url: str) -> KeepError:
    """keep-server's own error reply as the one error the client raises."""
    code = body.get("code", "")
    message = str(body.get("message", f"HTTP {status}"))[:300]
    if code == ErrorCode.APPEND_ONLY:
        return PermissionDeniedError(
            "this device's credential is append-only; run the command with the owner password"
        )
    if code == ErrorCode.DEVICE_REVOKED:
        return PermissionDeniedError("this device has been revoked by the owner; run `keep login` again")
    if code == ErrorCode.QUOTA_EXCEEDED:
        return QuotaExceededError("the server says the account's storage quota is exhausted")
    if code == ErrorCode.STORAGE_FULL:
        return QuotaExceededError(
            "the server is out of storage space; nothing stored so far is lost, retry once space is freed"
        )
    if code == ErrorCode.LOCKED:
        return LockedError("the repository is locked by another client (try again later)")
    if code == ErrorCode.HASH_MISMATCH:
        return IntegrityError("the server received a corrupted upload")
    if code == ErrorCode.RATE_LIMITED:
        return AuthError("too many failed logins; wait a few minutes and try again")
    if status == 401:
        return AuthError("the server refused the credential (log in again with `keep login`)")
    if status == 404:
        return NotFoundError(message)
    if status == 403:
        return PermissionDeniedError(message)
    return KeepError(f"the keep-server at {url} answered HTTP {status}: {message}")


class Remote:
    """Blocking HTTP client with per-thread keep-alive connections.

    The engine is multi-threaded already, so each calling thread uses its own
    `http.client` connection; background uploads run on a small pool whose
    size bounds the packs in flight. (The standard library keeps `keep`'s
    start-up at a few tens of milliseconds: importing aiohttp alone cost
    ~0.25 s, a quarter of an unchanged daily backup.)
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        ca_file: str | None = None,
        upload_concurrency: int = UPLOAD_CONCURRENCY,
        allow_insecure_http: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InsecureTransportError(f"the server URL must be http:// or https://, not {base_url!r}")
        self._https = parts.scheme == "https"
        if not self._https and not allow_insecure_http and not _is_loopback(parts.hostname):
            raise InsecureTransportError(
                f"refusing plain http to {parts.hostname}: the login credential and your data would cross "
                "the network without TLS. Use https:// (with --ca-file if needed), or --insecure-http"
            )
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self.ca_file = ca_file
        self._ssl: ssl.SSLContext | None = None
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._answered = False  # has the server ever replied (so a failure now is a cut)
        self._uploads = ThreadPoolExecutor(upload_concurrency, thread_name_prefix="keep-upload")
        self._upload_slots = threading.BoundedSemaphore(upload_concurrency)

    def close(self) -> None:
        """Close every thread's connection. Only once no thread uses the
        client any more (the engine joins its threads first): a connection
        is never closed under a request in flight."""
        self._uploads.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Connections ----------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                if self._ssl is None:
                    self._ssl = ssl.create_default_context(cafile=self.ca_file)
                conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=READ_TIMEOUT, context=self._ssl
                )
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=READ_TIMEOUT)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                self._connections.remove(conn)  # a long run with many drops holds no dead ones

    # Core request with retries ----------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        limit: int = JSON_MAX,
        token: str | None = None,
        retry: bool = True,
    ) -> tuple[int, bytes, str]:
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        bearer = token or self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        body: bytes | BinaryIO | None = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        if isinstance(body, bytes):
            hdrs["Content-Length"] = str(len(body))
        elif body is None and method in ("POST", "PUT"):
            hdrs["Content-Length"] = "0"
        delay = BACKOFF_FIRST
        attempts = RETRIES if retry else 1
        attempt = 0
        while True:
            if body is not None and not isinstance(body, bytes):
                body.seek(0)  # a retried upload starts again from the beginning
            reused = getattr(self._local, "conn", None) is not None
            try:
                status, raw, ctype, retry_after = self._exchange(method, path, body, hdrs, limit)
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
                    raise self._unreachable(exc) from None
                time.sleep(_jittered(delay))
                delay *= 2
                continue
            self._answered = True
            attempt += 1
            # A busy or failing server: retried, after its Retry-After if it
            # gives one (bounded), else after the jittered backoff, so many
            # devices that failed together do not come back together.
            if (status >= 500 or status == 429) and attempt < attempts:
                time.sleep(min(retry_after, RETRY_AFTER_MAX) if retry_after is not None else _jittered(delay))
                delay *= 2
                continue
            return status, raw, ctype

    def _unreachable(self, exc: BaseException) -> ServerUnreachableError:
        """What went wrong reaching the server, and what to check, in one line."""
        url = self.base_url
        if self._answered:  # it did answer before: the server went away, or the network
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            what = (
                f"cannot reach the server at {url} any more ({reason}) — "
                "is the server still up and the network working?"
            )
        elif isinstance(exc, socket.gaierror):
            what = f"cannot resolve the host name {self._host!r} — is the server address right?"
        elif isinstance(exc, ConnectionRefusedError):
            what = (
                f"no keep-server answers at {url} (connection refused) — "
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
        self, method: str, path: str, body: bytes | BinaryIO | None, headers: dict[str, str], limit: int
    ) -> tuple[int, bytes, str, float | None]:
        """One request on this thread's connection; the body read is bounded.
        Returns (status, body, content type, Retry-After seconds or None).
        A file body goes out with sendfile(2): the kernel copies the spooled
        pack to the socket (plain HTTP; under TLS Python falls back to sends)."""
        conn = self._connection()
        if body is None or isinstance(body, bytes):
            conn.request(method, self._prefix + path, body=body, headers=headers)
        else:
            conn.request(method, self._prefix + path, headers=headers)  # headers carry the length
            body.flush()
            if conn.sock is None:
                raise ConnectionResetError("connection closed before the body was sent")
            conn.sock.sendfile(body, 0, int(headers["Content-Length"]))
        resp = conn.getresponse()
        header = resp.getheader("Content-Length")
        declared = int(header) if header is not None and header.isdigit() else None
        if declared is not None and declared > limit:
            self._drop_connection()
            raise ProtocolViolationError("the server sent a body larger than allowed")
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
        retry_after = _seconds(resp.getheader("Retry-After"))
        return resp.status, raw, (resp.getheader("Content-Type") or "").split(";")[0].strip(), retry_after

    def request_json(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        retry: bool = True,
    ) -> Any:
        status, raw, ctype = self._request(method, path, json_body=body, token=token, retry=retry)
        if status not in ok:
            raise _reply_error(status, raw, ctype, self.base_url)
        if raw and ctype != "application/json":  # a web page where the API should be
            raise _foreign_reply(status, self.base_url)
        return _json_or_none(raw, ctype)

    # Objects ---------------------------------------------------------------------
    def put_object(self, kind: str, data: bytes) -> str:
        return self.put_object_async(kind, data).result()

    def put_object_async(self, kind: str, data: bytes, object_id: str | None = None) -> Future[str]:
        """Upload in the background; at most `upload_concurrency` at once
        (the caller blocks here when all slots are busy — backpressure).
        `object_id`, if the caller already hashed `data`, saves hashing twice."""
        object_id = object_id or hashlib.sha256(data).hexdigest()
        return self._upload(kind, object_id, data, len(data))

    def put_file_async(self, kind: str, spool: BinaryIO, size: int, object_id: str) -> Future[str]:
        """Upload `size` bytes of `spool` (from its start) in the background and
        close it afterwards; bounded like `put_object_async`."""
        return self._upload(kind, object_id, spool, size)

    def _upload(self, kind: str, object_id: str, body: bytes | BinaryIO, size: int) -> Future[str]:
        self._upload_slots.acquire()

        def upload() -> str:
            try:
                status, raw, ctype = self._request(
                    "PUT",
                    object_path(kind, object_id),
                    data=body,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                )
            finally:
                self._upload_slots.release()
                if not isinstance(body, bytes):
                    body.close()
            if status not in (200, 201):
                raise _reply_error(status, raw, ctype, self.base_url)
            return object_id

        try:
            return self._uploads.submit(upload)
        except BaseException:
            self._upload_slots.release()
            raise

    def get_object(self, kind: str, object_id: str, limit: int = OBJECT_MAX) -> bytes:
        data = self._get(kind, object_id, None, limit)
        if hashlib.sha256(data).hexdigest() != object_id:
            raise IntegrityError(f"{kind} {object_id[:12]} does not hash to its name")
        return data

    def get_range(self, kind: str, object_id: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object; their integrity is checked by the
        AEAD frames they contain, not here."""
        data = self._get(kind, object_id, (start, end), end - start)
        if len(data) != end - start:
            raise IntegrityError(f"{kind} {object_id[:12]}: the server returned a short range")
        return data

    def _get(self, kind: str, object_id: str, rng: tuple[int, int] | None, limit: int) -> bytes:
        headers = {"Range": f"bytes={rng[0]}-{rng[1] - 1}"} if rng else None
        status, raw, ctype = self._request("GET", object_path(kind, object_id), headers=headers, limit=limit)
        if status not in ((206,) if rng else (200,)):
            if status == 404:
                raise NotFoundError(f"the server has no {kind} {object_id[:12]}")
            raise _reply_error(status, raw, ctype, self.base_url)
        return raw

    def delete_object(self, kind: str, object_id: str) -> None:
        self.request_json("DELETE", object_path(kind, object_id), ok=(204, 404))

    def list_objects(self, kind: str) -> list[ObjectInfo]:
        """Every object of a kind, page by page. A server that sends pages
        that do not move forward, pages larger than asked, or more objects
        than LIST_OBJECTS_MAX is refused: memory stays bounded."""
        out: list[ObjectInfo] = []
        after = ""
        while True:
            query = f"?limit={LIST_LIMIT_MAX}" + (f"&after={after}" if after else "")
            page = self.request_json("GET", route_path(Route.OBJECTS, kind=kind) + query)
            try:
                objects = page["objects"]
                if len(objects) > LIST_LIMIT_MAX:
                    raise ProtocolViolationError("the server sent a longer list page than asked for")
                out += [ObjectInfo(str(o["id"]), int(o["size"]), int(o["created"])) for o in objects]
                following = str(page["next"] or "")
            except (KeyError, TypeError, ValueError):
                raise ProtocolViolationError("the server sent a malformed object list") from None
            if not following:
                return out
            if following <= after or not objects or len(out) > LIST_OBJECTS_MAX:
                raise ProtocolViolationError(
                    f"the server's {kind} list does not end (over {len(out):,} objects, or a page that "
                    "does not move forward); refusing it"
                )
            after = following

    # Accounts -----------------------------------------------------------------------
    def kdf_info(self, account: str) -> dict[str, Any]:
        return dict(self.request_json("GET", route_path(Route.KDF, name=account)))

    def login(self, account: str, method: str, auth: bytes) -> str:
        status, raw, ctype = self._request(
            "POST",
            Route.SESSIONS,
            json_body={"account": account, "method": method, "auth": base64.b64encode(auth).decode()},
            retry=False,
        )
        parsed = _json_or_none(raw, ctype)
        if status == 201 and isinstance(parsed, dict) and isinstance(parsed.get("token"), str):
            return str(parsed["token"])
        if status in (401, 404):  # one answer: the server does not say which (older ones did)
            what = "password" if method == "password" else "recovery key"
            raise AuthError(f"wrong {what}, or no such account ({account!r})")
        raise _reply_error(status, raw, ctype, self.base_url)


def _jittered(delay: float) -> float:
    return delay * random.uniform(0.5, 1.5)  # noqa: S311 — spreading retries, not a secret


def _seconds(header: str | None) -> float | None:
    """A Retry-After given in seconds (the HTTP-date form is not honoured)."""
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


def _json_or_none(raw: bytes, ctype: str) -> Any:
    """The JSON body of a reply, or None if it has none."""
    return _parse_json(raw) if ctype == "application/json" and raw else None


def _reply_error(status: int, raw: bytes, ctype: str, url: str) -> KeepError:
    """The error for a reply that is not the expected one."""
    try:
        parsed = _json_or_none(raw, ctype)
    except ProtocolViolationError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("code"), str):
        return _foreign_reply(status, url)
    return _error(status, parsed, url)


def _foreign_reply(status: int, url: str) -> KeepError:
    """A reply without keep-server's error body: something else answers at
    `url` (a web server, a proxy, a captive portal). Say what to check."""
    if 300 <= status < 400:
        return KeepError(
            f"{url} redirects elsewhere (HTTP {status}); give keep the final address — it does not "
            "follow redirects, so a credential never goes where you did not send it"
        )
    if status == 404:
        return NotFoundError(
            f"no keep-server answers at {url}: it said 404 (not found) to the API — is the URL right "
            "(https or http, host, port, no extra path)?"
        )
    if status in (401, 403, 407):
        return PermissionDeniedError(
            f"{url} refused the request (HTTP {status}) without saying why, as a proxy or web server "
            "would — is the URL that of the keep-server itself?"
        )
    return ProtocolViolationError(
        f"{url} answered HTTP {status}, not as a keep-server does — is the URL right?"
    )


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolViolationError("the server sent malformed JSON") from None

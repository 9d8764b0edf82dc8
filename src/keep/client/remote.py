"""The keep-server API: the engine's, the account's and the CLI's one way to
the storage server, over `transport.Transport` (TLS, retries, bounded reads).

Blocking calls for the (synchronous, multi-threaded) engine, plus background
uploads (`put_object_async`, `put_file_async`) so uploads overlap with CPU
work. Translates keep-server's replies into the `KeepError` tree exactly
once, here; a reply that is not keep-server's (a web page, a proxy, a
captive portal) is named as such.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from keep.client.transport import JSON_MAX, BodyStream, InsecureTransportError, RangeReader, Transport
from keep.protocol import object_id as objectid
from keep.protocol.api import LIST_LIMIT_MAX, Route, object_path, route_path
from keep.protocol.errors import (
    AuthError,
    ErrorCode,
    IntegrityError,
    KeepError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolViolationError,
    QuotaExceededError,
)
from keep.protocol.limits import OBJECT_MAX

LIST_OBJECTS_MAX = 2_000_000  # of one kind: 32 TB of packs, far beyond a home server
UPLOAD_CONCURRENCY = 4  # packs in flight: overlaps the server's per-object fsync
__all__ = [
    "InsecureTransportError",
    "ObjectInfo",
    "RangeReader",
    "Remote",
    "Usage",
]  # InsecureTransportError: raised by Remote(); RangeReader: returned by Remote.range_reader


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int
    objects: int
    quota: int | None


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
    """keep-server's API for one account's credential (`token`).

    The engine is multi-threaded already, so each calling thread uses its own
    keep-alive connection (the transport's); background uploads run on a
    small pool whose size bounds the packs in flight. (The standard library
    keeps `keep`'s start-up at a few tens of milliseconds: importing aiohttp
    alone cost ~0.25 s, a quarter of an unchanged daily backup.)
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
        self.http = Transport(base_url, ca_file=ca_file, allow_insecure_http=allow_insecure_http)
        self.base_url = self.http.base_url
        self.ca_file = ca_file
        self.token = token
        self.object_hash = objectid.WRITTEN  # SHA-256 once a server shows it knows no other
        self._uploads = ThreadPoolExecutor(upload_concurrency, thread_name_prefix="keep-upload")
        self._upload_slots = threading.BoundedSemaphore(upload_concurrency)

    def close(self) -> None:
        """Close every thread's connection. Only once no thread uses the
        client any more (the engine joins its threads first): a connection
        is never closed under a request in flight."""
        self._uploads.shutdown(wait=True)
        self.http.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        hdrs = self._headers(headers, token)
        body: bytes | BinaryIO | None = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        reply = self.http.request(method, path, body=body, headers=hdrs, limit=limit, retry=retry)
        return reply.status, reply.body, reply.content_type

    def _headers(self, headers: dict[str, str] | None, token: str | None = None) -> dict[str, str]:
        hdrs = dict(headers or {})
        bearer = token or self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        return hdrs

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

    def put_object_async(self, kind: str, data: bytes) -> Future[str]:
        """Upload in the background; at most `upload_concurrency` at once
        (the caller blocks here when all slots are busy — backpressure). The
        future's result is the object's id."""
        return self._upload(kind, data, len(data))

    def put_file_async(self, kind: str, spool: BinaryIO, size: int) -> Future[str]:
        """Upload the `size` bytes of `spool` in the background and close it
        afterwards; bounded like `put_object_async`."""
        return self._upload(kind, spool, size)

    def _upload(self, kind: str, body: bytes | BinaryIO, size: int) -> Future[str]:
        self._upload_slots.acquire()

        def upload() -> str:
            try:
                return self._put(kind, body, size)
            finally:
                self._upload_slots.release()
                if not isinstance(body, bytes):
                    body.close()

        try:
            return self._uploads.submit(upload)
        except BaseException:
            self._upload_slots.release()
            raise

    def _put(self, kind: str, body: bytes | BinaryIO, size: int) -> str:
        """PUT `body` under its object id, computed here on the upload thread
        (hashing releases the GIL, instead of holding up the engine thread).

        The id is BLAKE3, and the request says so. A keep-server older than
        BLAKE3 ids ignores that header and checks SHA-256, so it answers
        hash_mismatch: from then on this client names objects by SHA-256,
        which every reader accepts (docs/format.md §1)."""
        while True:
            hashed_by = self.object_hash
            oid = _object_id(body, size, hashed_by)
            status, raw, ctype = self._request(
                "PUT",
                object_path(kind, oid),
                data=body,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                    objectid.HASH_HEADER: hashed_by,
                },
            )
            if status in (200, 201):
                return oid
            error = _error_body(raw, ctype) or {}
            if hashed_by != objectid.UNNAMED and error.get("code") == ErrorCode.HASH_MISMATCH:
                self.object_hash = objectid.UNNAMED
                continue
            raise _reply_error(status, raw, ctype, self.base_url)

    def get_object(self, kind: str, object_id: str, limit: int = OBJECT_MAX) -> bytes:
        data = self._get(kind, object_id, None, limit)
        if not objectid.is_named_by(data, object_id):
            raise IntegrityError(f"{kind} {object_id[:12]} does not hash to its name")
        return data

    def get_range(self, kind: str, object_id: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object; their integrity is checked by the
        AEAD frames they contain, not here."""
        data = self._get(kind, object_id, (start, end), end - start)
        if len(data) != end - start:
            raise _short_range(kind, object_id)
        return data

    def range_reader(self, kind: str, object_id: str, start: int, end: int, align: int = 1) -> RangeReader:
        """Bytes [start, end) of an object, taken off the connection as the
        caller reads them (`RangeReader`: a broken connection is asked again
        for the rest, from a multiple of `align`). Their integrity is checked
        by the AEAD frames they contain, not here; a server that has fewer of
        them raises IntegrityError, one without the object NotFoundError."""
        path = object_path(kind, object_id)

        def open_rest(position: int) -> BodyStream:
            headers = self._headers({"Range": f"bytes={position}-{end - 1}"})
            reply = self.http.request("GET", path, headers=headers, limit=end - position, stream=True)
            body = reply.stream
            if reply.status == 206 and body is not None:
                if body.length is None or body.length == end - position:
                    return body
                body.close()
                raise _short_range(kind, object_id)
            if body is not None:
                body.close()
            raise self._not_served(kind, object_id, reply.status, reply.body, reply.content_type)

        return RangeReader(self.http, open_rest, start, end, align)

    def _get(self, kind: str, object_id: str, rng: tuple[int, int] | None, limit: int) -> bytes:
        headers = {"Range": f"bytes={rng[0]}-{rng[1] - 1}"} if rng else None
        status, raw, ctype = self._request("GET", object_path(kind, object_id), headers=headers, limit=limit)
        if status not in ((206,) if rng else (200,)):
            raise self._not_served(kind, object_id, status, raw, ctype)
        return raw

    def _not_served(self, kind: str, object_id: str, status: int, raw: bytes, ctype: str) -> KeepError:
        """The error for a GET of an object answered with `status` instead of its bytes."""
        if status == 404:
            return NotFoundError(f"the server has no {kind} {object_id[:12]}")
        return _reply_error(status, raw, ctype, self.base_url)

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
    def usage(self) -> Usage:
        """What the account stores on the server, and its quota."""
        reply = self.request_json("GET", Route.USAGE)
        try:
            quota = reply.get("quota")
            return Usage(int(reply["bytes"]), int(reply["objects"]), None if quota is None else int(quota))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ProtocolViolationError("the server sent a malformed usage reply") from None

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


def _json_or_none(raw: bytes, ctype: str) -> Any:
    """The JSON body of a reply, or None if it has none."""
    return _parse_json(raw) if ctype == "application/json" and raw else None


_read_buffers = threading.local()


def _object_id(body: bytes | BinaryIO, size: int, hashed_by: str) -> str:
    """The id of an upload's body under the object-id hash `hashed_by`."""
    if isinstance(body, bytes):
        digest = objectid.new_hasher(hashed_by)
        digest.update(body)
        return digest.hexdigest()
    return _spool_digest(body, size, hashed_by)


def _spool_digest(body: BinaryIO, size: int, hashed_by: str = objectid.WRITTEN) -> str:
    """The object id of the first `size` bytes of `body`, read back from the
    page cache into this thread's one reusable 256 KiB buffer (pread, so the
    file's position does not matter; a fresh block per read fragmented the
    heap)."""
    buffer = getattr(_read_buffers, "buffer", None)
    if buffer is None:
        buffer = _read_buffers.buffer = memoryview(bytearray(256 * 1024))
    digest, fd, offset = objectid.new_hasher(hashed_by), body.fileno(), 0
    while offset < size:
        got = os.preadv(fd, [buffer[: min(len(buffer), size - offset)]], offset)
        if not got:
            raise OSError(f"spool file ends at {offset} of its {size} bytes")
        digest.update(buffer[:got])
        offset += got
    return digest.hexdigest()


def _error_body(raw: bytes, ctype: str) -> dict[str, Any] | None:
    """keep-server's error body (a JSON object with a string `code`), or
    None if the reply is not one."""
    try:
        parsed = _json_or_none(raw, ctype)
    except ProtocolViolationError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("code"), str):
        return None
    return parsed


def _short_range(kind: str, object_id: str) -> IntegrityError:
    return IntegrityError(f"{kind} {object_id[:12]}: the server returned a short range")


def _reply_error(status: int, raw: bytes, ctype: str, url: str) -> KeepError:
    """The error for a reply that is not the expected one."""
    body = _error_body(raw, ctype)
    return _foreign_reply(status, url) if body is None else _error(status, body, url)


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

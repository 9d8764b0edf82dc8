"""HTTP adapter to keep-server: the client's only network edge.

Runs aiohttp on a private event loop in a background thread and offers
blocking calls to the (synchronous, multi-threaded) engine, plus
`put_object_async` so uploads overlap with CPU work. Translates HTTP errors into
the `KeepError` tree exactly once, here. Retries idempotent requests on network
errors and 5xx with exponential backoff; never retries on 4xx. Every body read is
bounded by a limit the caller states, so a hostile server cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import aiohttp
from keep.protocol.api import LIST_LIMIT_MAX, object_path
from keep.protocol.errors import (
    AuthError,
    ErrorCode,
    IntegrityError,
    KeepError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    ServerUnreachableError,
    UnknownAccountError,
)
from keep.protocol.limits import OBJECT_MAX, MiB

T = TypeVar("T")
JSON_MAX = 16 * MiB
RETRIES = 4
BACKOFF_FIRST = 0.5  # seconds, doubled per retry
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
USER_AGENT = "keep"
FILE_BLOCK = 1024 * 1024
UPLOAD_CONCURRENCY = 4  # packs in flight: overlaps the server's per-object fsync


class ProtocolViolationError(KeepError):
    """Raised when the server answers outside the protocol (wrong type, oversized body)."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    id: str
    size: int
    created: int


def _error(status: int, body: dict[str, Any] | None) -> KeepError:
    code = (body or {}).get("code", "")
    message = str((body or {}).get("message", f"HTTP {status}"))[:300]
    if code == ErrorCode.APPEND_ONLY:
        return PermissionDeniedError(
            "this device's credential is append-only; run the command with the owner password"
        )
    if code == ErrorCode.DEVICE_REVOKED:
        return PermissionDeniedError("this device has been revoked by the owner; run `keep login` again")
    if code == ErrorCode.QUOTA_EXCEEDED:
        return QuotaExceededError("the server says the account's storage quota is exhausted")
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
    return KeepError(f"server error {status}: {message}")


class Remote:
    """Blocking facade over an aiohttp session on a background loop."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        ca_file: str | None = None,
        upload_concurrency: int = UPLOAD_CONCURRENCY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        # Plain http (loopback) needs no TLS context; building one costs ~0.15 s.
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if self.base_url.startswith("https://") else False
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="keep-http", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._make_session())
        self._upload_slots = threading.BoundedSemaphore(upload_concurrency)

    async def _make_session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
        connector = aiohttp.TCPConnector(limit=16, ssl=self._ssl)
        return aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
        )

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._session.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Core request with retries ------------------------------------------------
    async def _request(
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
        hdrs = dict(headers or {})
        bearer = token or self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        delay = BACKOFF_FIRST
        attempts = RETRIES if retry else 1
        for attempt in range(attempts):
            body: bytes | AsyncIterator[bytes] | None = (
                data if data is None or isinstance(data, bytes) else _file_body(data)
            )
            try:
                async with self._session.request(
                    method, self.base_url + path, json=json_body, data=body, headers=hdrs
                ) as resp:
                    declared = resp.content_length
                    if declared is not None and declared > limit:
                        raise ProtocolViolationError("the server sent a body larger than allowed")
                    body = await _read_bounded(resp, limit)
                    if resp.status >= 500 and attempt + 1 < attempts:
                        await asyncio.sleep(delay)
                        delay *= 2
                        continue
                    return resp.status, body, resp.content_type
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError) as exc:
                if attempt + 1 >= attempts:
                    raise ServerUnreachableError(
                        f"cannot reach the server at {self.base_url} ({type(exc).__name__})"
                    ) from None
                await asyncio.sleep(delay)
                delay *= 2
        raise ServerUnreachableError(f"the server at {self.base_url} keeps failing")

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
        status, raw, ctype = self._run(self._request(method, path, json_body=body, token=token, retry=retry))
        parsed = _parse_json(raw) if ctype == "application/json" and raw else None
        if status not in ok:
            raise _error(status, parsed if isinstance(parsed, dict) else None)
        return parsed

    # Objects -------------------------------------------------------------------
    def put_object(self, kind: str, data: bytes) -> str:
        return self.put_object_async(kind, data).result()

    def put_object_async(self, kind: str, data: bytes, object_id: str | None = None) -> Future[str]:
        """Upload in the background; at most `upload_concurrency` at once
        (the caller blocks here when all slots are busy — backpressure).
        `object_id`, if the caller already hashed `data`, saves hashing twice."""
        object_id = object_id or hashlib.sha256(data).hexdigest()
        self._upload_slots.acquire()

        async def upload() -> str:
            try:
                status, raw, ctype = await self._request(
                    "PUT",
                    object_path(kind, object_id),
                    data=data,
                    headers={"Content-Type": "application/octet-stream"},
                )
            finally:
                self._upload_slots.release()
            if status not in (200, 201):
                parsed = _parse_json(raw) if ctype == "application/json" and raw else None
                raise _error(status, parsed if isinstance(parsed, dict) else None)
            return object_id

        return asyncio.run_coroutine_threadsafe(upload(), self._loop)

    def put_file_async(self, kind: str, spool: BinaryIO, size: int, object_id: str) -> Future[str]:
        """Upload `size` bytes of `spool` (from its start) in the background and
        close it afterwards; bounded like `put_object_async`."""
        self._upload_slots.acquire()

        async def upload() -> str:
            try:
                status, raw, ctype = await self._request(
                    "PUT",
                    object_path(kind, object_id),
                    data=spool,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                )
            finally:
                self._upload_slots.release()
                spool.close()
            if status not in (200, 201):
                parsed = _parse_json(raw) if ctype == "application/json" and raw else None
                raise _error(status, parsed if isinstance(parsed, dict) else None)
            return object_id

        return asyncio.run_coroutine_threadsafe(upload(), self._loop)

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
        status, raw, ctype = self._run(
            self._request("GET", object_path(kind, object_id), headers=headers, limit=limit)
        )
        if status not in ((206,) if rng else (200,)):
            parsed = _parse_json(raw) if ctype == "application/json" and raw else None
            if status == 404:
                raise NotFoundError(f"the server has no {kind} {object_id[:12]}")
            raise _error(status, parsed if isinstance(parsed, dict) else None)
        return raw

    def delete_object(self, kind: str, object_id: str) -> None:
        self.request_json("DELETE", object_path(kind, object_id), ok=(204, 404))

    def list_objects(self, kind: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        after = ""
        while True:
            query = f"?limit={LIST_LIMIT_MAX}" + (f"&after={after}" if after else "")
            page = self.request_json("GET", f"/v1/objects/{kind}{query}")
            try:
                out += [ObjectInfo(str(o["id"]), int(o["size"]), int(o["created"])) for o in page["objects"]]
                after = page["next"]
            except (KeyError, TypeError, ValueError):
                raise ProtocolViolationError("the server sent a malformed object list") from None
            if not after:
                return out

    # Accounts --------------------------------------------------------------------
    def kdf_info(self, account: str) -> dict[str, Any]:
        return dict(self.request_json("GET", f"/v1/accounts/{account}/kdf"))

    def login(self, account: str, method: str, auth: bytes) -> str:
        status, raw, ctype = self._run(
            self._request(
                "POST",
                "/v1/sessions",
                json_body={"account": account, "method": method, "auth": base64.b64encode(auth).decode()},
                retry=False,
            )
        )
        parsed = _parse_json(raw) if ctype == "application/json" and raw else None
        if status == 201 and isinstance(parsed, dict) and isinstance(parsed.get("token"), str):
            return str(parsed["token"])
        if status == 404:
            raise UnknownAccountError(f"the server has no account named {account!r}")
        if status == 401:
            what = "password" if method == "password" else "recovery key"
            raise AuthError(f"wrong {what} for account {account!r}")
        raise _error(status, parsed if isinstance(parsed, dict) else None)


async def _file_body(spool: BinaryIO) -> AsyncIterator[bytes]:
    """A spooled upload body from its start, in FILE_BLOCK reads. Reads come
    from the page cache (the file was just written), so they run on the loop.
    Stops quietly if the file was closed (the server answered early)."""
    if spool.closed:
        return
    spool.seek(0)
    while not spool.closed and (block := spool.read(FILE_BLOCK)):
        yield block


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    async for block in resp.content.iter_any():
        total += len(block)
        if total > limit:
            raise ProtocolViolationError("the server sent a body larger than allowed")
        parts.append(block)
    return b"".join(parts)


def _parse_json(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolViolationError("the server sent malformed JSON") from None

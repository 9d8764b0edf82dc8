"""Handlers for objects, locks and usage (docs/server.md).

Uploads are streamed to the object store, which hashes while writing; the
metadata record is written only after the body is durable, so a body without a
record is invisible and a record always has its body. Device tokens may add and
read; only an owner session may delete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from keep.protocol.api import LIST_LIMIT_MAX, LOCK_MODES, LOCK_TTL_MAX, OBJECT_KINDS, Route, is_object_id
from keep.protocol.errors import ErrorCode
from keep.protocol.object_id import HASH_HEADER, HASHES, UNNAMED
from keep.server.api_error import ApiError
from keep.server.auth import Principal, Role, authenticate, check_owner, require_owner
from keep.server.json_body import bad, field, read_json
from keep.server.services import services
from keep.server.storage.metadata import AccountQuotaFullError, Lease, LockConflictError, ObjectRecord
from keep.server.storage.objects import HashMismatchError, SizeMismatchError, StoredObject

KINDS = frozenset(OBJECT_KINDS)
routes = web.RouteTableDef()


def _target(request: web.Request) -> tuple[str, str]:
    kind, object_id = request.match_info["kind"], request.match_info.get("object_id", "")
    if kind not in KINDS:
        raise ApiError(ErrorCode.NOT_FOUND, "unknown object kind")
    if "object_id" in request.match_info and not is_object_id(object_id):
        raise bad("object ids are 64 lowercase hex digits (the body's hash)")
    return kind, object_id


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; the store batches pieces itself."""
    while data := await request.content.readany():
        yield data


@routes.put(Route.OBJECT)
async def put_object(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    svc = services(request)
    kind, object_id = _target(request)
    hashed_by = request.headers.get(HASH_HEADER, UNNAMED)
    if hashed_by not in HASHES:
        raise bad(f"{HASH_HEADER} names an unknown hash (known: {', '.join(HASHES)})")
    size = request.content_length
    if size is None:
        raise ApiError(ErrorCode.LENGTH_REQUIRED, "uploads need a Content-Length")
    if size > svc.settings.object_max:
        raise ApiError(ErrorCode.TOO_LARGE, f"objects are at most {svc.settings.object_max} bytes")
    account = principal.account_id
    if await svc.metadata.object(account, kind, object_id) is not None:
        return web.json_response({"created": False, "size": size})
    usage = await svc.metadata.usage(account)
    if usage.quota is not None and usage.bytes + size > usage.quota:
        raise ApiError(ErrorCode.QUOTA_EXCEEDED, "the account's storage quota is exhausted")
    try:
        await svc.objects.put(account, kind, object_id, size, _body(request), hashed_by=hashed_by)
    except HashMismatchError:
        raise ApiError(ErrorCode.HASH_MISMATCH, "body does not hash to the object id") from None
    except SizeMismatchError:
        raise bad("body length differs from Content-Length") from None
    try:
        created = await svc.metadata.record_object(account, ObjectRecord(kind, object_id, size, svc.clock()))
    except AccountQuotaFullError:
        if await svc.metadata.object(account, kind, object_id) is None:
            await svc.objects.delete(account, kind, object_id)
        raise ApiError(ErrorCode.QUOTA_EXCEEDED, "the account's storage quota is exhausted") from None
    svc.metrics.bytes_in.inc(size)
    if created:
        svc.metrics.objects_stored.labels(kind).inc()
    return web.json_response({"created": created, "size": size}, status=201 if created else 200)


@routes.get(Route.OBJECT)
async def get_object(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    svc = services(request)
    kind, object_id = _target(request)
    record = await svc.metadata.object(principal.account_id, kind, object_id)
    stored: StoredObject | None = None
    if record is not None:
        stored = (
            await svc.objects.stat(principal.account_id, kind, object_id)
            if svc.objects.local_files
            else StoredObject(record.size, None)
        )
    if not stored:
        raise ApiError(ErrorCode.NOT_FOUND, "no such object")
    headers = {"Content-Type": "application/octet-stream", "Cache-Control": "no-store"}
    if request.method == "GET":
        svc.metrics.bytes_out.inc(stored.size)
    if stored.path is not None:
        return web.FileResponse(stored.path, headers=headers)
    return await _stream_object(request, principal.account_id, kind, object_id, stored.size, headers)


async def _stream_object(
    request: web.Request,
    account: str,
    kind: str,
    object_id: str,
    size: int,
    headers: dict[str, str],
) -> web.StreamResponse:
    """Serve a body from a store without local files (S3), with one Range."""
    try:
        rng = request.http_range
    except ValueError:
        raise ApiError(ErrorCode.RANGE_NOT_SATISFIABLE, "malformed Range header") from None
    start, stop = rng.start or 0, size if rng.stop is None else min(rng.stop, size)
    if start < 0:
        start, stop = max(0, size + start), size
    if start >= stop and size:
        raise ApiError(
            ErrorCode.RANGE_NOT_SATISFIABLE,
            "range outside the object",
            {"Content-Range": f"bytes */{size}"},
        )
    partial = "Range" in request.headers
    response = web.StreamResponse(status=206 if partial else 200, headers=headers)
    response.content_length = stop - start
    if partial:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    await response.prepare(request)
    if request.method != "HEAD":
        async for data in services(request).objects.read(account, kind, object_id, start, stop):
            await response.write(data)
    await response.write_eof()
    return response


@routes.delete(Route.OBJECT)
async def delete_object(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    svc = services(request)
    kind, object_id = _target(request)
    if not await svc.metadata.delete_object(principal.account_id, kind, object_id):
        raise ApiError(ErrorCode.NOT_FOUND, "no such object")
    await svc.objects.delete(principal.account_id, kind, object_id)
    svc.metrics.objects_deleted.labels(kind).inc()
    return web.Response(status=204)


@routes.get(Route.OBJECTS)
async def list_objects(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    kind, _ = _target(request)
    after = request.query.get("after", "")
    if after and not is_object_id(after):
        raise bad("'after' must be an object id")
    try:
        limit = int(request.query.get("limit", str(LIST_LIMIT_MAX)))
    except ValueError:
        raise bad("'limit' must be an integer") from None
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise bad(f"'limit' must be between 1 and {LIST_LIMIT_MAX}")
    page = await services(request).metadata.list_objects(principal.account_id, kind, after, limit)
    return web.json_response(
        {
            "objects": [{"id": o.id, "size": o.size, "created": o.created} for o in page],
            "next": page[-1].id if len(page) == limit else None,
        }
    )


@routes.get(Route.USAGE)
async def usage(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    u = await services(request).metadata.usage(principal.account_id)
    return web.json_response({"bytes": u.bytes, "objects": u.objects, "quota": u.quota})


def _ttl(body: dict[str, Any]) -> int:
    ttl = field(body, "ttl", int)
    if not 1 <= ttl <= LOCK_TTL_MAX:
        raise bad(f"'ttl' must be between 1 and {LOCK_TTL_MAX} seconds")
    return ttl


def _lease_owner(principal: Principal) -> str:
    return principal.device_id or "owner"


def _lease_json(lease: Lease) -> dict[str, Any]:
    return {
        "id": lease.id,
        "mode": lease.mode,
        "holder": lease.holder,
        "principal": lease.principal,
        "created": lease.created,
        "expires": lease.expires,
    }


@routes.post(Route.LOCKS)
async def acquire_lock(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    svc = services(request)
    body = await read_json(request)
    mode = field(body, "mode", str)
    if mode not in LOCK_MODES:
        raise bad(f"'mode' must be one of {', '.join(LOCK_MODES)}")
    if mode != "shared":
        # Only the owner may keep others out: a device holding a prune or
        # exclusive lease could block maintenance or other devices' backups.
        check_owner(principal)
    holder = body.get("holder", "")
    if not isinstance(holder, str) or (holder and not is_object_id(holder)):
        raise bad("'holder' must be the id of a lock object, or empty")
    now = svc.clock()
    lease = Lease(
        svc.random(16).hex(),
        principal.account_id,
        mode,
        holder,
        now,
        now + _ttl(body),
        _lease_owner(principal),
    )
    try:
        await svc.metadata.acquire_lock(lease, now)
    except LockConflictError as exc:
        raise ApiError(
            ErrorCode.LOCKED,
            f"the repository is locked by another client; its lease ends in {max(0, exc.until - now)} s "
            "unless that client renews it",
        ) from None
    return web.json_response(_lease_json(lease), status=201)


@routes.get(Route.LOCKS)
async def list_locks(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    svc = services(request)
    leases = await svc.metadata.locks(principal.account_id, svc.clock())
    return web.json_response({"locks": [_lease_json(lease) for lease in leases]})


@routes.put(Route.LOCK)
async def renew_lock(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    svc = services(request)
    now = svc.clock()
    expires = now + _ttl(await read_json(request))
    lock_id = request.match_info["lock_id"]
    if not await svc.metadata.renew_lock(
        principal.account_id, lock_id, _lease_owner(principal), expires, now
    ):
        raise ApiError(ErrorCode.NOT_FOUND, "no such lock (it may have expired)")
    return web.json_response({"id": request.match_info["lock_id"], "expires": expires})


@routes.delete(Route.LOCK)
async def release_lock(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    # A device releases only its own leases: releasing another device's
    # backup lease would let a prune delete what that backup relies on. The
    # owner may release any (a deliberate unlock).
    whose = None if principal.role is Role.OWNER else _lease_owner(principal)
    lock_id = request.match_info["lock_id"]
    if not await services(request).metadata.release_lock(principal.account_id, lock_id, whose):
        raise ApiError(ErrorCode.NOT_FOUND, "no such lock")
    return web.Response(status=204)

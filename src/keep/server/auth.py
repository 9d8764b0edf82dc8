"""Bearer-token authentication and the owner/device permission rule.

Tokens are 32 random bytes, base64url, with a prefix saying what they are
(`ks_` owner session, `kd_` device). The server stores only SHA-256 of a token.
Owner sessions may do everything; device tokens are append-only: they may add
and read objects and take locks, never delete or overwrite.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass

from aiohttp import web

from keep.protocol.api import DEVICE_TOKEN_PREFIX, SESSION_TOKEN_PREFIX, TOKEN_BYTES
from keep.protocol.errors import ErrorCode
from keep.server.api_error import ApiError
from keep.server.services import Services, services


class Role(enum.StrEnum):
    OWNER = "owner"
    DEVICE = "device"


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    role: Role
    device_id: str | None
    token_hash: bytes


PRINCIPAL = web.RequestKey("principal", Principal)


def new_token(svc: Services, prefix: str) -> tuple[str, bytes]:
    """(token, its hash). The token is shown once; only the hash is stored."""
    token = prefix + base64.urlsafe_b64encode(svc.random(TOKEN_BYTES)).decode().rstrip("=")
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _unauthorized(message: str = "missing or invalid credentials") -> ApiError:
    return ApiError(ErrorCode.UNAUTHORIZED, message, {"WWW-Authenticate": 'Bearer realm="keep"'})


async def authenticate(request: web.Request) -> Principal:
    """The principal behind the request's bearer token, or 401."""
    cached = request.get(PRINCIPAL)
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized()
    svc = services(request)
    digest = token_hash(token.strip())
    now = svc.clock()
    principal: Principal
    if token.startswith(SESSION_TOKEN_PREFIX):
        session = await svc.metadata.session(digest, now)
        if session is None:
            raise _unauthorized("session expired or invalid; log in again")
        principal = Principal(session.account_id, Role.OWNER, None, digest)
    elif token.startswith(DEVICE_TOKEN_PREFIX):
        device = await svc.metadata.device_by_token(digest)
        if device is None:
            raise _unauthorized()
        if device.revoked is not None:
            raise ApiError(ErrorCode.DEVICE_REVOKED, "this device has been revoked by the owner")
        if now - device.last_seen >= svc.settings.device_touch_interval:
            await svc.metadata.touch_device(device.id, now)
        principal = Principal(device.account_id, Role.DEVICE, device.id, digest)
    else:
        raise _unauthorized()
    request[PRINCIPAL] = principal
    return principal


async def require_owner(request: web.Request) -> Principal:
    return check_owner(await authenticate(request))


def check_owner(principal: Principal) -> Principal:
    if principal.role is not Role.OWNER:
        raise ApiError(
            ErrorCode.APPEND_ONLY,
            "device credentials are append-only; log in with the owner password for this",
        )
    return principal

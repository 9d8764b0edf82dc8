"""The v1 HTTP API's shared vocabulary (docs/server.md).

Owns what client and server must agree on without importing each other: path
templates, object-id syntax, the HTTP status of every `ErrorCode`, token
prefixes and paging limits. The full schema is the OpenAPI document served at
`/v1/openapi.json` (built in `keep.server.openapi`).
"""

from __future__ import annotations

import enum
import re
from http import HTTPStatus
from urllib.parse import quote

from keep.protocol.errors import ErrorCode

API_PREFIX = "/v1"


class Route(enum.StrEnum):
    """Every path of the v1 API, as a template with {parts}: the server
    registers these, the OpenAPI document describes these, and the client
    fills them in with `path()`."""

    KDF = "/v1/accounts/{name}/kdf"
    ACCOUNTS = "/v1/accounts"
    SESSIONS = "/v1/sessions"
    SESSION_CURRENT = "/v1/sessions/current"
    ACCOUNT = "/v1/account"
    ACCOUNT_EXPORT = "/v1/account/export"
    KEYSLOTS = "/v1/keyslots"
    KEYSLOT_PASSWORD = "/v1/keyslots/password"  # noqa: S105 — a path, not a password
    KEYSLOT_RECOVERY = "/v1/keyslots/recovery"
    DEVICES = "/v1/devices"
    DEVICE = "/v1/devices/{device_id}"
    USAGE = "/v1/usage"
    OBJECTS = "/v1/objects/{kind}"
    OBJECT = "/v1/objects/{kind}/{object_id}"
    LOCKS = "/v1/locks"
    LOCK = "/v1/locks/{lock_id}"
    OPENAPI = "/v1/openapi.json"


def route_path(route: Route, **parts: str) -> str:
    """`route` with its {parts} filled in, each quoted as one path segment."""
    return route.value.format(**{name: quote(value, safe="") for name, value in parts.items()})


OBJECT_ID_RE = re.compile(r"^[0-9a-f]{64}$")
ACCOUNT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SESSION_TOKEN_PREFIX = "ks_"  # noqa: S105 — a public prefix, not a secret
DEVICE_TOKEN_PREFIX = "kd_"  # noqa: S105 — a public prefix, not a secret
TOKEN_BYTES = 32
LIST_LIMIT_MAX = 1000
OBJECT_KINDS = ("pack", "index", "snapshot", "lock")
LOCK_TTL_MAX = 3600  # seconds; clients renew well before expiry

# Lease modes and which held modes each one waits for. Backups, checks and
# restores share; one prune at a time runs beside them (it is two-phase, see
# docs/engine.md "Prune"); exclusive excludes everyone.
LOCK_MODES = ("shared", "prune", "exclusive")
LOCK_CONFLICTS: dict[str, frozenset[str]] = {
    "shared": frozenset({"exclusive"}),
    "prune": frozenset({"prune", "exclusive"}),
    "exclusive": frozenset(LOCK_MODES),
}

ERROR_STATUS: dict[ErrorCode, HTTPStatus] = {
    ErrorCode.BAD_REQUEST: HTTPStatus.BAD_REQUEST,
    ErrorCode.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    ErrorCode.FORBIDDEN: HTTPStatus.FORBIDDEN,
    ErrorCode.APPEND_ONLY: HTTPStatus.FORBIDDEN,
    ErrorCode.DEVICE_REVOKED: HTTPStatus.UNAUTHORIZED,
    ErrorCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorCode.ACCOUNT_EXISTS: HTTPStatus.CONFLICT,
    ErrorCode.REGISTRATION_CLOSED: HTTPStatus.FORBIDDEN,
    ErrorCode.HASH_MISMATCH: HTTPStatus.BAD_REQUEST,
    ErrorCode.LENGTH_REQUIRED: HTTPStatus.LENGTH_REQUIRED,
    ErrorCode.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.QUOTA_EXCEEDED: HTTPStatus.INSUFFICIENT_STORAGE,
    ErrorCode.STORAGE_FULL: HTTPStatus.INSUFFICIENT_STORAGE,
    ErrorCode.LOCKED: HTTPStatus.CONFLICT,
    ErrorCode.RATE_LIMITED: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorCode.RANGE_NOT_SATISFIABLE: HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
    ErrorCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


def split_host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) -> (host, port); ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8420)")
    return host.strip("[]"), int(port)


def object_path(kind: str, object_id: str) -> str:
    return route_path(Route.OBJECT, kind=kind, object_id=object_id)


def is_object_id(value: str) -> bool:
    return OBJECT_ID_RE.fullmatch(value) is not None

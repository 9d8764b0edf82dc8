"""The OpenAPI 3.1 document of keep-server's v1 API, served at /v1/openapi.json.

Tests validate every JSON response they receive against it, so the document and
the handlers cannot drift apart silently.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from keep.protocol.api import (
    ACCOUNT_NAME_RE,
    LIST_LIMIT_MAX,
    LOCK_MODES,
    LOCK_TTL_MAX,
    OBJECT_ID_RE,
    OBJECT_KINDS,
    Route,
)
from keep.protocol.errors import ErrorCode
from keep.protocol.object_id import HASH_HEADER, HASHES, UNNAMED

OBJECT_ID = {"type": "string", "pattern": OBJECT_ID_RE.pattern}
B64 = {"type": "string", "contentEncoding": "base64"}
INT = {"type": "integer"}
NULLABLE_INT = {"type": ["integer", "null"]}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"code": {"enum": [str(c) for c in ErrorCode]}, "message": {"type": "string"}}),
    "Kdf": _obj(
        {
            "algorithm": {"const": "argon2id"},
            "memory_kib": INT,
            "iterations": INT,
            "parallelism": INT,
        }
    ),
    "KdfInfo": _obj({"kdf": _ref("Kdf"), "salt": B64}),
    "KeySlot": _obj(
        {"kind": {"enum": ["password", "recovery"]}, "version": INT, "salt": B64, "wrapped": B64}
    ),
    "CreateAccount": _obj(
        {
            "name": {"type": "string", "pattern": ACCOUNT_NAME_RE.pattern},
            "kdf": _ref("Kdf"),
            "salt": B64,
            "auth_verifier": B64,
            "keyslots": {
                "type": "object",
                "required": ["password"],
                "properties": {"password": _ref("KeySlot"), "recovery": _ref("KeySlot")},
            },
        },
        {"recovery_verifier": B64},
    ),
    "AccountCreated": _obj({"id": {"type": "string"}, "name": {"type": "string"}}),
    "Credential": _obj({"method": {"enum": ["password", "recovery"]}, "auth": B64}),
    "Login": _obj({"account": {"type": "string"}, "method": {"enum": ["password", "recovery"]}, "auth": B64}),
    "Session": _obj({"token": {"type": "string"}, "expires": INT, "account_id": {"type": "string"}}),
    "Account": _obj(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "created": INT,
            "auth_method": INT,
            "role": {"enum": ["owner", "device"]},
            "device_id": {"type": ["string", "null"]},
        }
    ),
    "Keyslots": _obj(
        {
            "keyslots": {
                "type": "object",
                "properties": {"password": _ref("KeySlot"), "recovery": _ref("KeySlot")},
                "additionalProperties": False,
            }
        }
    ),
    "ReplacePassword": _obj({"kdf": _ref("Kdf"), "salt": B64, "auth_verifier": B64, "slot": _ref("KeySlot")}),
    "ReplaceRecovery": _obj({"recovery_verifier": B64, "slot": _ref("KeySlot")}),
    "Device": _obj(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "created": INT,
            "last_seen": INT,
            "revoked": NULLABLE_INT,
        }
    ),
    "EnrolledDevice": _obj(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "created": INT,
            "last_seen": INT,
            "revoked": NULLABLE_INT,
            "token": {"type": "string"},
        }
    ),
    "EnrollDevice": _obj({"name": {"type": "string", "minLength": 1}}),
    "Devices": _obj({"devices": {"type": "array", "items": _ref("Device")}}),
    "PutResult": _obj({"created": {"type": "boolean"}, "size": INT}),
    "ObjectInfo": _obj({"id": OBJECT_ID, "size": INT, "created": INT}),
    "ObjectList": _obj(
        {
            "objects": {"type": "array", "items": _ref("ObjectInfo")},
            "next": {"oneOf": [OBJECT_ID, {"type": "null"}]},
        }
    ),
    "Usage": _obj({"bytes": INT, "objects": INT, "quota": NULLABLE_INT}),
    "AcquireLock": _obj(
        {
            "mode": {"enum": list(LOCK_MODES)},
            "ttl": {"type": "integer", "minimum": 1, "maximum": LOCK_TTL_MAX},
        },
        {"holder": {"type": "string"}},
    ),
    "RenewLock": _obj({"ttl": {"type": "integer", "minimum": 1, "maximum": LOCK_TTL_MAX}}),
    "Lease": _obj(
        {
            "id": {"type": "string"},
            "mode": {"enum": list(LOCK_MODES)},
            "holder": {"type": "string"},
            "principal": {"type": "string"},
            "created": INT,
            "expires": INT,
        }
    ),
    "Leases": _obj({"locks": {"type": "array", "items": _ref("Lease")}}),
    "LockRenewed": _obj({"id": {"type": "string"}, "expires": INT}),
    "Export": _obj(
        {
            "account": {"type": "object"},
            "keyslots": {"type": "object"},
            "devices": {"type": "array", "items": _ref("Device")},
            "locks": {"type": "array"},
            "usage": _ref("Usage"),
            "objects": {"type": "array"},
        }
    ),
    "Health": _obj({"status": {"const": "ok"}}),
}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _op(
    summary: str,
    responses: dict[int, str | None],
    *,
    body: str | None = None,
    auth: bool = True,
    binary_body: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            **{
                str(status): {
                    "description": name or "no content",
                    **({"content": _json(name)} if name else {}),
                }
                for status, name in responses.items()
            },
            "default": {"description": "error", "content": _json("Error")},
        },
    }
    if body:
        op["requestBody"] = {"required": True, "content": _json(body)}
    if binary_body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    if auth:
        op["security"] = [{"bearer": []}]
    else:
        op["security"] = []
    return op


OBJECT_PARAMS = [
    {
        "name": "kind",
        "in": "path",
        "required": True,
        "schema": {"enum": list(OBJECT_KINDS)},
    },
    {"name": "object_id", "in": "path", "required": True, "schema": OBJECT_ID},
]
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@cache
def openapi_document() -> dict[str, Any]:
    get_object = _op("Read an object (Range supported)", {})
    get_object["responses"]["200"] = {"description": "the object", "content": BINARY}
    get_object["responses"]["206"] = {"description": "a range of the object", "content": BINARY}
    get_object["parameters"] = [
        {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}}
    ]
    put_object = _op("Store an object (idempotent)", {200: "PutResult", 201: "PutResult"}, binary_body=True)
    put_object["parameters"] = [
        {
            "name": HASH_HEADER,
            "in": "header",
            "required": False,
            "description": f"the hash that names the object; absent: {UNNAMED}",
            "schema": {"enum": list(HASHES)},
        }
    ]
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("Liveness", {200: "Health"}, auth=False)},
        Route.KDF: {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": _op("KDF salt and parameters (fake for unknown names)", {200: "KdfInfo"}, auth=False),
        },
        Route.ACCOUNTS: {
            "post": _op("Create an account", {201: "AccountCreated"}, body="CreateAccount", auth=False)
        },
        Route.SESSIONS: {"post": _op("Owner login", {201: "Session"}, body="Login", auth=False)},
        Route.SESSION_CURRENT: {"delete": _op("Log out", {204: None})},
        Route.ACCOUNT: {
            "get": _op("Who am I", {200: "Account"}),
            "delete": _op("Delete the account and all its objects", {204: None}, body="Credential"),
        },
        Route.ACCOUNT_EXPORT: {"get": _op("Everything the server holds but bodies", {200: "Export"})},
        Route.KEYSLOTS: {"get": _op("Key slots", {200: "Keyslots"})},
        Route.KEYSLOT_PASSWORD: {
            "put": _op("Replace password credential atomically", {204: None}, body="ReplacePassword")
        },
        Route.KEYSLOT_RECOVERY: {
            "put": _op("Replace recovery credential atomically", {204: None}, body="ReplaceRecovery")
        },
        Route.DEVICES: {
            "post": _op("Enroll a device (token shown once)", {201: "EnrolledDevice"}, body="EnrollDevice"),
            "get": _op("List devices", {200: "Devices"}),
        },
        Route.DEVICE: {
            "parameters": [
                {"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "delete": _op("Revoke a device", {204: None}),
        },
        Route.USAGE: {"get": _op("Usage and quota", {200: "Usage"})},
        Route.OBJECTS: {
            "parameters": [
                OBJECT_PARAMS[0],
                {"name": "after", "in": "query", "required": False, "schema": OBJECT_ID},
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX},
                },
            ],
            "get": _op("List objects of a kind, paged by id", {200: "ObjectList"}),
        },
        Route.OBJECT: {
            "parameters": OBJECT_PARAMS,
            "put": put_object,
            "get": get_object,
            "head": _op("Object size", {200: None}),
            "delete": _op("Delete an object (owner only)", {204: None}),
        },
        Route.LOCKS: {
            "post": _op("Acquire a lease", {201: "Lease"}, body="AcquireLock"),
            "get": _op("List live leases", {200: "Leases"}),
        },
        Route.LOCK: {
            "parameters": [{"name": "lock_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "put": _op("Renew a lease", {200: "LockRenewed"}, body="RenewLock"),
            "delete": _op("Release a lease", {204: None}),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "keep-server", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

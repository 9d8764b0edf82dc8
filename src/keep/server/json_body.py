"""Parsing of JSON request bodies into checked values; every failure is a
400 `bad_request` with a message naming the field, never the value."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from keep.protocol.errors import ErrorCode
from keep.server.api_error import ApiError


def bad(message: str) -> ApiError:
    return ApiError(ErrorCode.BAD_REQUEST, message)


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad("request body is not valid JSON") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(ErrorCode.TOO_LARGE, "request body is too large") from None
    if not isinstance(body, dict):
        raise bad("request body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(f"field {name!r} is missing or has the wrong type")
    return value


def b64_field(body: dict[str, Any], name: str, size: int | None = None) -> bytes:
    try:
        value = base64.b64decode(field(body, name, str), validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"field {name!r} is not base64") from None
    if size is not None and len(value) != size:
        raise bad(f"field {name!r} must decode to {size} bytes")
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

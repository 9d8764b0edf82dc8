"""Canonical msgpack encoding and strict decoding for Keep's records
(docs/format.md §1 "Conventions").

Owns the one place where msgpack is called, so every record uses the same
options: bytes stay bytes, strings must be valid UTF-8, maps are encoded with
sorted keys, and decoding has explicit size limits and raises only `FormatError`.
Also owns the small typed field readers that records use to check what they
decoded.
"""

from __future__ import annotations

from typing import Any

import msgpack

from keep.protocol.errors import FormatError


def pack(obj: Any) -> bytes:
    """Canonical encoding: callers pass arrays, or maps built in sorted key order."""
    return msgpack.packb(obj, use_bin_type=True, strict_types=False)


def unpack(data: bytes | memoryview, max_len: int) -> Any:
    if len(data) > max_len:
        raise FormatError("record is larger than its limit")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except (ValueError, msgpack.UnpackException, TypeError, UnicodeDecodeError) as exc:
        raise FormatError(f"record does not decode: {type(exc).__name__}") from None


def as_list(value: Any, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise FormatError(f"{what} has the wrong shape")
    return value


def as_int(value: Any, what: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise FormatError(f"{what} is not an integer in range")
    return value


def as_bytes(value: Any, what: str, size: int | None = None, max_size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise FormatError(f"{what} is not bytes")
    if size is not None and len(value) != size:
        raise FormatError(f"{what} must be {size} bytes")
    if max_size is not None and len(value) > max_size:
        raise FormatError(f"{what} is too long")
    return value


def as_str(value: Any, what: str, max_size: int) -> str:
    if not isinstance(value, str) or len(value) > max_size:
        raise FormatError(f"{what} is not a string of at most {max_size} characters")
    return value


def as_map(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{what} is not a map")
    return value

"""keep.protocol: Keep's formats, cryptography, chunker and API schema.

Pure: bytes and dataclasses in, bytes and dataclasses out. No sockets, files,
asyncio, clocks or hidden randomness; time and random bytes are parameters.
`tests/test_boundaries.py` enforces this; docs/architecture.md is the map.
"""

from keep.protocol.errors import (
    AuthError,
    ErrorCode,
    ExitCode,
    FormatError,
    IntegrityError,
    KdfPolicyError,
    KeepError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolViolationError,
    QuotaExceededError,
    RecoveryKeyError,
    ServerUnreachableError,
)

__all__ = [
    "AuthError",
    "ErrorCode",
    "ExitCode",
    "FormatError",
    "IntegrityError",
    "KdfPolicyError",
    "KeepError",
    "LockedError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolViolationError",
    "QuotaExceededError",
    "RecoveryKeyError",
    "ServerUnreachableError",
]

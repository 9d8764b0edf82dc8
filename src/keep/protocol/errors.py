"""The error tree shared by every Keep component.

Owns: `KeepError` and its subclasses, the CLI `ExitCode` enum and the stable
`ErrorCode` strings that the server puts in JSON error bodies. Does not own the
translation to messages or HTTP statuses: the CLI dispatcher and the server's
middleware do that, each in one place.

Messages never carry secrets: no passwords, keys, tokens or salts.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of the `keep` CLI (documented in docs/cli.md)."""

    OK = 0
    FATAL = 1
    USAGE = 2
    PARTIAL = 3  # finished, but some files could not be read
    WRONG_PASSWORD = 10
    UNKNOWN_ACCOUNT = 11  # retired: the server no longer says which accounts exist (now 10)
    SERVER_UNREACHABLE = 12
    PERMISSION = 13  # the credential may not do this (append-only device, revoked)
    LOCKED = 14
    INTEGRITY = 15
    QUOTA = 16
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class ErrorCode(enum.StrEnum):
    """Stable `code` strings of the server's JSON error bodies."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    APPEND_ONLY = "append_only"
    DEVICE_REVOKED = "device_revoked"
    NOT_FOUND = "not_found"
    ACCOUNT_EXISTS = "account_exists"
    REGISTRATION_CLOSED = "registration_closed"
    HASH_MISMATCH = "hash_mismatch"
    LENGTH_REQUIRED = "length_required"
    TOO_LARGE = "too_large"
    QUOTA_EXCEEDED = "quota_exceeded"
    STORAGE_FULL = "storage_full"
    LOCKED = "locked"
    RATE_LIMITED = "rate_limited"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    INTERNAL = "internal"


class KeepError(Exception):
    """Root of every error Keep raises on purpose."""

    exit_code: ExitCode = ExitCode.FATAL


class FormatError(KeepError):
    """Raised when bytes do not parse as the format they claim to be
    (wrong magic, unsupported version, truncated or oversized fields)."""

    exit_code = ExitCode.INTEGRITY


class IntegrityError(KeepError):
    """Raised when authenticated data fails verification: an AEAD tag does not
    match, a blob id does not match its content, an object does not hash to its
    name, or an object sits where it does not belong."""

    exit_code = ExitCode.INTEGRITY


class KdfPolicyError(KeepError):
    """Raised when KDF parameters are below the safety floor (a downgrade) or
    above the ceiling (memory exhaustion of the device)."""

    exit_code = ExitCode.INTEGRITY


class RecoveryKeyError(KeepError):
    """Raised when a typed recovery key is malformed or fails its checksum."""

    exit_code = ExitCode.USAGE


class AuthError(KeepError):
    """Raised when a credential is refused: wrong password or recovery key."""

    exit_code = ExitCode.WRONG_PASSWORD


class PermissionDeniedError(KeepError):
    """Raised when a valid credential may not do what was asked (an append-only
    device token deleting, a revoked device)."""

    exit_code = ExitCode.PERMISSION


class LockedError(KeepError):
    """Raised when a repository lock is held by someone else."""

    exit_code = ExitCode.LOCKED


class QuotaExceededError(KeepError):
    """Raised when the account's storage quota would be exceeded."""

    exit_code = ExitCode.QUOTA


class ServerUnreachableError(KeepError):
    """Raised when the storage server cannot be reached or keeps failing."""

    exit_code = ExitCode.SERVER_UNREACHABLE


class LeaseLostError(LockedError):
    """Raised when a command's own lease expired before it finished."""


class NotFoundError(KeepError):
    """Raised when an object, snapshot or account record does not exist."""

    exit_code = ExitCode.FATAL


class ProtocolViolationError(KeepError):
    """Raised when the other side answers outside the protocol: a malformed or
    oversized body, a list that does not end (a broken or hostile server)."""

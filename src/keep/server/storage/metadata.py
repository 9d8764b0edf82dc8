"""The metadata store interface: accounts, credentials, sessions, devices,
object records, locks, usage and login throttling.

Every backend (SQLite here, PostgreSQL in the scale-out issue) implements
`MetadataStore` and passes `tests/server/test_metadata_conformance.py`
unchanged. Records are frozen dataclasses; times are integer seconds since the
epoch, passed in by the caller (the store has no clock of its own).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any


class AccountExistsError(Exception):
    """Raised by `create_account` when the name is taken."""


class AccountQuotaFullError(Exception):
    """Raised by `record_object` when the object would exceed the quota."""


class LockConflictError(Exception):
    """Raised by `acquire_lock` when an incompatible lease is held; `until`
    is when the last conflicting lease expires unless renewed."""

    def __init__(self, until: int = 0) -> None:
        super().__init__(until)
        self.until = until


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    created: int
    auth_method: int
    kdf: dict[str, Any]
    salt: bytes
    auth_verifier: bytes
    recovery_verifier: bytes | None
    quota: int | None


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: bytes
    account_id: str
    created: int
    expires: int


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    account_id: str
    name: str
    created: int
    last_seen: int
    revoked: int | None


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    kind: str
    id: str
    size: int
    created: int


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    account_id: str
    mode: str  # one of keep.protocol.api.LOCK_MODES
    holder: str
    created: int
    expires: int
    principal: str = ""  # who took it (a device id, or "owner"): only they renew or release it


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int
    objects: int
    quota: int | None


@dataclass(frozen=True, slots=True)
class Throttle:
    failures: int
    last: int


class MetadataStore(abc.ABC):
    """Async interface; implementations must be safe under concurrent calls and,
    for shared backends, under several server replicas."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply schema migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def server_secret(self, candidate: bytes) -> bytes:
        """The server-wide secret (fake salts, throttle keys); stores `candidate`
        if none exists yet and returns whichever is stored."""

    # Accounts and credentials
    @abc.abstractmethod
    async def create_account(self, account: Account, slots: dict[str, dict[str, Any]]) -> None: ...

    @abc.abstractmethod
    async def account_by_name(self, name: str) -> Account | None: ...

    @abc.abstractmethod
    async def account_by_id(self, account_id: str) -> Account | None: ...

    @abc.abstractmethod
    async def delete_account(self, account_id: str) -> None:
        """Remove the account and every record that belongs to it."""

    @abc.abstractmethod
    async def keyslots(self, account_id: str) -> dict[str, dict[str, Any]]: ...

    @abc.abstractmethod
    async def replace_password(
        self,
        account_id: str,
        kdf: dict[str, Any],
        salt: bytes,
        verifier: bytes,
        slot: dict[str, Any],
    ) -> None:
        """Swap password verifier, KDF salt/params and password slot, and end
        every owner session of the account, atomically."""

    @abc.abstractmethod
    async def replace_recovery(self, account_id: str, verifier: bytes, slot: dict[str, Any]) -> None:
        """Swap recovery verifier and recovery slot, and end every owner
        session of the account, atomically."""

    # Sessions
    @abc.abstractmethod
    async def create_session(self, session: Session) -> None: ...

    @abc.abstractmethod
    async def session(self, token_hash: bytes, now: int) -> Session | None:
        """The unexpired session with this token hash, if any."""

    @abc.abstractmethod
    async def delete_session(self, token_hash: bytes) -> None: ...

    # Devices
    @abc.abstractmethod
    async def create_device(self, device: Device, token_hash: bytes) -> None: ...

    @abc.abstractmethod
    async def device_by_token(self, token_hash: bytes) -> Device | None: ...

    @abc.abstractmethod
    async def devices(self, account_id: str) -> list[Device]: ...

    @abc.abstractmethod
    async def revoke_device(self, account_id: str, device_id: str, now: int) -> bool:
        """Mark the device revoked; False if the account has no such device."""

    @abc.abstractmethod
    async def touch_device(self, device_id: str, now: int) -> None: ...

    # Objects
    @abc.abstractmethod
    async def record_object(self, account_id: str, record: ObjectRecord) -> bool:
        """Insert the record unless it exists; True if inserted. Raises
        `AccountQuotaFullError` (inserting nothing) if usage would pass the quota."""

    @abc.abstractmethod
    async def object(self, account_id: str, kind: str, object_id: str) -> ObjectRecord | None: ...

    @abc.abstractmethod
    async def delete_object(self, account_id: str, kind: str, object_id: str) -> bool: ...

    @abc.abstractmethod
    async def list_objects(self, account_id: str, kind: str, after: str, limit: int) -> list[ObjectRecord]:
        """Records of `kind` with id > `after`, in id order, at most `limit`."""

    @abc.abstractmethod
    async def usage(self, account_id: str) -> Usage: ...

    # Locks
    @abc.abstractmethod
    async def acquire_lock(self, lease: Lease, now: int) -> None:
        """Grant `lease` unless an unexpired incompatible one exists
        (`LockConflictError`). Expired leases are removed on the way."""

    @abc.abstractmethod
    async def renew_lock(self, account_id: str, lock_id: str, principal: str, expires: int, now: int) -> bool:
        """Extend a live lease taken by `principal`."""

    @abc.abstractmethod
    async def release_lock(self, account_id: str, lock_id: str, principal: str | None) -> bool:
        """Remove a lease taken by `principal` (None: whoever took it)."""

    @abc.abstractmethod
    async def locks(self, account_id: str, now: int) -> list[Lease]: ...

    # Login throttling
    @abc.abstractmethod
    async def throttle(self, key: bytes) -> Throttle | None: ...

    @abc.abstractmethod
    async def record_failure(self, key: bytes, now: int) -> None: ...

    @abc.abstractmethod
    async def clear_failures(self, key: bytes) -> None: ...

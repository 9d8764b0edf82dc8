"""Lock objects: who holds a repository lease (docs/format.md §11).

The server coordinates locks as leases (`/v1/locks`) and sees only their mode
and expiry; the holder's description (host, user, pid, purpose) is a sealed
LOCK object so that `keep` can say who holds a lock without the server learning
host or user names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from keep.protocol import msgcodec
from keep.protocol.api import LOCK_MODES
from keep.protocol.envelope import ObjectKind, Suite
from keep.protocol.errors import FormatError
from keep.protocol.keys import DataKey
from keep.protocol.sealed_record import open_record, seal_record

LOCK_VERSION = 1
TEXT_MAX = 1024


@dataclass(frozen=True, slots=True)
class LockRecord:
    host: str
    user: str
    pid: int
    purpose: str
    mode: str  # a LOCK_MODES value
    time_ns: int

    def to_record(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "host": self.host,
            "pid": self.pid,
            "purpose": self.purpose,
            "time_ns": self.time_ns,
            "user": self.user,
            "version": LOCK_VERSION,
        }

    @classmethod
    def from_record(cls, record: object) -> Self:
        r = msgcodec.as_map(record, "lock")
        try:
            if r["version"] != LOCK_VERSION or r["mode"] not in LOCK_MODES:
                raise FormatError("unsupported lock record")
            return cls(
                host=msgcodec.as_str(r["host"], "host", TEXT_MAX),
                user=msgcodec.as_str(r["user"], "user", TEXT_MAX),
                pid=msgcodec.as_int(r["pid"], "pid"),
                purpose=msgcodec.as_str(r["purpose"], "purpose", TEXT_MAX),
                mode=r["mode"],
                time_ns=msgcodec.as_int(r["time_ns"], "time", -(2**63), 2**63 - 1),
            )
        except KeyError as exc:
            raise FormatError(f"lock lacks {exc.args[0]!r}") from None

    def seal(self, data_key: DataKey, suite: Suite, salt: bytes) -> bytes:
        return seal_record(data_key, ObjectKind.LOCK, suite, salt, self.to_record())

    @classmethod
    def open(cls, data_key: DataKey, data: bytes | memoryview) -> Self:
        return cls.from_record(open_record(data_key, ObjectKind.LOCK, data))

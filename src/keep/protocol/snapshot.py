"""Snapshot objects: one backup's root and description (docs/format.md §10).

Record: a map with sorted string keys (see FIELDS). A snapshot's id is the
object id the server stores it under (SHA-256 of the sealed bytes).

A snapshot the owner wrote in place of another (`keep tag`, `keep rewrite`:
same time, other tags or tree) carries `signature`: the owner's Ed25519
signature over the record without it. Its time is then trusted although it
arrived later than it says (retention.py); a device credential cannot make
one. Unsigned snapshots have no `signature` key at all, so their bytes are
what they always were.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self

from keep.protocol import msgcodec
from keep.protocol.blob import BLOB_ID_SIZE
from keep.protocol.envelope import ObjectKind, Suite
from keep.protocol.errors import FormatError
from keep.protocol.keys import DataKey, OwnerPublicKey, OwnerSigningKey
from keep.protocol.limits import NAME_MAX, SNAPSHOT_PATHS_MAX, TAG_MAX
from keep.protocol.sealed_record import open_record, seal_record

SNAPSHOT_VERSION = 1
TEXT_MAX = 1024
TAGS_MAX = 256
SUMMARY_KEYS_MAX = 64
PATH_MAX = 64 * NAME_MAX
SIGNATURE_SIZE = 64  # Ed25519
SIGNED_CONTEXT = b"keep/v1/snapshot/owner-signed\0"


@dataclass(frozen=True, slots=True)
class Snapshot:
    time_ns: int
    host: str
    user: str
    paths: tuple[bytes, ...]
    tree: bytes
    program: str
    tags: tuple[str, ...] = ()
    parent: bytes | None = None
    summary: dict[str, int] = field(default_factory=dict)
    signature: bytes = b""  # the owner's, on a snapshot written in place of another

    def _unsigned(self) -> dict[str, Any]:
        return self.to_record(signed=False)

    def signed(self, owner: OwnerSigningKey) -> Snapshot:
        unsigned = dataclasses.replace(self, signature=b"")
        signature = owner.sign(SIGNED_CONTEXT + msgcodec.pack(unsigned.to_record()))
        return dataclasses.replace(self, signature=signature)

    def owner_signed(self, owner: OwnerPublicKey) -> bool:
        """Whether the owner signed exactly this record."""
        return len(self.signature) == SIGNATURE_SIZE and owner.verify(
            self.signature, SIGNED_CONTEXT + msgcodec.pack(self._unsigned())
        )

    def to_record(self, signed: bool = True) -> dict[str, Any]:
        record: dict[str, Any] = {
            "host": self.host,
            "parent": self.parent,
            "paths": list(self.paths),
            "program": self.program,
            "summary": dict(sorted(self.summary.items())),
            "tags": list(self.tags),
            "time_ns": self.time_ns,
            "tree": self.tree,
            "user": self.user,
            "version": SNAPSHOT_VERSION,
        }
        if signed and self.signature:
            record["signature"] = self.signature
        return dict(sorted(record.items()))

    @classmethod
    def from_record(cls, record: object) -> Self:
        r = msgcodec.as_map(record, "snapshot")
        try:
            if r["version"] != SNAPSHOT_VERSION:
                raise FormatError(f"unsupported snapshot version {r['version']}")
            paths = msgcodec.as_list(r["paths"], "snapshot paths")
            tags = msgcodec.as_list(r["tags"], "snapshot tags")
            summary = msgcodec.as_map(r["summary"], "snapshot summary")
            if len(paths) > SNAPSHOT_PATHS_MAX or len(tags) > TAGS_MAX:
                raise FormatError("snapshot lists too many paths or tags")
            if len(summary) > SUMMARY_KEYS_MAX:
                raise FormatError("snapshot summary is too large")
            return cls(
                time_ns=msgcodec.as_int(r["time_ns"], "time", -(2**63), 2**63 - 1),
                host=msgcodec.as_str(r["host"], "host", TEXT_MAX),
                user=msgcodec.as_str(r["user"], "user", TEXT_MAX),
                paths=tuple(msgcodec.as_bytes(p, "path", max_size=PATH_MAX) for p in paths),
                tree=msgcodec.as_bytes(r["tree"], "tree id", BLOB_ID_SIZE),
                program=msgcodec.as_str(r["program"], "program", TEXT_MAX),
                tags=tuple(msgcodec.as_str(t, "tag", TAG_MAX) for t in tags),
                parent=None
                if r["parent"] is None
                else msgcodec.as_bytes(r["parent"], "parent", BLOB_ID_SIZE),
                summary={
                    msgcodec.as_str(k, "summary key", TEXT_MAX): msgcodec.as_int(v, "summary value")
                    for k, v in summary.items()
                },
                signature=msgcodec.as_bytes(r["signature"], "snapshot signature", SIGNATURE_SIZE)
                if "signature" in r
                else b"",
            )
        except KeyError as exc:
            raise FormatError(f"snapshot lacks {exc.args[0]!r}") from None

    def seal(self, data_key: DataKey, suite: Suite, salt: bytes) -> bytes:
        return seal_record(data_key, ObjectKind.SNAPSHOT, suite, salt, self.to_record())

    @classmethod
    def open(cls, data_key: DataKey, data: bytes | memoryview) -> Self:
        return cls.from_record(open_record(data_key, ObjectKind.SNAPSHOT, data))

"""Index objects: which blob lives where (docs/format.md §8 "Index").

An index object lists, per pack it covers, the pack's id, cipher suite and salt
(so a blob can be opened with one ranged read, without fetching the pack
header) and the pack's TOC entries. `supersedes` names index objects that this
one replaces (written by prune); readers ignore superseded indexes.
`condemned` names packs that prune's first phase found unreferenced: they still
exist and may be read, but no backup may deduplicate against them, and the
second phase deletes them once every backup that could have relied on them
has ended (docs/engine.md "Prune"). `forgotten` names snapshots that `keep
forget` removed: a snapshot a client saw before and no longer finds listed
must be named there, or the server is serving an older state (rollback).

Those three lists remove or hide things, so they carry authority only with
the owner's signature (Ed25519, key derived from the master key, which
devices do not hold): `signature` signs the whole record but itself. Readers
ignore the lists of an unsigned or wrongly signed index object — a device
credential can add pack listings, never take anything away. Version 2
objects (before signatures) are read the same way: their lists are ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

from keep.protocol import msgcodec
from keep.protocol.envelope import SALT_SIZE, ObjectKind, Suite
from keep.protocol.errors import FormatError
from keep.protocol.keys import DataKey, OwnerPublicKey, OwnerSigningKey
from keep.protocol.pack import TocEntry
from keep.protocol.sealed_record import open_record, seal_record

INDEX_VERSION = 3
OBJECT_ID_SIZE = 32  # SHA-256 of an object's bytes
SIGNATURE_SIZE = 64  # Ed25519
INDEX_MIN_PADDED = 16 * 1024  # bodies are padded to PADMÉ lengths, at least this (~200 blobs)
SIGNED_CONTEXT = b"keep/v1/index/owner-signed\0"


@dataclass(frozen=True, slots=True)
class IndexedPack:
    pack_id: bytes
    suite: Suite
    salt: bytes
    entries: tuple[TocEntry, ...]

    def to_list(self) -> list[object]:
        return [self.pack_id, int(self.suite), self.salt, [e.to_list() for e in self.entries]]

    @classmethod
    def from_list(cls, value: object) -> Self:
        pack_id, suite, salt, entries = msgcodec.as_list(value, "index pack", 4)
        try:
            suite_value = Suite(msgcodec.as_int(suite, "suite", 0, 255))
        except ValueError:
            raise FormatError("index names an unknown cipher suite") from None
        return cls(
            msgcodec.as_bytes(pack_id, "pack id", OBJECT_ID_SIZE),
            suite_value,
            msgcodec.as_bytes(salt, "pack salt", SALT_SIZE),
            tuple(TocEntry.from_list(e, i) for i, e in enumerate(msgcodec.as_list(entries, "index entries"))),
        )


@dataclass(frozen=True, slots=True)
class Index:
    packs: tuple[IndexedPack, ...]
    supersedes: tuple[bytes, ...] = ()
    condemned: tuple[bytes, ...] = ()
    forgotten: tuple[bytes, ...] = ()
    signature: bytes = b""
    version: int = INDEX_VERSION  # 2: written before owner signatures existed

    @property
    def has_control(self) -> bool:
        """Whether the object claims to supersede, condemn or forget anything."""
        return bool(self.supersedes or self.condemned or self.forgotten)

    def _unsigned(self) -> list[object]:
        return [
            INDEX_VERSION,
            [p.to_list() for p in self.packs],
            list(self.supersedes),
            list(self.condemned),
            list(self.forgotten),
        ]

    def to_record(self) -> list[object]:
        return [*self._unsigned(), self.signature]

    def signed(self, owner: OwnerSigningKey) -> Index:
        return dataclasses.replace(
            self, signature=owner.sign(SIGNED_CONTEXT + msgcodec.pack(self._unsigned()))
        )

    def owner_signed(self, owner: OwnerPublicKey) -> bool:
        """Whether the owner signed exactly this record."""
        return len(self.signature) == SIGNATURE_SIZE and owner.verify(
            self.signature, SIGNED_CONTEXT + msgcodec.pack(self._unsigned())
        )

    @classmethod
    def from_record(cls, record: object) -> Self:
        fields = msgcodec.as_list(record, "index")
        if not fields or fields[0] not in (2, INDEX_VERSION):
            raise FormatError(f"unsupported index version {fields[0] if fields else None}")
        if len(fields) != (5 if fields[0] == 2 else 6):
            raise FormatError("index record has the wrong number of fields")
        _, packs, supersedes, condemned, forgotten = fields[:5]
        # Version 2 objects had no owner signature; unsigned ones carry b"".
        signature = (
            msgcodec.as_bytes(fields[5], "index signature", max_size=SIGNATURE_SIZE)
            if fields[0] == 3
            else b""
        )
        return cls(
            tuple(IndexedPack.from_list(p) for p in msgcodec.as_list(packs, "index packs")),
            tuple(
                msgcodec.as_bytes(s, "superseded index id", OBJECT_ID_SIZE)
                for s in msgcodec.as_list(supersedes, "superseded indexes")
            ),
            tuple(
                msgcodec.as_bytes(c, "condemned pack id", OBJECT_ID_SIZE)
                for c in msgcodec.as_list(condemned, "condemned packs")
            ),
            tuple(
                msgcodec.as_bytes(f, "forgotten snapshot id", OBJECT_ID_SIZE)
                for f in msgcodec.as_list(forgotten, "forgotten snapshots")
            ),
            signature,
            fields[0],
        )

    def seal(self, data_key: DataKey, suite: Suite, salt: bytes) -> bytes:
        return seal_record(data_key, ObjectKind.INDEX, suite, salt, self.to_record(), pad_to=INDEX_MIN_PADDED)

    @classmethod
    def open(cls, data_key: DataKey, data: bytes | memoryview) -> Self:
        return cls.from_record(open_record(data_key, ObjectKind.INDEX, data))

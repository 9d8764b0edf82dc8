"""Snapshot objects: one backup's root and description (docs/format.md §10).

Record: a map with sorted string keys (see FIELDS). A snapshot's id is the
object id the server stores it under (SHA-256 of the sealed bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from keep.protocol import msgcodec
from keep.protocol.blob import BLOB_ID_SIZE
from keep.protocol.envelope import ObjectKind, Suite
from keep.protocol.errors import FormatError
from keep.protocol.keys import DataKey
from keep.protocol.limits import NAME_MAX, SNAPSHOT_PATHS_MAX, TAG_MAX
from keep.protocol.sealed_record import open_record, seal_record

SNAPSHOT_VERSION = 1
TEXT_MAX = 1024
TAGS_MAX = 256
SUMMARY_KEYS_MAX = 64
PATH_MAX = 64 * NAME_MAX


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

    def to_record(self) -> dict[str, Any]:
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
            )
        except KeyError as exc:
            raise FormatError(f"snapshot lacks {exc.args[0]!r}") from None

    def seal(self, data_key: DataKey, suite: Suite, salt: bytes) -> bytes:
        return seal_record(data_key, ObjectKind.SNAPSHOT, suite, salt, self.to_record())

    @classmethod
    def open(cls, data_key: DataKey, data: bytes | memoryview) -> Self:
        return cls.from_record(open_record(data_key, ObjectKind.SNAPSHOT, data))

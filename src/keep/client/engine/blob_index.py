"""Where every blob is, held compactly (pure: no I/O).

A repository's index has an entry per blob, and a first backup of a million
small files adds a million. As Python objects — a TocEntry, a Location and
a dict entry per blob — that cost ~450 bytes a blob. Here a pack's table of
contents is one `bytes` of fixed-size records (PackTable, 50 bytes an
entry), and the index maps a blob id to one int, the pack's number and the
entry's (BlobIndex): ~180 bytes a blob, most of it the id itself and the
dict's slot. TocEntry and Location are built only when someone asks where a
blob is.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

from keep.client.engine.locations import Location
from keep.protocol.index import IndexedPack
from keep.protocol.limits import PACK_MAX_BLOBS
from keep.protocol.pack import BLOB_TYPES, CODECS, TocEntry

# blob type, blob id, codec, offset, sealed length, raw length, frame; all
# bounded by PACK_MAX (64 MiB) or PACK_MAX_BLOBS, so 32 bits hold them
RECORD = struct.Struct("<B32sBIIII")
_FIELDS = struct.Struct("<B32xBIIII")  # the same record without copying the id out
_SPAN = struct.Struct("<III")  # offset, sealed length, raw length
_SPAN_AT = 1 + 32 + 1
ENTRY_BITS = (PACK_MAX_BLOBS - 1).bit_length()  # a slot is pack number << ENTRY_BITS | entry number
_ENTRY_MASK = (1 << ENTRY_BITS) - 1


class PackTable:
    """One pack's table of contents as packed records."""

    __slots__ = ("pack_id", "salt", "suite", "table")

    def __init__(self, pack: IndexedPack) -> None:
        self.pack_id = pack.pack_id.hex()
        self.suite = pack.suite
        self.salt = pack.salt
        pack_record = RECORD.pack
        self.table = b"".join(
            pack_record(e.blob_type, e.blob_id, e.codec, e.offset, e.length, e.raw_length, e.frame)
            for e in pack.entries
        )

    def __len__(self) -> int:
        return len(self.table) // RECORD.size

    def blob_ids(self) -> list[bytes]:
        size, table = RECORD.size, self.table
        return [table[at + 1 : at + 33] for at in range(0, len(table), size)]

    def entry(self, number: int, blob_id: bytes | None = None) -> TocEntry:
        """Entry `number`; `blob_id`, if the caller has it, is used instead of a copy."""
        at = number * RECORD.size
        kind, codec, offset, length, raw_length, frame = _FIELDS.unpack_from(self.table, at)
        if blob_id is None:
            blob_id = self.table[at + 1 : at + 33]
        return TocEntry(BLOB_TYPES[kind], blob_id, CODECS[codec], offset, length, raw_length, frame)

    def span(self, number: int) -> tuple[int, int, int]:
        """Entry `number`'s offset, sealed length and raw length."""
        return _SPAN.unpack_from(self.table, number * RECORD.size + _SPAN_AT)

    def location(self, number: int, blob_id: bytes | None = None) -> Location:
        return Location(self.pack_id, self.suite, self.salt, self.entry(number, blob_id))

    def entries(self) -> tuple[TocEntry, ...]:
        return tuple(
            TocEntry(BLOB_TYPES[kind], blob_id, CODECS[codec], offset, length, raw_length, frame)
            for kind, blob_id, codec, offset, length, raw_length, frame in RECORD.iter_unpack(self.table)
        )

    def indexed(self) -> IndexedPack:
        return IndexedPack(bytes.fromhex(self.pack_id), self.suite, self.salt, self.entries())


Place = tuple[PackTable, int]  # a pack's table and the entry's number in it


class _Placing(Mapping[bytes, Location]):
    """Blob id -> Location, built from `place` (what subclasses keep)."""

    __slots__ = ()

    def place(self, blob_id: bytes) -> Place | None:
        raise NotImplementedError

    def __getitem__(self, blob_id: bytes) -> Location:
        found = self.get(blob_id)
        if found is None:
            raise KeyError(blob_id)
        return found

    def get(self, blob_id: bytes, default: Location | None = None) -> Location | None:  # type: ignore[override]
        found = self.place(blob_id)
        return default if found is None else found[0].location(found[1], blob_id)


class BlobIndex(_Placing):
    """Blob id -> where it is, over a list of PackTables shared with the
    repository (which numbers the packs). Membership, what a backup asks
    millions of times, is one dict lookup; a Location is built per lookup."""

    __slots__ = ("_slots", "_tables")

    def __init__(self, tables: list[PackTable]) -> None:
        self._tables = tables
        self._slots: dict[bytes, int] = {}

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._slots

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def place(self, blob_id: bytes) -> Place | None:
        """The blob's pack table and entry number, without building a Location."""
        slot = self._slots.get(blob_id)
        return None if slot is None else (self._tables[slot >> ENTRY_BITS], slot & _ENTRY_MASK)

    # Writes, for the repository only
    def setdefault(self, blob_id: bytes, pack_number: int, entry_number: int) -> int:
        """Place the blob here unless it is placed already; the pack number it has."""
        return self._slots.setdefault(blob_id, pack_number << ENTRY_BITS | entry_number) >> ENTRY_BITS

    def pop(self, blob_id: bytes) -> None:
        self._slots.pop(blob_id, None)

    def clear(self) -> None:
        self._slots.clear()


class Readable(_Placing):
    """Live blobs first, then those found only in condemned packs."""

    __slots__ = ("_condemned", "_live")

    def __init__(self, live: BlobIndex, condemned: BlobIndex) -> None:
        self._live, self._condemned = live, condemned

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._live or blob_id in self._condemned

    def place(self, blob_id: bytes) -> Place | None:
        return self._live.place(blob_id) or self._condemned.place(blob_id)

    def __iter__(self) -> Iterator[bytes]:
        yield from self._live
        yield from (b for b in self._condemned if b not in self._live)

    def __len__(self) -> int:
        return len(self._live) + sum(1 for b in self._condemned if b not in self._live)


class PackView(Mapping[str, IndexedPack]):
    """Pack id -> what the newest index naming it says it holds, built on
    each lookup from its PackTable (checks and prune walk packs one by one)."""

    __slots__ = ("_numbers", "_tables")

    def __init__(self, tables: list[PackTable], numbers: dict[str, int]) -> None:
        self._tables = tables
        self._numbers = numbers

    def __getitem__(self, pack_id: str) -> IndexedPack:
        return self._tables[self._numbers[pack_id]].indexed()

    def __contains__(self, pack_id: object) -> bool:
        return pack_id in self._numbers

    def __iter__(self) -> Iterator[str]:
        return iter(self._numbers)

    def __len__(self) -> int:
        return len(self._numbers)

"""The compact index (engine/blob_index.py): every entry comes back exactly
as it went in, at the limits of every field; the first place a blob is
indexed stays its place; and a blob costs a bounded number of bytes."""

from __future__ import annotations

import os
import tracemalloc

from keep.client.engine.blob_index import ENTRY_BITS, BlobIndex, PackTable, PackView, Readable
from keep.client.engine.locations import Location
from keep.protocol.blob import BlobType
from keep.protocol.compression import Codec
from keep.protocol.envelope import Suite
from keep.protocol.index import IndexedPack
from keep.protocol.limits import PACK_MAX, PACK_MAX_BLOBS, TREE_RAW_MAX
from keep.protocol.pack import TocEntry


def pack_of(count: int, *, start: int = 0, suite: Suite = Suite.AES_256_GCM) -> IndexedPack:
    entries = tuple(
        TocEntry(
            BlobType.DATA if i % 3 else BlobType.TREE,
            os.urandom(32),
            Codec.ZSTD if i % 2 else Codec.RAW,
            100 + 1000 * i,
            900 + i,
            5000 + i,
            start + i,
        )
        for i in range(count)
    )
    return IndexedPack(os.urandom(32), suite, os.urandom(32), entries)


def test_a_pack_table_gives_back_every_entry_exactly_even_at_the_limits() -> None:
    extreme = TocEntry(
        BlobType.TREE, bytes(range(32)), Codec.ZSTD, PACK_MAX, PACK_MAX, TREE_RAW_MAX, PACK_MAX_BLOBS - 1
    )
    pack = pack_of(40)
    pack = IndexedPack(pack.pack_id, Suite.CHACHA20_POLY1305, pack.salt, (*pack.entries, extreme))
    table = PackTable(pack)
    assert len(table) == 41
    assert table.indexed() == pack
    for number, entry in enumerate(pack.entries):
        got = table.entry(number)
        assert got == entry
        assert type(got.blob_type) is BlobType
        assert type(got.codec) is Codec
        assert table.location(number) == Location(pack.pack_id.hex(), pack.suite, pack.salt, entry)
    # The caller's id is used as it is, not copied out of the table.
    blob_id = pack.entries[3].blob_id
    assert table.entry(3, blob_id).blob_id is blob_id


def test_the_first_place_a_blob_is_indexed_stays_its_place() -> None:
    tables: list[PackTable] = []
    index = BlobIndex(tables)
    first, second = pack_of(5), pack_of(5)
    shared = first.entries[2]
    second = IndexedPack(second.pack_id, second.suite, second.salt, (*second.entries, shared))
    for pack in (first, second):
        tables.append(PackTable(pack))
        for at, entry in enumerate(pack.entries):
            index.setdefault(entry.blob_id, len(tables) - 1, at)
    assert len(index) == 10
    assert index[shared.blob_id].pack_id == first.pack_id.hex()
    assert index.setdefault(shared.blob_id, 1, 5) == 0  # the pack number it already has
    assert index.place(shared.blob_id) == (tables[0], 2)
    assert tables[0].span(2) == (shared.offset, shared.length, shared.raw_length)
    assert index.get(os.urandom(32)) is None
    assert os.urandom(32) not in index
    assert set(index) == {e.blob_id for p in (first, second) for e in p.entries}
    assert dict(index.items())[second.entries[4].blob_id] == tables[1].location(4)
    index.pop(shared.blob_id)
    assert shared.blob_id not in index
    index.pop(shared.blob_id)  # popping what is not there is not an error

    condemned = BlobIndex(tables)
    gone = pack_of(2)
    tables.append(PackTable(gone))
    condemned.setdefault(gone.entries[0].blob_id, 2, 0)
    condemned.setdefault(first.entries[0].blob_id, 2, 1)  # also live: the live place wins
    readable = Readable(index, condemned)
    assert readable[gone.entries[0].blob_id] == tables[2].location(0)
    assert readable[first.entries[0].blob_id].pack_id == first.pack_id.hex()
    assert len(readable) == len(set(readable)) == 10

    view = PackView(tables, {first.pack_id.hex(): 0, gone.pack_id.hex(): 2})
    assert view[first.pack_id.hex()] == first
    assert len(view) == 2
    assert gone.pack_id.hex() in view


def test_slots_address_every_entry_of_every_pack() -> None:
    assert (1 << ENTRY_BITS) >= PACK_MAX_BLOBS
    tables = [PackTable(pack_of(1)) for _ in range(3)]
    index = BlobIndex(tables)
    far = pack_of(2)
    tables += [tables[0]] * 200_000 + [PackTable(far)]  # pack number 200,003
    index.setdefault(far.entries[1].blob_id, len(tables) - 1, 1)
    assert index[far.entries[1].blob_id] == tables[-1].location(1)


def test_a_blob_costs_under_two_hundred_and_twenty_bytes() -> None:
    """The in-memory index grows with every blob a backup adds (a million
    small files are a million blobs): as Python objects it cost ~450 bytes
    a blob; packed, the id, the dict's slot, one int and a 50-byte record."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        packs = [pack_of(500) for _ in range(40)]
        tables: list[PackTable] = []
        index = BlobIndex(tables)
        for pack in packs:
            tables.append(PackTable(pack))
            for at, entry in enumerate(pack.entries):
                index.setdefault(entry.blob_id, len(tables) - 1, at)
        del packs, pack, entry  # the TocEntries go; the ids live on as the index's keys
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_blob = grown / len(index)
    assert per_blob < 220, per_blob

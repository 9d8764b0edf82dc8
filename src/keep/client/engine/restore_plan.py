"""Restore planning (pure): which pack ranges to fetch, and where each blob goes.

Given the blobs each file needs (in order) and where each blob lives, group
them by pack, merge ranges whose gap is below MERGE_GAP, and widen every range
to RANGE_ALIGN boundaries — so the server sees a few large aligned reads per
pack, never one that matches a single blob's frame (docs/threat-model.md).

A fetch thread takes its range off the connection one blob at a time
(`transport.RangeReader`), so what it holds is one blob's sealed bytes and
plaintext, whatever the range's size: RANGE_MAX bounds the work of one
request, not memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from keep.client.engine.blob_index import PackTable, Place
from keep.client.engine.locations import RANGE_ALIGN, Location, aligned
from keep.protocol.limits import MiB

MERGE_GAP = 1 * MiB
RANGE_MAX = 8 * MiB


class Target(NamedTuple):
    file: int  # index into the caller's file list
    offset: int  # where the blob's plaintext goes in that file


_new_target = tuple.__new__  # a Target without the call its generated __new__ adds (one per blob)


class BlobFetch:
    """One blob to fetch and everywhere it goes. Where it is stays the
    index's compact entry until the range is fetched: a plan for a hundred
    thousand files holds no Location per blob, only the entry's span."""

    __slots__ = ("blob_id", "length", "number", "raw_length", "start", "table", "targets")

    def __init__(self, table: PackTable, number: int, blob_id: bytes) -> None:
        self.table, self.number, self.blob_id = table, number, blob_id
        self.start, self.length, self.raw_length = table.span(number)
        self.targets: list[Target] = []

    @property
    def location(self) -> Location:
        return self.table.location(self.number, self.blob_id)


@dataclass(slots=True)
class RangeFetch:
    pack_id: str
    start: int
    end: int
    blobs: list[BlobFetch]


def plan(
    files: Sequence[Sequence[bytes]],
    place: Callable[[bytes], Place | None],
    pack_sizes: Mapping[str, int],
    first: int = 0,
) -> list[RangeFetch]:
    """`files[i]` lists the blobs of file `first + i` in order; each goes
    where the index's plaintext lengths of the blobs before it end. `place`
    is the index's (`Repository.place`). Raises KeyError for a blob that is
    not indexed (the caller reports the file)."""
    blobs: dict[bytes, BlobFetch] = {}
    known = blobs.get
    for index, content in enumerate(files, first):
        offset = 0
        for bid in content:
            fetch = known(bid)
            if fetch is None:
                found = place(bid)
                if found is None:
                    raise KeyError(bid)
                fetch = blobs[bid] = BlobFetch(found[0], found[1], bid)
            fetch.targets.append(_new_target(Target, (index, offset)))
            offset += fetch.raw_length
    by_pack: dict[str, list[tuple[int, int, BlobFetch]]] = defaultdict(list)
    for fetch in blobs.values():
        by_pack[fetch.table.pack_id].append((fetch.start, fetch.start + fetch.length, fetch))
    del blobs
    out: list[RangeFetch] = []
    for pack_id in sorted(by_pack):
        members = sorted(by_pack.pop(pack_id), key=itemgetter(0))
        size = pack_sizes.get(pack_id, 0)
        ranges: list[RangeFetch] = []
        current: RangeFetch | None = None
        for start, end, fetch in members:
            if current is not None and start - current.end <= MERGE_GAP and end - current.start <= RANGE_MAX:
                current.end = max(current.end, end)
                current.blobs.append(fetch)
                continue
            current = RangeFetch(pack_id, start, end, [fetch])
            ranges.append(current)
        for rng in ranges:
            limit = size if size > 0 else rng.end + RANGE_ALIGN
            rng.start, rng.end = aligned(rng.start, rng.end, max(limit, rng.end))
        out += ranges
    return out

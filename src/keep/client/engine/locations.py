"""Where a blob is stored, and which bytes of a pack are read to get it
(pure: no I/O). Range reads are widened to RANGE_ALIGN boundaries and a
PADMÉ length, so the server never sees a request that equals one blob's
frame (docs/threat-model.md)."""

from __future__ import annotations

from typing import NamedTuple

from keep.protocol.envelope import Suite
from keep.protocol.limits import KiB
from keep.protocol.pack import TocEntry
from keep.protocol.padding import padme

RANGE_ALIGN = 64 * KiB


class Location(NamedTuple):
    """Where a blob is stored; one per index entry (a named tuple: cheap to build)."""

    pack_id: str
    suite: Suite
    salt: bytes
    entry: TocEntry


def aligned(start: int, end: int, size: int) -> tuple[int, int]:
    """Widen [start, end) to RANGE_ALIGN boundaries and then to a PADMÉ
    length (as packs are padded), within [0, size): a ranged read says no
    more about the blobs in it than a pack's size says about its content."""
    start, end = start - start % RANGE_ALIGN, min(size, -(-end // RANGE_ALIGN) * RANGE_ALIGN)
    want = -(-padme(end - start) // RANGE_ALIGN) * RANGE_ALIGN
    grown = min(size, start + want)
    return max(0, grown - want), grown

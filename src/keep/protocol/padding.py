"""Size padding for packs (docs/format.md §7.3, docs/threat-model.md).

PADMÉ (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
Communication with PURBs", PETS 2019) rounds a length L up so that at most
O(log log L) bits of it remain visible; overhead is at most ~12%, and about 3%
for 16 MiB packs. `padded_pack_size` adds a floor so that a pack holding a single
small blob does not reveal its size at all.
"""

from __future__ import annotations


def padme(length: int) -> int:
    """Smallest PADMÉ length >= `length`."""
    if length < 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 e) + 1
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask


def padded_pack_size(length: int, floor: int) -> int:
    """The size a pack of `length` unpadded bytes is padded to."""
    return max(floor, padme(length))

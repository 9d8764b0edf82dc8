"""Content-defined chunking with FastCDC 2020 (docs/format.md §6.1).

Owns the chunker parameters and the boundary rule for a stream that arrives in
buffers: `Chunker.cut(buf, final)` returns the lengths of the chunks that are
certain, and leaves the tail (the last, possibly unfinished chunk) for the
caller to carry into the next buffer. Cutting a file in buffers this way gives
exactly the chunks of cutting it whole, because FastCDC restarts its rolling
hash at every boundary.

Keying: `pyfastcdc`'s `seed` is XORed into every entry of its public gear
table. Its cut test masks only bits 0..47 of a hash that only ever shifts left,
so only the seed's low 48 bits change any boundary. We derive them from the
chunker key, which stops an attacker from precomputing boundaries of known
files — but chunk sizes an attacker observes reveal those bits (IACR eprint
2025/532, 2025/558), so the real defence is that the server never sees a chunk
length (see `pack.py`, `padding.py` and docs/threat-model.md).

Does not own: reading files (the client's reader feeds buffers in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyfastcdc import FastCDC

from keep.protocol.keys import ChunkerKey
from keep.protocol.limits import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN

SEED_BITS = 48  # bits of the seed that influence cut points (see module doc)
NORMALIZATION: Literal[2] = 2  # FastCDC normalized-chunking level: fewer tiny / huge chunks


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    min_size: int = CHUNK_MIN
    avg_size: int = CHUNK_AVG
    max_size: int = CHUNK_MAX
    normalization: Literal[0, 1, 2, 3] = NORMALIZATION


def chunker_seed(key: ChunkerKey) -> int:
    """The gear-table seed: the key's first 48 bits, never zero."""
    seed = int.from_bytes(key.material[:8], "big") & ((1 << SEED_BITS) - 1)
    return seed or 1


class Chunker:
    """Cuts buffers into content-defined chunks. Not thread-safe: one per reader.

    pyfastcdc's `avg_size` is the mask target *after* the `min_size` skip, so the
    observed mean chunk is about `avg_size + min_size` on random data; we pass
    `avg - min` to land on the documented average.
    """

    __slots__ = ("_cdc", "params")

    def __init__(self, key: ChunkerKey, params: ChunkerParams = ChunkerParams()) -> None:
        self.params = params
        self._cdc = FastCDC(
            params.avg_size - params.min_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=params.normalization,
            seed=chunker_seed(key),
        )

    def cut(self, buf: bytes | bytearray | memoryview, final: bool) -> list[int]:
        """Lengths of the complete chunks at the start of `buf`.

        Unless `final`, the last chunk is withheld: it may have been cut only
        because the buffer ended. Its bytes (``len(buf) - sum(result)``) must be
        carried to the front of the next buffer. With `final`, the lengths sum to
        ``len(buf)``. A buffer shorter than `max_size` that is not final may yield
        nothing; callers feed buffers of at least twice `max_size`.
        """
        lengths = [chunk.length for chunk in self._cdc.cut_buf(buf)]
        if not final and lengths:
            lengths.pop()
        return lengths

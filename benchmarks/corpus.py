"""Deterministic benchmark data: compressible text-like and incompressible bytes.

Generated from a seed, never downloaded, so every run measures the same input.
"""

from __future__ import annotations

import random

WORDS = (
    b"def return import class self data value index pack chunk backup restore "
    b"snapshot tree blob key server client error the of and to in is for with "
    b"async await yield lambda None True False if else elif while for try except "
).split()


def text_bytes(size: int, seed: int = 1) -> bytes:
    """Source-code-like text: compresses about 3-4x with zstd level 3."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        out += b"    " * rng.randint(0, 3) + line + b"  # %d\n" % rng.randint(0, 10**6)
    return bytes(out[:size])


def random_bytes(size: int, seed: int = 2) -> bytes:
    """Media-like, incompressible."""
    rng = random.Random(seed)
    block = 1 << 20
    return b"".join(rng.randbytes(min(block, size - i)) for i in range(0, size, block))

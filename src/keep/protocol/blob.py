"""Blob ids and blob types (docs/format.md §6 "Blobs").

A blob is one chunk of file content (`BlobType.DATA`) or one serialized
directory (`BlobType.TREE`). Its id is the keyed BLAKE3 of its plaintext under
the repository's id key, so equal content deduplicates while the server cannot
confirm a guessed file by hashing it. Decryption always recomputes the id;
`verify_blob_id` has no switch to turn it off.
"""

from __future__ import annotations

import enum
import hmac

import blake3

from keep.protocol.errors import IntegrityError
from keep.protocol.keys import IdKey

BLOB_ID_SIZE = 32


class BlobType(enum.IntEnum):
    DATA = 1
    TREE = 2


def blob_id(key: IdKey, data: bytes | memoryview) -> bytes:
    """Keyed BLAKE3-256 of `data` (releases the GIL for large inputs)."""
    return blake3.blake3(data, key=key.material, max_threads=1).digest()


def verify_blob_id(key: IdKey, expected: bytes, data: bytes | memoryview) -> None:
    if not hmac.compare_digest(blob_id(key, data), expected):
        raise IntegrityError(f"blob {expected.hex()[:16]} does not match its content")

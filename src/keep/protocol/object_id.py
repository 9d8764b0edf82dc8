"""Object ids: the hash of an object's complete stored bytes (docs/format.md §1).

Objects are named by their BLAKE3-256 in hex. Repositories written before
that change named them by SHA-256, and those objects keep their names, so a
reader of a whole object accepts either hash. A writer says which one it used
in the `Keep-Object-Hash` header of its upload (absent: SHA-256, what older
clients send), and keep-server checks that one while the body streams in —
nobody hashes a body twice.

Accepting either is safe because both are 256-bit collision-resistant: a
lying server would need a second preimage under one of them to pass other
bytes off under a name.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import blake3

HASH_HEADER = "Keep-Object-Hash"
BLAKE3 = "blake3"
SHA256 = "sha256"
HASHES = (BLAKE3, SHA256)
WRITTEN = BLAKE3  # the hash this client names new objects by
UNNAMED = SHA256  # the hash an upload without the header was named by


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def new_hasher(name: str = WRITTEN) -> Hasher:
    """An incremental hasher for the object-id hash `name` (one of HASHES)."""
    if name == BLAKE3:
        return blake3.blake3(max_threads=1)
    if name == SHA256:
        return hashlib.sha256()
    raise ValueError(f"unknown object hash {name!r}")


def object_id(data: bytes | memoryview) -> str:
    """The id a new object with these bytes is stored under."""
    return blake3.blake3(data, max_threads=1).hexdigest()


def is_named_by(data: bytes | memoryview, name: str) -> bool:
    """Whether `data` hashes to the object id `name` under either hash."""
    return object_id(data) == name or hashlib.sha256(data).hexdigest() == name

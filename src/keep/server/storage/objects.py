"""The object store interface: opaque bodies, named by SHA-256, per account.

Every backend (`directory.py`, `s3.py`) implements
`ObjectStore` and passes `tests/server/test_objects_conformance.py` unchanged.
A store never holds a whole body in memory, verifies the SHA-256 and length
while it writes, and makes a body visible only once it is complete.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

Body = AsyncIterator[bytes]  # an upload's bytes as they arrive


class HashMismatchError(Exception):
    """Raised by `put` when the body does not hash to its id (nothing stored)."""


class StorageFullError(Exception):
    """Raised by a store (objects or metadata) whose storage is out of space;
    nothing partial is left behind."""


class SizeMismatchError(Exception):
    """Raised by `put` when the body is longer or shorter than announced."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    path: Path | None  # a local file that can be served with sendfile, if any


class ObjectStore(abc.ABC):
    # Whether `stat` gives local files that can be served with sendfile. A
    # store without them (S3) is trusted to hold what the metadata records,
    # which saves a HEAD request per GET.
    local_files = True

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def put(
        self, account_id: str, kind: str, object_id: str, size: int, body: Body, *, hashed_by: str
    ) -> None:
        """Store exactly `size` bytes from `body` if they hash to `object_id`
        under the object-id hash `hashed_by` (`keep.protocol.object_id`);
        atomic: a failure or crash leaves no visible object."""

    @abc.abstractmethod
    async def stat(self, account_id: str, kind: str, object_id: str) -> StoredObject | None: ...

    @abc.abstractmethod
    def read(self, account_id: str, kind: str, object_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a stored object, streamed."""

    @abc.abstractmethod
    async def delete(self, account_id: str, kind: str, object_id: str) -> None: ...

    @abc.abstractmethod
    async def delete_account(self, account_id: str) -> None: ...

    @abc.abstractmethod
    def iter_objects(self, account_id: str) -> AsyncIterator[tuple[str, str]]:
        """(kind, id) of every stored body of an account (for scrub)."""

    @abc.abstractmethod
    def iter_accounts(self) -> AsyncIterator[str]: ...

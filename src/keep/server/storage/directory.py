"""Directory object store: the embedded default (`file:///path/objects`).

Layout: `ROOT/<account id>/<kind>/<id[:2]>/<id>`; uploads stream into
`ROOT/<account id>/tmp/` while being hashed, are fsynced, renamed into place
and the directory is fsynced. A crash or dropped connection leaves at most a
temp file, never a visible partial object; stale temp files are removed on
start. Blocking file I/O and hashing run on a thread pool, never on the event
loop.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from keep.protocol.api import is_object_id
from keep.protocol.object_id import new_hasher
from keep.server.storage.objects import (
    Body,
    HashMismatchError,
    ObjectStore,
    SizeMismatchError,
    StorageFullError,
    StoredObject,
)

_SAFE = re.compile(r"^[a-z0-9]{1,64}$")
READ_BLOCK = 1024 * 1024
WRITE_BATCH = 4 * 1024 * 1024  # bytes per thread hop: hash + writev
WRITE_BATCH_PARTS = 512  # stay well below IOV_MAX
UNCACHED_MIN = 1024 * 1024  # objects this large leave the page cache once durable
IO_THREADS = 8
SYNC_THREADS = 16  # fsyncs wait on the disk; keep them off the I/O threads
TMP = "tmp"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Upload:
    """One in-progress upload: a temp file and a running SHA-256.

    A cancelled request (the client went away) stops awaiting its pool job,
    but the job itself still runs: the lock makes `abort` wait for a write
    in progress, so the descriptor is never closed under it (and never
    reused by a new connection while a stale write still targets it)."""

    def __init__(self, tmp_dir: Path, hashed_by: str) -> None:
        self.hash = new_hasher(hashed_by)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
        self.path = Path(name)
        self._lock = threading.Lock()

    def write(self, parts: list[bytes]) -> None:
        """Hash and write a batch of received pieces with one writev."""
        with self._lock:
            if self.fd < 0:
                raise OSError(errno.EBADF, "upload already closed")
            for part in parts:
                self.hash.update(part)
            written = os.writev(self.fd, parts)
            total = sum(len(p) for p in parts)
            if written < total:  # short write: finish the rest piece by piece
                rest = memoryview(b"".join(parts))[written:]
                while rest:
                    rest = rest[os.write(self.fd, rest) :]

    def commit(self, final: Path, size: int) -> None:
        with self._lock:
            os.fsync(self.fd)
            if size >= UNCACHED_MIN:
                # Written once, read rarely (a restore, a check): keeping
                # packs cached only pushes out what is read (indexes,
                # snapshots). The pages are clean after fsync; Borg does the same.
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(self.fd)
            self.fd = -1
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, final)
        _fsync_dir(final.parent)

    def abort(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        self.path.unlink(missing_ok=True)


class DirectoryObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self._root = root
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="keep-objects")
        self._sync_pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="keep-fsync")

    def _path(self, account_id: str, kind: str, object_id: str) -> Path:
        # Names come from the server (random account ids, checked kinds and
        # hex ids); refuse anything else rather than build a path from it.
        if not (_SAFE.fullmatch(account_id) and _SAFE.fullmatch(kind) and is_object_id(object_id)):
            raise ValueError("unsafe object name")
        return self._root / account_id / kind / object_id[:2] / object_id

    async def open(self) -> None:
        def prepare() -> None:
            self._root.mkdir(parents=True, exist_ok=True)
            for tmp in self._root.glob(f"*/{TMP}"):
                shutil.rmtree(tmp, ignore_errors=True)

        await asyncio.get_running_loop().run_in_executor(self._pool, prepare)

    async def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._sync_pool.shutdown(wait=True)

    async def put(
        self, account_id: str, kind: str, object_id: str, size: int, body: Body, *, hashed_by: str
    ) -> None:
        final = self._path(account_id, kind, object_id)
        loop = asyncio.get_running_loop()
        try:
            upload = await loop.run_in_executor(self._pool, _Upload, self._root / account_id / TMP, hashed_by)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError from None
            raise
        received = 0
        parts: list[bytes] = []
        held = 0
        try:
            async for data in body:
                received += len(data)
                if received > size:
                    raise SizeMismatchError
                parts.append(data)
                held += len(data)
                if held >= WRITE_BATCH or len(parts) >= WRITE_BATCH_PARTS:
                    await loop.run_in_executor(self._pool, upload.write, parts)
                    parts, held = [], 0
            if parts:
                await loop.run_in_executor(self._pool, upload.write, parts)
            if received != size:
                raise SizeMismatchError
            if upload.hash.hexdigest() != object_id:
                raise HashMismatchError
            await loop.run_in_executor(self._sync_pool, upload.commit, final, size)
        except OSError as exc:
            await asyncio.shield(loop.run_in_executor(self._pool, upload.abort))
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError from None
            raise
        except BaseException:
            await asyncio.shield(loop.run_in_executor(self._pool, upload.abort))
            raise

    async def stat(self, account_id: str, kind: str, object_id: str) -> StoredObject | None:
        path = self._path(account_id, kind, object_id)
        try:
            st = await asyncio.get_running_loop().run_in_executor(self._pool, path.stat)
        except FileNotFoundError:
            return None
        return StoredObject(st.st_size, path)

    async def read(
        self, account_id: str, kind: str, object_id: str, start: int, end: int
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        path = self._path(account_id, kind, object_id)
        f = await loop.run_in_executor(self._pool, path.open, "rb")
        try:
            await loop.run_in_executor(self._pool, f.seek, start)
            remaining = end - start
            while remaining > 0:
                data = await loop.run_in_executor(self._pool, f.read, min(READ_BLOCK, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            # If the handler was cancelled, a read may still be running on
            # another pool thread: BufferedReader.close takes the same lock
            # as read, so the descriptor is closed only after that read ends
            # (never under it, where its number could be handed out again).
            await loop.run_in_executor(self._pool, f.close)

    async def delete(self, account_id: str, kind: str, object_id: str) -> None:
        path = self._path(account_id, kind, object_id)
        await asyncio.get_running_loop().run_in_executor(self._pool, lambda: path.unlink(missing_ok=True))

    async def delete_account(self, account_id: str) -> None:
        path = self._root / account_id
        await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: shutil.rmtree(path, ignore_errors=True)
        )

    async def iter_objects(self, account_id: str) -> AsyncIterator[tuple[str, str]]:
        def scan() -> list[tuple[str, str]]:
            base = self._root / account_id
            return sorted(
                (p.parent.parent.name, p.name)
                for p in base.glob("*/*/*")
                if p.parent.parent.name != TMP and p.is_file()
            )

        for item in await asyncio.get_running_loop().run_in_executor(self._pool, scan):
            yield item

    async def iter_accounts(self) -> AsyncIterator[str]:
        def scan() -> list[str]:
            return sorted(p.name for p in self._root.iterdir() if p.is_dir())

        for account in await asyncio.get_running_loop().run_in_executor(self._pool, scan):
            yield account

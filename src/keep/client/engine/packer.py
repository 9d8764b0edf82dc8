"""Packs blobs and uploads them, spreading data blobs over several open packs.

Data blobs go to one of OPEN_PACKS open packs chosen at random, so a pack's
padded size is the sum of an unpredictable mix of chunks and never a run of one
file's chunk lengths (docs/threat-model.md). Tree blobs go to their own pack
lane so that listing and restore planning fetch only small packs. A pack is
closed at PACK_TARGET bytes, padded, and uploaded in the background; its TOC
entries join the index only once the upload has succeeded. Index objects are
written every INDEX_EVERY packs or INDEX_BLOBS blobs and at the end, so an
interrupted backup loses at most that much indexing — and `Repository.reindex_orphan_packs`
recovers even those.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from keep.client.engine.repository import Repository
from keep.protocol.blob import BlobType
from keep.protocol.compression import BlobCompressor, Codec
from keep.protocol.envelope import ObjectCipher, ObjectKind
from keep.protocol.index import IndexedPack
from keep.protocol.limits import OPEN_PACKS, PACK_MIN_PADDED, PACK_TARGET, MiB
from keep.protocol.pack import PackReader, PackWriter

INDEX_EVERY = 32  # packs per index object (~512 MiB of data)...
# ...or fewer once they hold this many blobs: encoding one index of 100,000
# small files' blobs at the end of a backup took ~30 MiB more peak memory.
INDEX_BLOBS = 25_000
PACK_BLOBS_MAX = 20_000  # close a pack early when it holds this many blobs
QUEUE_MAX = 8 * MiB  # blob bytes waiting for the packer thread
HANDOFF_BYTES = 1 * MiB  # the engine hands blobs over in batches of this size...
HANDOFF_ITEMS = 512  # ...or this many blobs, whichever comes first


@dataclass
class PackerStats:
    packs: int = 0
    blobs: int = 0
    bytes_raw: int = 0
    bytes_stored: int = 0  # sealed, before padding
    bytes_uploaded: int = 0  # padded pack sizes


class _Item(NamedTuple):
    blob_type: BlobType
    blob_id: bytes
    codec: Codec
    payload: bytes | memoryview
    raw: int


class _Open:
    """An open pack, spooled to an unlinked temp file as it is sealed (as
    restic does), so open packs and uploads do not sit in memory."""

    __slots__ = ("hash", "salt", "spool", "writer")

    def __init__(self, writer: PackWriter, salt: bytes, spool_dir: Path) -> None:
        self.writer = writer
        self.salt = salt
        self.spool: BinaryIO = tempfile.TemporaryFile(dir=spool_dir, prefix="pack-")  # noqa: SIM115 — closed by the upload
        self.hash = hashlib.sha256()
        self.write(writer.header)

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.spool.write(data)

    def close(self) -> None:
        self.spool.close()


class Packer:
    """Seals and uploads blobs on its own thread.

    The engine thread calls `add` (dedup check, then hand-off) and `flush`; a
    packer thread seals blobs into packs, finishes, hashes and uploads them —
    AES and SHA-256 release the GIL, so this runs beside reading, chunking and
    compressing. The hand-off queue is bounded by QUEUE_MAX bytes. An upload
    error is raised to the engine at its next `add` or at `flush`.
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.stats = PackerStats()
        self._data: list[_Open] = []
        self._tree: _Open | None = None
        self._pending: set[bytes] = set()  # blob ids handed over but not yet indexed
        self._uploads: list[tuple[Future[str], IndexedPack, int]] = []
        self._unsaved: list[IndexedPack] = []
        self._unsaved_blobs = 0
        self._queue: deque[_Item | None] = deque()
        self._outbox: list[_Item] = []  # engine-side batch, handed over together
        self._outbox_bytes = 0
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._aborted = False
        self._random, self._random_at = b"", 0
        self._tree_compressor = BlobCompressor()  # trees come from the engine thread, one at a time
        self._spool_dir = repo.cache_dir / "spool"
        self._spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread = threading.Thread(target=self._run, name="keep-packer", daemon=True)
        self._thread.start()

    def _new(self) -> _Open:
        salt = self.repo.salt()
        cipher = ObjectCipher.new(self.repo.keys.data, ObjectKind.PACK, self.repo.suite, salt)
        return _Open(PackWriter(cipher), salt, self._spool_dir)

    def known(self, blob_id: bytes, load_index: bool = True) -> bool:
        """Whether the blob is stored or on its way. With `load_index=False`
        only what is already known is consulted (the index is not loaded)."""
        if load_index:
            self.repo.ensure_index()
        return blob_id in self.repo.index or blob_id in self._pending

    # Engine thread ---------------------------------------------------------------
    def add(
        self,
        blob_type: BlobType,
        blob_id: bytes,
        codec: Codec,
        payload: bytes | memoryview,
        raw: int,
        check_index: bool = True,
    ) -> bool:
        """Hand the blob to the packer thread; False if it is already stored."""
        if self.known(blob_id, load_index=check_index):
            return False
        self._pending.add(blob_id)
        self._outbox.append(_Item(blob_type, blob_id, codec, payload, raw))
        self._outbox_bytes += len(payload)
        if self._outbox_bytes >= HANDOFF_BYTES or len(self._outbox) >= HANDOFF_ITEMS:
            self._hand_off()
        return True

    def add_tree(self, tree_id: bytes, data: bytes, check_index: bool = True) -> bool:
        """Compress and store a tree blob unless it is known (with
        `check_index=False` without loading the index to ask), and keep its
        plaintext in the repository's tree cache; False if it was known."""
        if self.known(tree_id, load_index=check_index):
            return False
        codec, payload = self._tree_compressor.compress(data)
        self.add(BlobType.TREE, tree_id, codec, payload, len(data), check_index=False)
        self.repo.cache_tree(tree_id, data)
        return True

    def _hand_off(self) -> None:
        """Give the packer thread everything in the outbox, in one hand-off
        (one lock round and at most one wake-up per batch of blobs)."""
        if not self._outbox:
            return
        items, size = self._outbox, self._outbox_bytes
        self._outbox, self._outbox_bytes = [], 0
        with self._cond:
            while self._queued_bytes + size > QUEUE_MAX and self._queue and self._error is None:
                self._cond.wait()
            self._raise_error()
            was_empty = not self._queue
            self._queue.extend(items)
            self._queued_bytes += size
            if was_empty:  # the packer may be waiting for work
                self._cond.notify_all()

    def flush(self) -> None:
        """Close every open pack, wait for all uploads and write the index.
        After this, every added blob is stored and indexed."""
        self._hand_off()
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()
        self._thread.join()
        self._raise_error()

    def abort(self) -> None:
        """Stop the packer thread without finishing open packs (the engine
        failed; nothing half-done becomes visible: unfinished packs are never
        uploaded, uploaded ones are re-indexed by the next backup)."""
        with self._cond:
            self._aborted = True
            self._queue.clear()
            self._queue.append(None)
            self._cond.notify_all()
        self._thread.join(timeout=60)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    # Packer thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                # Take everything queued in one go: one wake-up per batch, not
                # per blob (per-blob hand-offs cost ~60 µs of futex traffic
                # for every small file).
                with self._cond:
                    while not self._queue:
                        self._cond.wait()
                    batch = list(self._queue)
                    self._queue.clear()
                for item in batch:
                    if item is None:
                        if self._aborted:
                            for pack in [*self._data, *([self._tree] if self._tree else [])]:
                                pack.close()
                        else:
                            self._finish()
                        return
                    self._seal(item)
                with self._cond:
                    self._queued_bytes -= sum(len(i.payload) for i in batch if i is not None)
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 — handed to the engine thread
            with self._cond:
                self._error = exc
                self._queue.clear()
                self._cond.notify_all()

    def _seal(self, item: _Item) -> None:
        if item.blob_type is BlobType.TREE:
            if self._tree is None:
                self._tree = self._new()
            target = self._tree
        else:
            if len(self._data) < OPEN_PACKS:
                self._data.append(self._new())
            target = self._data[self._random_below(len(self._data))]
        target.write(target.writer.add(item.blob_type, item.blob_id, item.codec, item.payload, item.raw))
        self.stats.blobs += 1
        self.stats.bytes_raw += item.raw
        self.stats.bytes_stored += len(item.payload)
        if target.writer.size >= PACK_TARGET or target.writer.blob_count >= PACK_BLOBS_MAX:
            self._close(target)

    def _random_below(self, n: int) -> int:
        """Uniform in [0, n), n <= 256, from os.urandom drawn 4 KiB at a time
        (one getrandom call per blob cost more than sealing a small one)."""
        limit = 256 - 256 % n
        while True:
            if self._random_at >= len(self._random):
                self._random, self._random_at = os.urandom(4096), 0
            byte = self._random[self._random_at]
            self._random_at += 1
            if byte < limit:
                return byte % n

    def _close(self, pack: _Open) -> None:
        if pack is self._tree:
            self._tree = None
        else:
            self._data.remove(pack)
        if pack.writer.blob_count == 0:
            pack.close()
            return
        pack.write(pack.writer.finish(PACK_MIN_PADDED))
        size = pack.spool.tell()
        digest = pack.hash.digest()
        future = self.repo.remote.put_file_async("pack", pack.spool, size, digest.hex())
        self.stats.packs += 1
        self.stats.bytes_uploaded += size
        indexed = IndexedPack(digest, self.repo.suite, pack.salt, pack.writer.entries)
        self._uploads.append((future, indexed, size))
        self._collect(block=False)

    def _collect(self, block: bool) -> None:
        """Move finished uploads into the index; raise the first upload error."""
        still = []
        for future, pack, size in self._uploads:
            if block or future.done():
                future.result()
                self.repo.add_pack(pack, size)
                self._pending.difference_update(e.blob_id for e in pack.entries)
                self._unsaved.append(pack)
                self._unsaved_blobs += len(pack.entries)
                if len(self._unsaved) >= INDEX_EVERY or self._unsaved_blobs >= INDEX_BLOBS:
                    self._save_index()
            else:
                still.append((future, pack, size))
        self._uploads = still

    def _save_index(self) -> None:
        if self._unsaved:
            self.repo.save_index(self._unsaved)
            self._unsaved, self._unsaved_blobs = [], 0

    def _finish(self) -> None:
        leftovers = list(self._data)
        if (
            len(leftovers) > 1
            and sum(p.writer.size for p in leftovers) < PACK_TARGET
            and sum(p.writer.blob_count for p in leftovers) <= PACK_BLOBS_MAX
        ):
            # A small tail: one pack instead of several tiny padded ones
            # (within the same limits as any other pack).
            self._data = [self._merge(leftovers)]
        for pack in list(self._data):
            self._close(pack)
        if self._tree is not None:
            self._close(self._tree)
        self._collect(block=True)
        self._save_index()

    def _merge(self, packs: list[_Open]) -> _Open:
        """Re-seal the blobs of several open packs into one (they were never
        uploaded, so this leaks nothing)."""
        merged = self._new()
        for pack in packs:
            pack.write(pack.writer.finish(0))
            pack.spool.seek(0)
            data = pack.spool.read()
            pack.close()
            reader = PackReader.open(self.repo.keys.data, data)
            for entry in reader.entries:
                sealed = memoryview(data)[entry.offset : entry.offset + entry.length]
                payload = reader.cipher.open(entry.frame, sealed, entry.ad())
                merged.write(
                    merged.writer.add(entry.blob_type, entry.blob_id, entry.codec, payload, entry.raw_length)
                )
        return merged

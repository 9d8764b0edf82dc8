"""Packs blobs and uploads them, spreading data blobs over several open packs.

Data blobs go to one of OPEN_PACKS open packs chosen at random, so a pack's
padded size is the sum of an unpredictable mix of chunks and never a run of one
file's chunk lengths (docs/threat-model.md). Tree blobs go to their own pack
lane so that listing and restore planning fetch only small packs. A pack is
closed past PACK_TARGET bytes where padding it wastes little, padded, and
uploaded in the background; its TOC entries join the index only once the
upload has succeeded. Index objects are written every INDEX_EVERY packs or
INDEX_BLOBS blobs and at the end, so an interrupted backup loses at most
that much indexing — and `Repository.reindex_orphan_packs` recovers even those.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from keep.client.engine.repository import Repository
from keep.protocol.blob import BlobType
from keep.protocol.compression import BlobCompressor, Codec
from keep.protocol.envelope import ObjectCipher, ObjectKind
from keep.protocol.index import IndexedPack
from keep.protocol.limits import OPEN_PACKS, PACK_MIN_PADDED, PACK_TARGET, KiB
from keep.protocol.pack import PackReader, PackWriter

INDEX_EVERY = 32  # packs per index object (~512 MiB of data)...
# ...or fewer once they hold this many blobs: encoding one index of 100,000
# small files' blobs at the end of a backup took ~30 MiB more peak memory.
INDEX_BLOBS = 25_000
PACK_BLOBS_MAX = 20_000  # close a pack early when it holds this many blobs
# A pack past PACK_TARGET takes more blobs, up to PACK_STRETCH more bytes,
# until closing it would pad it by at most PAD_SLACK: PADMÉ pads a pack of
# 16–32 MiB to a multiple of 512 KiB, and closed at the first blob past the
# target it padded ~256 KiB on average (closing later saved 6.8 of the
# 15.3 MB keep stored beyond restic on the 1 GB corpus).
PACK_STRETCH = PACK_TARGET // 2
PAD_SLACK = 64 * KiB
SPOOL_WRITE = 1 << 20  # sealed bytes gathered per write to a pack's spool file...
SPOOL_PARTS = 512  # ...or this many frames (writev takes at most 1024)


@dataclass
class PackerStats:
    packs: int = 0
    blobs: int = 0
    bytes_raw: int = 0
    bytes_stored: int = 0  # sealed, before padding
    bytes_uploaded: int = 0  # padded pack sizes


class _Open:
    """An open pack, spooled to an unlinked temp file as it is sealed (as
    restic does), so open packs and uploads do not sit in memory. Sealed
    frames are gathered and written SPOOL_WRITE bytes at a time (one write
    per small file's blob cost a system call each)."""

    __slots__ = ("_parts", "_parts_bytes", "salt", "size", "spool", "writer")

    def __init__(self, writer: PackWriter, salt: bytes, spool_dir: Path) -> None:
        self.writer = writer
        self.salt = salt
        self.spool: BinaryIO = tempfile.TemporaryFile(dir=spool_dir, prefix="pack-", buffering=0)  # noqa: SIM115 — closed by the upload
        self.size = 0
        self._parts: list[bytes] = []
        self._parts_bytes = 0
        self.write(writer.header)

    def write(self, data: bytes) -> None:
        self._parts.append(data)
        self._parts_bytes += len(data)
        self.size += len(data)
        if self._parts_bytes >= SPOOL_WRITE or len(self._parts) >= SPOOL_PARTS:
            self.drain()

    def drain(self) -> None:
        """Write the gathered frames to the spool file with one writev (no
        joined copy: a fresh megabyte per write left the heap fragmented)."""
        parts = self._parts
        self._parts, self._parts_bytes = [], 0
        fd = self.spool.fileno()
        while parts:
            written = os.writev(fd, parts)
            while parts and written >= len(parts[0]):  # a short write: go on after it
                written -= len(parts[0])
                parts.pop(0)
            if parts and written:
                parts[0] = parts[0][written:]

    def close(self) -> None:
        self.spool.close()


class Packer:
    """Seals blobs into packs on the calling (engine) thread; the upload
    pool hashes and uploads the closed packs.

    Sealing is not given a thread of its own: it would compete with the
    engine for Python's global interpreter lock, and the engine gives that
    lock up at every system call (lstat, open, read, fstat, close, listxattr
    for each file), then waits for the other thread to let go of it. With a
    packer thread, 100,000 small files took 6.6 s (median of 6); sealing on
    the engine thread, spooling 1 MiB per writev and hashing packs on the
    upload threads, 5.4 s (a 1 GB corpus 3.18 against 3.23 s, within
    noise). AES-GCM and the big blobs' zstd run outside the lock. An upload
    error is raised at the next pack closed or at `flush`.
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.stats = PackerStats()
        self._data: list[_Open] = []
        self._tree: _Open | None = None
        self._pending: set[bytes] = set()  # blob ids sealed but not yet indexed
        self._uploads: list[tuple[Future[str], _Open]] = []
        self._unsaved: list[IndexedPack] = []
        self._unsaved_blobs = 0
        self._random, self._random_at = b"", 0
        self._tree_compressor = BlobCompressor()  # trees come from the engine thread, one at a time
        self._spool_dir = repo.cache_dir / "spool"
        self._spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

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

    def add(
        self,
        blob_type: BlobType,
        blob_id: bytes,
        codec: Codec,
        payload: bytes | memoryview,
        raw: int,
        check_index: bool = True,
    ) -> bool:
        """Seal the blob into an open pack; False if it is already stored."""
        if self.known(blob_id, load_index=check_index):
            return False
        self.add_unknown(blob_type, blob_id, codec, payload, raw)
        return True

    def add_unknown(
        self, blob_type: BlobType, blob_id: bytes, codec: Codec, payload: bytes | memoryview, raw: int
    ) -> None:
        """Seal a blob that `known` has just called new, on this thread with
        nothing added since (the small-file path): `add` without asking twice."""
        self._pending.add(blob_id)
        self._seal(blob_type, blob_id, codec, payload, raw)

    def add_tree(
        self,
        tree_id: bytes,
        data: bytes,
        check_index: bool = True,
        cache: Callable[[bytes, bytes], None] | None = None,
    ) -> bool:
        """Compress and store a tree blob unless it is known (with
        `check_index=False` without loading the index to ask), and keep its
        plaintext in the repository's tree cache (through `cache` if given);
        False if it was known."""
        if self.known(tree_id, load_index=check_index):
            return False
        codec, payload = self._tree_compressor.compress(data)
        self.add(BlobType.TREE, tree_id, codec, payload, len(data), check_index=False)
        (cache or self.repo.cache_tree)(tree_id, data)
        return True

    def flush(self) -> None:
        """Close every open pack, wait for all uploads and write the index.
        After this, every added blob is stored and indexed."""
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

    def abort(self) -> None:
        """Drop the open packs without finishing them (the engine failed;
        nothing half-done becomes visible: unfinished packs are never
        uploaded, uploaded ones are re-indexed by the next backup)."""
        for pack in [*self._data, *([self._tree] if self._tree else [])]:
            pack.close()
        self._data, self._tree = [], None

    def _seal(
        self, blob_type: BlobType, blob_id: bytes, codec: Codec, payload: bytes | memoryview, raw: int
    ) -> None:
        if blob_type is BlobType.TREE:
            if self._tree is None:
                self._tree = self._new()
            target = self._tree
        else:
            if len(self._data) < OPEN_PACKS:
                self._data.append(self._new())
            target = self._data[self._random_below(len(self._data))]
        target.write(target.writer.add(blob_type, blob_id, codec, payload, raw))
        self.stats.blobs += 1
        self.stats.bytes_raw += raw
        self.stats.bytes_stored += len(payload)
        writer = target.writer
        if writer.blob_count >= PACK_BLOBS_MAX or (
            writer.size >= PACK_TARGET
            and (writer.size >= PACK_TARGET + PACK_STRETCH or writer.padding(PACK_MIN_PADDED) <= PAD_SLACK)
        ):
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
        pack.drain()
        future = self.repo.remote.put_file_async("pack", pack.spool, pack.size)
        self.stats.packs += 1
        self.stats.bytes_uploaded += pack.size
        self._uploads.append((future, pack))
        self._collect(block=False)

    def _collect(self, block: bool) -> None:
        """Move finished uploads into the index; raise the first upload error."""
        still = []
        for future, pack in self._uploads:
            if block or future.done():
                pack_id = bytes.fromhex(future.result())
                indexed = IndexedPack(pack_id, self.repo.suite, pack.salt, pack.writer.entries)
                self.repo.add_pack(indexed, pack.size)
                self._pending.difference_update(e.blob_id for e in indexed.entries)
                self._unsaved.append(indexed)
                self._unsaved_blobs += len(indexed.entries)
                if len(self._unsaved) >= INDEX_EVERY or self._unsaved_blobs >= INDEX_BLOBS:
                    self._save_index()
            else:
                still.append((future, pack))
        self._uploads = still

    def _save_index(self) -> None:
        if self._unsaved:
            self.repo.save_index(self._unsaved)
            self._unsaved, self._unsaved_blobs = [], 0

    def _merge(self, packs: list[_Open]) -> _Open:
        """Re-seal the blobs of several open packs into one (they were never
        uploaded, so this leaks nothing)."""
        merged = self._new()
        for pack in packs:
            pack.write(pack.writer.finish(0))
            pack.drain()
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

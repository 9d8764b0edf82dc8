"""The repository as the engine sees it: keys + the remote + the index.

Owns: loading the index (through the local cache) with prune's condemned
packs kept apart (readable, never deduplicated against), reading blobs by id
with padded range reads, listing and loading snapshots, writing index and snapshot
objects, and re-indexing packs that a crashed backup uploaded but never
indexed (so a resumed backup does not upload them again).

Range reads are widened to RANGE_ALIGN boundaries so the server never sees a
request that equals one blob's frame (docs/threat-model.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from keep.client.device.state import write_private
from keep.client.engine import collector
from keep.client.engine.blob_index import BlobIndex, PackTable, PackView, Place, Readable
from keep.client.engine.cache_file import read as read_cached
from keep.client.engine.cache_file import write_new
from keep.client.engine.locations import Location, aligned
from keep.client.remote import ObjectInfo, RangeReader, Remote
from keep.protocol import msgcodec
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.compression import BlobDecompressor
from keep.protocol.envelope import (
    FOOTER_FRAME,
    HEADER,
    Header,
    ObjectCipher,
    ObjectKind,
    Role,
    Suite,
    frame_ad,
)
from keep.protocol.errors import FormatError, IntegrityError, KeepError, NotFoundError, PermissionDeniedError
from keep.protocol.index import Index, IndexedPack
from keep.protocol.keys import OwnerSigningKey, RepositoryKeys
from keep.protocol.limits import OBJECT_MAX, TREE_RAW_MAX
from keep.protocol.object_id import is_named_by
from keep.protocol.pack import FOOTER, FOOTER_SEALED_SIZE, open_blob, parse_toc
from keep.protocol.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    id: str
    snapshot: Snapshot
    arrived: int  # server-recorded arrival time


SEEN_FILE = "seen-snapshots"
TREE_PREFETCH = 4  # trees read at once in the background (prefetch_trees)
TREE_PREFETCH_MAX = 256  # prefetched trees held before anyone asks for them


class SeenSnapshots:
    """Every snapshot id this machine wrote or saw listed, in
    `$KEEP_HOME/seen-snapshots` (one hex id per line, mode 0600). It is not
    a cache: an id leaves it only when the owner's signed `keep forget`
    explains its absence. A machine without the file starts from the
    snapshots in its cache (what earlier versions remembered). Updates take
    an exclusive `flock`, so a backup and a listing in two processes do not
    undo each other's additions."""

    def __init__(self, path: Path, legacy_cache: Path) -> None:
        self.path = path
        self._legacy = legacy_cache

    @property
    def started(self) -> bool:
        """Whether the record exists (else it is read from the old cache)."""
        return self.path.exists()

    def ids(self) -> set[str]:
        try:
            return {line for line in self.path.read_text().split() if len(line) == 64}
        except FileNotFoundError:
            if not self._legacy.is_dir():
                return set()
            return {p.name for p in self._legacy.iterdir() if len(p.name) == 64}

    def update(self, add: Iterable[str], remove: Iterable[str] = ()) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(
            self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            old = self.ids()
            new = (old | set(add)) - set(remove)
            if new != old or not self.path.exists():
                write_private(self.path, "".join(f"{i}\n" for i in sorted(new)).encode(), sync=True)
        finally:
            os.close(fd)  # releases the lock


class Repository:
    def __init__(self, remote: Remote, keys: RepositoryKeys, cache_dir: Path, suite: Suite) -> None:
        self.remote = remote
        self.keys = keys
        self.suite = suite
        self.cache_dir = cache_dir
        # What the indexes say, changed only by this class (load_index,
        # add_pack, replace_packs, drop_location); everyone else reads it
        # through the read-only views below.
        # Packs are numbered in the order they are indexed; the two blob
        # indexes hold a pack's number and the entry's (blob_index.py).
        self._tables: list[PackTable] = []
        self._pack_numbers: dict[str, int] = {}  # every pack a current index names -> its newest table
        self._index = BlobIndex(self._tables)  # live blobs: what a backup may deduplicate against
        self._condemned_index = BlobIndex(self._tables)  # blobs found only in condemned packs
        self._readable = Readable(self._index, self._condemned_index)
        self._packs: Mapping[str, IndexedPack] = PackView(self._tables, self._pack_numbers)
        self._replaced: dict[str, IndexedPack] | None = None  # the packs' own TOCs, once prune read them
        self._condemned: dict[str, int] = {}  # condemned pack -> arrival of the index condemning it
        self._pack_sizes: dict[str, int] = {}
        self._other_copies: dict[bytes, list[Location]] = {}  # blobs some index lists in several packs
        self.listed_index_ids: tuple[str, ...] = ()  # every index object listed, superseded ones too
        self.forgotten: frozenset[str] = frozenset()  # snapshots `keep forget` removed (owner-signed)
        self.unsigned_control: tuple[str, ...] = ()  # index objects claiming owner authority without it
        self.legacy_forgotten: frozenset[str] = frozenset()  # named by version 2 index objects (unsigned)
        self.owner_key: OwnerSigningKey | None = None  # set once the owner has logged in
        self._seen = SeenSnapshots(cache_dir.parent / SEEN_FILE, cache_dir / "snapshot")
        self._tree_cache = os.fspath(cache_dir / "trees")
        self._local = threading.local()
        self._index_lock = threading.Lock()
        self._index_ready = False
        self._prefetched: dict[bytes, Future[bytes]] = {}  # prefetch_trees
        self._prefetch_next: deque[bytes] = deque()  # named by the walk, not yet fetched
        self._prefetch_pool: ThreadPoolExecutor | None = None
        self._prefetch_lock = threading.Lock()

    # Read-only views of the index ---------------------------------------------
    @property
    def index(self) -> Mapping[bytes, Location]:
        """Live blobs and where each is: what a backup deduplicates against."""
        return self._index

    @property
    def readable(self) -> Mapping[bytes, Location]:
        """Every blob that can be read: live, else from a condemned pack."""
        return self._readable

    @property
    def packs(self) -> Mapping[str, IndexedPack]:
        return self._packs

    @property
    def condemned(self) -> Mapping[str, int]:
        """Condemned pack -> when the index condemning it arrived."""
        return self._condemned

    @property
    def pack_sizes(self) -> Mapping[str, int]:
        """Every pack the server lists (or this run uploaded), by id."""
        return self._pack_sizes

    @property
    def other_copies(self) -> Mapping[bytes, list[Location]]:
        """Blobs some index places in more than one pack: the places after the first."""
        return self._other_copies

    def salt(self) -> bytes:
        return os.urandom(32)

    # Index -----------------------------------------------------------------
    def ensure_index(self) -> None:
        """Load the index (and re-index orphan packs) the first time anyone
        asks; a backup in which nothing changed never needs it."""
        if self._index_ready:
            return
        with self._index_lock:
            if not self._index_ready:
                self.load_index()
                self.reindex_orphan_packs()

    def load_index(self, skip: Collection[str] = ()) -> None:
        """Load every index object (but those in `skip`), from the cache where possible."""
        with collector.paused():  # an object per pack and per blob id, kept to the end
            self._load_index(skip)

    def _load_index(self, skip: Collection[str]) -> None:
        for attempt in (1, 2):
            listed = sorted(
                (o for o in self.remote.list_objects("index") if o.id not in skip), key=lambda o: o.id
            )
            try:
                loaded = self._cached_objects("index", listed)
                break
            except NotFoundError:
                if attempt == 2:  # a prune deleted a superseded index after we listed it
                    raise
        # Each object is decoded, checked and packed in turn (PackTable): as
        # parsed objects, all of them at once, they cost ~300 bytes a blob.
        indexes: dict[str, tuple[ObjectInfo, Index, list[PackTable]]] = {}
        owner: set[str] = set()  # only the owner may take anything away (below)
        loaded.reverse()
        while loaded:
            info, data = loaded.pop()
            try:
                idx = Index.open(self.keys.data, data)
            except (FormatError, IntegrityError):
                (self.cache_dir / "index" / info.id).unlink(missing_ok=True)
                raise
            if idx.has_control and idx.owner_signed(self.keys.owner):
                owner.add(info.id)
            indexes[info.id] = (info, dataclasses.replace(idx, packs=()), [PackTable(p) for p in idx.packs])
            del idx, data
        # The supersede, condemn and forget lists of an object count only if
        # the owner signed it.
        self.unsigned_control = tuple(
            sorted(k for k, (_, idx, _) in indexes.items() if idx.has_control and k not in owner)
        )
        superseded = {s.hex() for k in owner for s in indexes[k][1].supersedes}
        current = {k: v for k, v in indexes.items() if k not in superseded}
        self._index.clear()
        self._condemned_index.clear()
        self._other_copies.clear()
        self._tables.clear()
        self._pack_numbers.clear()
        self._packs, self._replaced = PackView(self._tables, self._pack_numbers), None
        self._condemned.clear()
        for key, (info, idx, _) in current.items():
            for pack_id in idx.condemned if key in owner else ():
                self._condemned[pack_id.hex()] = max(info.created, self._condemned.get(pack_id.hex(), 0))
        for _, _, tables in current.values():
            for table in tables:
                self._add_table(table, table.blob_ids())
        self.forgotten = frozenset(
            f.hex() for key, (_, idx, _) in current.items() if key in owner for f in idx.forgotten
        )
        # What version 2 objects (before owner signatures) said was forgotten:
        # trusted only once, when a machine first starts its seen-snapshots
        # record from its old cache (SeenSnapshots), as the old code did.
        self.legacy_forgotten = frozenset(
            f.hex() for _, idx, _ in current.values() if idx.version == 2 for f in idx.forgotten
        )
        self.listed_index_ids = tuple(indexes)
        self._pack_sizes = {o.id: o.size for o in self.remote.list_objects("pack")}
        self._index_ready = True

    def _cached_objects(self, kind: str, listed: list[ObjectInfo]) -> list[tuple[ObjectInfo, bytes]]:
        """The bytes of the `listed` objects of an immutable kind (index,
        snapshot), from `cache/<kind>` where a copy still hashes to its name,
        else downloaded and cached. Copies of objects no longer listed go."""
        cache = self.cache_dir / kind
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in {p.name for p in cache.iterdir()} - {info.id for info in listed}:
            (cache / stale).unlink(missing_ok=True)
        out = []
        for info in listed:
            path = cache / info.id
            data = path.read_bytes() if path.exists() else b""
            if not is_named_by(data, info.id):
                data = self.remote.get_object(kind, info.id)
                write_private(path, data)
            out.append((info, data))
        return out

    def add_pack(self, pack: IndexedPack, size: int | None = None) -> None:
        """Index a pack's blobs (from an index object, a TOC, or an upload
        of this run, which gives its `size`)."""
        if self._replaced is not None:
            self._replaced[pack.pack_id.hex()] = pack
        self._add_table(PackTable(pack), [e.blob_id for e in pack.entries], size)

    def _add_table(self, table: PackTable, blob_ids: list[bytes], size: int | None = None) -> None:
        """Index a pack's blobs; `blob_ids` are its entries' ids, in order."""
        pack_id = table.pack_id
        number = len(self._tables)
        self._tables.append(table)
        self._pack_numbers[pack_id] = number
        if size is not None:
            self._pack_sizes[pack_id] = size
        live, condemned = self._index, self._condemned_index
        if pack_id in self._condemned:
            for at, blob in enumerate(blob_ids):
                if blob not in live:
                    condemned.setdefault(blob, number, at)
            return
        tables = self._tables
        for at, blob in enumerate(blob_ids):
            first = live.setdefault(blob, number, at)
            if first != number and tables[first].pack_id != pack_id:
                # Another copy (a re-upload, or a claim planted with a device
                # credential): kept so that a copy failing verification is
                # not the end of the blob.
                self._other_copies.setdefault(blob, []).append(table.location(at, blob))
        if len(condemned):  # a blob also in a live pack is live
            for blob in blob_ids:
                condemned.pop(blob)

    def replace_packs(self, contents: Mapping[str, IndexedPack]) -> None:
        """Take what each pack holds from `contents` — the packs' own TOCs,
        which prune decides by — instead of what the indexes claimed."""
        self._replaced = dict(contents)
        self._packs = self._replaced

    def drop_location(self, blob_id: bytes) -> None:
        """Forget where the index says a live blob is, because a fresh copy is
        about to be stored (prune's repack): the new place becomes the first,
        and the packer does not take the blob for stored already."""
        self._index.pop(blob_id)

    def locate(self, blob_id: bytes) -> Location | None:
        """Where a blob can be read: a live pack, else a condemned one."""
        return self._readable.get(blob_id)

    def place(self, blob_id: bytes) -> Place | None:
        """Where `locate` would say, as the index holds it (no Location built)."""
        return self._readable.place(blob_id)

    def raw_length(self, blob_id: bytes) -> int | None:
        """The blob's plaintext length, if it is indexed (live or condemned)."""
        found = self.place(blob_id)
        return None if found is None else found[0].span(found[1])[2]

    def locations(self, blob_id: bytes) -> list[Location]:
        """Every place an index says the blob is, the one `locate` gives first."""
        first = self.locate(blob_id)
        return [] if first is None else [first, *self._other_copies.get(blob_id, ())]

    def read_located(self, loc: Location) -> bytes:
        """One blob from one place: a ranged read, authenticated and re-hashed."""
        size = self.pack_sizes.get(loc.pack_id, loc.entry.offset + loc.entry.length)
        start, end = aligned(loc.entry.offset, loc.entry.offset + loc.entry.length, size)
        data = self.remote.get_range("pack", loc.pack_id, start, end)
        rel = loc.entry.offset - start
        return self.open_located(loc, memoryview(data)[rel : rel + loc.entry.length])

    def save_index(
        self,
        packs: list[IndexedPack],
        supersedes: Iterable[str] = (),
        condemned: Iterable[str] = (),
        forgotten: Iterable[str] = (),
    ) -> str:
        index = Index(
            tuple(packs),
            tuple(map(bytes.fromhex, supersedes)),
            tuple(map(bytes.fromhex, condemned)),
            tuple(map(bytes.fromhex, sorted(forgotten))),
        )
        if index.has_control:
            if self.owner_key is None:
                raise PermissionDeniedError("only the owner may forget or prune: give the password")
            index = index.signed(self.owner_key)
        data = index.seal(self.keys.data, self.suite, self.salt())
        object_id = self.remote.put_object("index", data)
        write_private(self.cache_dir / "index" / object_id, data)
        return object_id

    def reindex_orphan_packs(self, save: bool = True) -> int:
        """Index packs that are on the server but in no index (a backup was
        interrupted after uploading them, or an index object was lost).
        Condemned packs are not orphans. With `save`, the recovered entries
        are written as a new index object; a restore keeps them in memory.
        Returns how many were recovered."""
        orphans = [p for p in self.pack_sizes if p not in self.packs and p not in self.condemned]
        recovered = []
        for pack_id in orphans:
            try:
                recovered.append(self.read_pack_toc(pack_id, self.pack_sizes[pack_id]))
            except (FormatError, IntegrityError):
                continue  # not ours or damaged: `keep check` reports it
        for pack in recovered:
            self.add_pack(pack)
        if recovered and save:
            self.save_index(recovered)
        return len(recovered)

    def pack_contents(self, pack_id: str, size: int) -> IndexedPack:
        """A pack's TOC as the pack itself states it (authenticated), through
        a local cache: pack ids are hashes of their bytes, so a TOC read once
        stays true. What prune decides by — never an index's claim."""
        path = self.cache_dir / "toc" / pack_id[:2] / pack_id
        try:
            return IndexedPack.from_list(msgcodec.unpack(path.read_bytes(), OBJECT_MAX))
        except (OSError, FormatError, ValueError):
            pass
        pack = self.read_pack_toc(pack_id, size)
        write_private(path, msgcodec.pack(pack.to_list()))
        return pack

    def read_pack_toc(self, pack_id: str, size: int) -> IndexedPack:
        if size < HEADER.size + FOOTER_SEALED_SIZE:
            raise FormatError("pack is too small")
        header = Header.from_bytes(self.remote.get_range("pack", pack_id, 0, HEADER.size))
        cipher = ObjectCipher(self.keys.data, header)
        tail = self.remote.get_range("pack", pack_id, size - FOOTER_SEALED_SIZE, size)
        footer = cipher.open(FOOTER_FRAME, tail, frame_ad(ObjectKind.PACK, Role.FOOTER, FOOTER_FRAME))
        toc_offset, toc_length, count = FOOTER.unpack(footer)
        if toc_offset + toc_length + FOOTER_SEALED_SIZE != size:
            raise FormatError("pack footer is inconsistent")
        sealed = self.remote.get_range("pack", pack_id, toc_offset, toc_offset + toc_length)
        entries = parse_toc(cipher, sealed, toc_offset, count)
        return IndexedPack(bytes.fromhex(pack_id), header.suite, header.salt, entries)

    # Blobs -------------------------------------------------------------------
    def _decompressor(self) -> BlobDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = BlobDecompressor()
        return d

    def pack_cipher(self, loc: Location) -> ObjectCipher:
        """The cipher of the pack `loc` is in (one key derivation per pack)."""
        return ObjectCipher.new(self.keys.data, ObjectKind.PACK, loc.suite, loc.salt)

    def open_located(
        self, loc: Location, sealed: bytes | memoryview, cipher: ObjectCipher | None = None
    ) -> bytes:
        """Authenticate, decompress and re-hash one blob. `cipher`, if given,
        is `pack_cipher` of a location in the same pack: its key comes from
        the pack's salt, so every blob of a pack shares it."""
        if cipher is None or cipher.header.salt != loc.salt or cipher.header.suite is not loc.suite:
            cipher = self.pack_cipher(loc)
        return open_blob(cipher, loc.entry, sealed, self.keys.id, self._decompressor())

    def open_range(
        self, reader: RangeReader, places: Sequence[Location]
    ) -> Iterator[tuple[Location, bytes | IntegrityError | FormatError]]:
        """Each blob of `places` (in the pack's order) off `reader`, a range
        of their pack: read one at a time, authenticated, decompressed and
        re-hashed, with one key derivation for all of them. A blob that
        fails to open comes as its error; the rest go on. What the reader
        fails with (the server gone, the range short or missing) is raised:
        nothing after it can be read.
        A blob the index places inside the one before it (an entry planted
        with a device credential can) is read on its own."""
        cipher = self.pack_cipher(places[0])  # a range is in one pack
        for loc in places:
            if loc.entry.offset < reader.position:
                yield loc, _or_error(partial(self.read_located, loc))
                continue
            reader.skip(loc.entry.offset - reader.position)
            sealed = reader.read(loc.entry.length)  # a failure to read ends the range: raised
            yield loc, _or_error(partial(self.open_located, loc, sealed, cipher))

    def read_blob(self, blob_id: bytes) -> bytes:
        self.ensure_index()
        places = self.locations(blob_id)
        if not places:
            raise NotFoundError(f"blob {blob_id.hex()[:12]} is not in the index")
        return self._read_any(places)

    def _read_any(self, places: list[Location]) -> bytes:
        """The blob from the first place whose copy verifies: a copy that fails
        (damage, or a claim planted with a device credential) is not the end
        of the blob. The first place's error if none does."""
        try:
            return self.read_located(places[0])
        except (IntegrityError, FormatError, NotFoundError):
            for loc in places[1:]:
                try:
                    return self.read_located(loc)
                except (IntegrityError, FormatError, NotFoundError):
                    continue
            raise

    def prefetch_trees(self, tree_ids: Iterable[bytes]) -> None:
        """Have the trees a walk is about to read fetched in the background,
        TREE_PREFETCH at a time: a restore on a new machine reads one tree
        per directory, each a round trip. A depth-first walk names a
        directory's subtrees as it enters it, and needs them before what it
        named earlier, so they go to the front of the line. At most
        TREE_PREFETCH_MAX are fetched ahead of the walk; `read_tree_bytes`
        takes the read under way, and reads one that failed again itself
        (its error is raised there)."""
        with self._prefetch_lock:
            self._prefetch_next.extendleft(reversed(list(tree_ids)))
            self._prefetch_more()

    def stop_prefetch(self) -> None:
        """Drop what is still to be read ahead (the walk is over, or failed:
        nothing may keep a failing server busy after it)."""
        with self._prefetch_lock:
            self._prefetch_next.clear()
            pool, self._prefetch_pool = self._prefetch_pool, None
            self._prefetched.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _prefetch_more(self) -> None:
        while self._prefetch_next and len(self._prefetched) < TREE_PREFETCH_MAX:
            tree_id = self._prefetch_next.popleft()
            if tree_id in self._prefetched or os.path.lexists(self.tree_cache_path(tree_id)):
                continue
            if self._prefetch_pool is None:
                self._prefetch_pool = ThreadPoolExecutor(TREE_PREFETCH, thread_name_prefix="keep-trees")
            self._prefetched[tree_id] = self._prefetch_pool.submit(self._fetch_tree, tree_id)

    def read_tree_bytes(self, tree_id: bytes) -> bytes:
        """A tree blob's plaintext, through the local tree cache."""
        with self._prefetch_lock:
            pending = self._prefetched.pop(tree_id, None)
            self._prefetch_more()
        if pending is not None:
            with contextlib.suppress(KeepError, OSError, CancelledError):
                return pending.result()
        data = read_cached(self.tree_cache_path(tree_id), TREE_RAW_MAX)
        if data is not None and blob_id(self.keys.id, data) == tree_id:
            return data
        return self._fetch_tree(tree_id)

    def _fetch_tree(self, tree_id: bytes) -> bytes:
        path = Path(self.tree_cache_path(tree_id))
        self.ensure_index()  # a tree cache miss needs the index to find the tree
        places = [loc for loc in self.locations(tree_id) if loc.entry.blob_type is BlobType.TREE]
        if not places:
            raise NotFoundError(f"tree {tree_id.hex()[:12]} is not in the index")
        data = self._read_any(places)
        write_private(path, data)
        return data

    def tree_cache_path(self, tree_id: bytes) -> str:
        hexid = tree_id.hex()
        return os.path.join(self._tree_cache, hexid[:2], hexid)

    def cache_tree(self, tree_id: bytes, data: bytes) -> None:
        """Keep a tree just stored in the local cache (`cache_file`: in place,
        created exclusively; checked against its id whenever it is read)."""
        write_new(self.tree_cache_path(tree_id), data)

    # Snapshots -----------------------------------------------------------------
    def save_snapshot(self, snapshot: Snapshot) -> str:
        data = snapshot.seal(self.keys.data, self.suite, self.salt())
        object_id = self.remote.put_object("snapshot", data)
        # Remembered as soon as the server has it: it can never hide it.
        self._seen.update([object_id])
        write_private(self.cache_dir / "snapshot" / object_id, data)
        return object_id

    def snapshots(self) -> list[SnapshotInfo]:
        """All snapshots, oldest first. Refuses (IntegrityError) if a snapshot
        this machine wrote or saw before is gone and no owner-signed `keep
        forget` removed it."""
        listed = self.remote.list_objects("snapshot")
        gone = self._check_no_rollback({info.id for info in listed})
        out = [
            SnapshotInfo(info.id, Snapshot.open(self.keys.data, data), info.created)
            for info, data in self._cached_objects("snapshot", listed)
        ]
        self._seen.update((info.id for info in listed), remove=gone)
        out.sort(key=lambda s: (s.snapshot.time_ns, s.id))
        return out

    def unexplained_missing(self, listed: set[str]) -> list[str]:
        """Snapshots this machine wrote or saw that are not `listed`, and that
        no owner-signed forget list names."""
        return self._unexplained(self._seen.ids() - listed)

    def _unexplained(self, missing: set[str]) -> list[str]:
        if not missing:
            return []
        if not self._index_ready:
            self.load_index()  # the forgotten list lives in the index
        if not self._seen.started:
            missing -= self.legacy_forgotten  # the migration from the old cache (format.md §8)
        return sorted(missing - self.forgotten)

    def _check_no_rollback(self, listed: set[str]) -> set[str]:
        """The remembered snapshots no longer listed, all forgotten by the owner."""
        missing = self._seen.ids() - listed
        unexplained = self._unexplained(missing)
        if unexplained:
            raise IntegrityError(
                f"the server does not list {len(unexplained)} snapshot(s) this machine wrote or saw "
                f"({', '.join(s[:12] for s in unexplained[:3])}), and no owner-signed `keep forget` "
                "removed them: it is hiding them or serving an older state of the repository (rollback)"
            )
        return missing

    def find_snapshot(self, ref: str, candidates: Iterable[SnapshotInfo] | None = None) -> SnapshotInfo:
        snaps = list(candidates if candidates is not None else self.snapshots())
        return snaps[-1] if ref == "latest" and snaps else snapshot_by_id(ref, snaps)


def snapshot_by_id(ref: str, snapshots: list[SnapshotInfo]) -> SnapshotInfo:
    """The one snapshot whose id starts with `ref`."""
    if not snapshots:
        raise NotFoundError("the repository has no snapshots yet")
    matches = [s for s in snapshots if s.id.startswith(ref.lower())]
    if len(matches) != 1:
        raise NotFoundError(
            f"no snapshot matches {ref!r}" if not matches else f"{ref!r} matches several snapshots"
        )
    return matches[0]


def _or_error(opener: Callable[[], bytes]) -> bytes | IntegrityError | FormatError:
    """A blob opened, or why it could not be (its copy is damaged or planted)."""
    try:
        return opener()
    except (IntegrityError, FormatError) as exc:
        return exc

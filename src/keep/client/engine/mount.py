"""`keep mount`: the repository's snapshots as a read-only file system
(FUSE, through pyfuse3 and Debian's libfuse3).

    MOUNTPOINT/
      latest -> snapshots/<time>          this device's newest (as `keep restore latest`)
      snapshots/<time>/...                every snapshot by local time, YYYY-MM-DDTHH:MM:SS
      ids/<12 hex>/...                    by id
      hosts/<host>/<time>/..., latest     by the host that made it

Below a snapshot's directory lies its tree as backed up — names as raw
bytes, modes, owners, times, symlinks, FIFOs and devices, xattrs, hard links
(one inode for all names of a file) and sizes as the files had.

Every read is verified like a restore: a blob is authenticated and
re-hashed before any of its bytes are returned, and its length must be the
one the index gives; a blob that fails is an I/O error (EIO), never wrong or
missing bytes, and `on_error` is told which file. Reads ahead of a
sequential reader are fetched in the background (PREFETCH blobs, a bounded
cache of verified blobs).

The snapshots are those listed when the file system was mounted. Entries
are kept for the mount's life, so inode numbers stay stable: memory grows
with what is browsed (a few hundred bytes per entry), not with the
repository.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar, cast

import pyfuse3
import trio

from keep.client.engine.locations import RANGE_ALIGN
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.client.engine.restore_plan import RangeFetch, plan
from keep.protocol.errors import FormatError, KeepError
from keep.protocol.limits import MiB
from keep.protocol.tree import Node, NodeType, Tree

CACHE_BYTES = 64 * MiB  # verified blobs kept for readers
PREFETCH = 8  # blobs fetched ahead of a sequential reader
FETCH_THREADS = 4
TIMEOUT = 300.0  # seconds the kernel may keep names and attributes: nothing here ever changes
BLOCK = 128 * 1024
KINDS = {
    NodeType.FILE: stat.S_IFREG,
    NodeType.DIR: stat.S_IFDIR,
    NodeType.SYMLINK: stat.S_IFLNK,
    NodeType.FIFO: stat.S_IFIFO,
    NodeType.CHARDEV: stat.S_IFCHR,
    NodeType.BLOCKDEV: stat.S_IFBLK,
}

ErrorReport = Callable[[str, str], None]  # (path in the mount, what went wrong)
T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Entry:
    inode: int
    node: Node
    path: str  # inside the mount, for error reports
    snapshot: str = ""  # the snapshot it belongs to ("" for the top-level directories)
    children: dict[bytes, int] | None = None  # name -> inode, once listed or looked up
    listing: tuple[bytes, ...] | None = None  # names in order, once the directory was read


@dataclass(slots=True)
class _OpenFile:
    entry: _Entry
    blobs: tuple[bytes, ...]
    starts: list[int] = field(default_factory=list)  # offset of each blob in the file


class _Blobs:
    """Verified blobs for readers: a bounded cache, and fetches ahead. Blobs
    asked for ahead are fetched as restore fetches them: grouped into
    aligned ranges of their packs (restore_plan), one request per range,
    each blob authenticated and re-hashed; a range that fails is fetched
    again blob by blob, from any copy the index knows."""

    def __init__(self, repo: Repository, budget: int = CACHE_BYTES) -> None:
        self._repo = repo
        self._budget = budget
        self._cached: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._pending: dict[bytes, Future[bytes]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="keep-mount")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _hit(self, blob_id: bytes) -> bytes | None:
        """The cached blob, now the most recently used (the lock is held)."""
        data = self._cached.get(blob_id)
        if data is not None:
            self._cached.move_to_end(blob_id)
        return data

    def cached(self, blob_id: bytes) -> bytes | None:
        """The blob if it is in the cache (never fetches: for the event loop)."""
        with self._lock:
            return self._hit(blob_id)

    def get(self, blob_id: bytes) -> bytes:
        """The blob's verified plaintext (IntegrityError and friends if no copy verifies)."""
        with self._lock:
            data = self._hit(blob_id)
            if data is not None:
                return data
            pending = self._pending.get(blob_id)
            if pending is None:
                pending = self._pending[blob_id] = Future()
                mine = True
            else:
                mine = False
        if mine:
            self._fetch_one(blob_id)
        return pending.result()

    def prefetch(self, blob_ids: Sequence[bytes]) -> None:
        with self._lock:
            wanted = [b for b in dict.fromkeys(blob_ids) if b not in self._cached and b not in self._pending]
            for blob_id in wanted:
                self._pending[blob_id] = Future()
        if not wanted:
            return
        try:
            ranges = plan([wanted], self._repo.place, self._repo.pack_sizes)
        except KeyError:  # one is not in the index: each alone, so that one fails alone
            for blob_id in wanted:
                self._pool.submit(self._fetch_one, blob_id)
            return
        for rng in ranges:
            self._pool.submit(self._fetch_range, rng)

    def _fetch_range(self, rng: RangeFetch) -> None:
        left = {f.blob_id for f in rng.blobs}
        try:
            with self._repo.remote.range_reader(
                "pack", rng.pack_id, rng.start, rng.end, RANGE_ALIGN
            ) as reader:
                for loc, plain in self._repo.open_range(reader, [f.location for f in rng.blobs]):
                    if isinstance(plain, bytes):
                        self._done(loc.entry.blob_id, plain)
                        left.discard(loc.entry.blob_id)
        except (KeepError, OSError):
            pass  # the range could not be read: each blob alone, below
        finally:
            for blob_id in left:  # damaged or planted here, or unread: any other copy, or the error
                self._fetch_one(blob_id)

    def _fetch_one(self, blob_id: bytes) -> None:
        try:
            data = self._repo.read_blob(blob_id)  # authenticated, decompressed, re-hashed
        except BaseException as exc:
            with self._lock:
                future = self._pending.pop(blob_id, None)
            if future is not None:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._done(blob_id, data)

    def _done(self, blob_id: bytes, data: bytes) -> None:
        with self._lock:
            future = self._pending.pop(blob_id, None)
            if blob_id not in self._cached:
                self._cached[blob_id] = data
                self._size += len(data)
                while self._size > self._budget and len(self._cached) > 1:
                    _, old = self._cached.popitem(last=False)
                    self._size -= len(old)
        if future is not None:
            future.set_result(data)


def snapshot_names(snapshots: Sequence[SnapshotInfo]) -> list[bytes]:
    """Each snapshot's directory name: its local time, `-2`, `-3` … when two share a second."""
    names: list[bytes] = []
    seen: dict[bytes, int] = {}
    for info in snapshots:
        name = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(info.snapshot.time_ns / 1e9)).encode()
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else name + b"-%d" % seen[name])
    return names


def _host_name(host: str) -> bytes:
    """A host as one path component (a name with "/" or a dot name is made safe)."""
    name = host.replace("/", "_").encode() or b"_"
    return b"_" + name if name in (b".", b"..") else name


class SnapshotFS(pyfuse3.Operations):
    """The read-only file system over `snapshots` (oldest first); `latest`
    is the one `keep restore latest` would restore, if any."""

    def __init__(
        self,
        repo: Repository,
        snapshots: Sequence[SnapshotInfo],
        latest: SnapshotInfo | None,
        on_error: ErrorReport,
    ) -> None:
        super().__init__()
        self.repo = repo
        self.on_error = on_error
        self.blobs = _Blobs(repo)
        self._entries: dict[int, _Entry] = {}
        self._hardlinks: dict[tuple[str, int, int], int] = {}
        self._files: dict[int, _OpenFile] = {}
        self._next_fh = 1
        self._next_inode = pyfuse3.ROOT_INODE + 1
        self._uid, self._gid = os.getuid(), os.getgid()
        self._build_top(snapshots, latest)

    # The top-level directories ----------------------------------------------------
    def _virtual(self, name: bytes, mtime_ns: int, subtree: bytes | None = None) -> Node:
        return Node(name, NodeType.DIR, 0o555, self._uid, self._gid, mtime_ns=mtime_ns, subtree=subtree)

    def _add(self, parent: _Entry | None, node: Node, snapshot: str = "") -> _Entry:
        inode = pyfuse3.ROOT_INODE if parent is None else self._next_inode
        if parent is not None:
            self._next_inode += 1
        path = "/" if parent is None else f"{parent.path.rstrip('/')}/{os.fsdecode(node.name)}"
        entry = _Entry(inode, node, path, snapshot)
        self._entries[inode] = entry
        if parent is not None:
            if parent.children is None:
                parent.children = {}
            parent.children[node.name] = inode
        return entry

    def _build_top(self, snapshots: Sequence[SnapshotInfo], latest: SnapshotInfo | None) -> None:
        newest = max((s.snapshot.time_ns for s in snapshots), default=0)
        root = self._add(None, self._virtual(b"", newest))
        by_time = self._add(root, self._virtual(b"snapshots", newest))
        by_id = self._add(root, self._virtual(b"ids", newest))
        by_host = self._add(root, self._virtual(b"hosts", newest))
        names = dict(zip((s.id for s in snapshots), snapshot_names(snapshots), strict=True))
        hosts: dict[bytes, _Entry] = {}
        for info in snapshots:
            when, tree = info.snapshot.time_ns, info.snapshot.tree
            self._add(by_time, self._virtual(names[info.id], when, tree), info.id)
            self._add(by_id, self._virtual(info.id[:12].encode(), when, tree), info.id)
            host = _host_name(info.snapshot.host)
            if host not in hosts:
                hosts[host] = self._add(by_host, self._virtual(host, when))
            else:
                hosts[host].node = hosts[host].node._replace(mtime_ns=when)
            self._add(hosts[host], self._virtual(names[info.id], when, tree), info.id)
            newest_of_host = info  # snapshots come oldest first: the last one seen is the newest
            self._link(hosts[host], b"latest", names[newest_of_host.id], when)
        if latest is not None:
            self._link(root, b"latest", b"snapshots/" + names[latest.id], latest.snapshot.time_ns)
        for entry in (root, by_time, by_id, by_host, *hosts.values()):
            entry.listing = tuple(sorted(entry.children or {}))

    def _link(self, parent: _Entry, name: bytes, target: bytes, mtime_ns: int) -> None:
        node = Node(name, NodeType.SYMLINK, 0o777, self._uid, self._gid, mtime_ns=mtime_ns, target=target)
        existing = (parent.children or {}).get(name)
        if existing is not None:
            self._entries[existing].node = node
        else:
            self._add(parent, node)

    # Trees below the snapshots ----------------------------------------------------
    async def _list(self, entry: _Entry) -> tuple[bytes, ...]:
        """The names in a directory, reading its tree the first time. The tree
        is read on a thread; the tables change only here, in the event loop."""
        if entry.listing is None:
            subtree = entry.node.subtree
            nodes = await self._blocking(
                entry, lambda: Tree.from_bytes(self.repo.read_tree_bytes(subtree)).nodes if subtree else ()
            )
            if entry.listing is None:  # another request may have listed it meanwhile
                for node in nodes:
                    self._child(entry, node)
                entry.listing = tuple(n.name for n in nodes)
        return entry.listing

    def _child(self, parent: _Entry, node: Node) -> int:
        if node.type is NodeType.FILE and node.links > 1:
            key = (parent.snapshot, node.device_id, node.inode)
            inode = self._hardlinks.get(key)
            if inode is None:
                inode = self._add(parent, node, parent.snapshot).inode
                self._hardlinks[key] = inode
            elif parent.children is not None:
                parent.children[node.name] = inode
            else:
                parent.children = {node.name: inode}
            return inode
        return self._add(parent, node, parent.snapshot).inode

    def _entry(self, inode: int) -> _Entry:
        entry = self._entries.get(inode)
        if entry is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return entry

    def _attributes(self, entry: _Entry) -> pyfuse3.EntryAttributes:
        node = entry.node
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = entry.inode
        attrs.generation = 0
        attrs.entry_timeout = TIMEOUT
        attrs.attr_timeout = TIMEOUT
        attrs.st_mode = KINDS[node.type] | node.mode
        attrs.st_nlink = max(1, node.links) if node.type is not NodeType.DIR else 2
        attrs.st_uid, attrs.st_gid = node.uid, node.gid
        attrs.st_rdev = node.rdev
        attrs.st_size = len(node.target) if node.type is NodeType.SYMLINK else node.size
        attrs.st_blksize = BLOCK
        attrs.st_blocks = (attrs.st_size + 511) // 512
        attrs.st_mtime_ns = attrs.st_atime_ns = node.mtime_ns
        attrs.st_ctime_ns = node.ctime_ns or node.mtime_ns
        return attrs

    async def _blocking(self, entry: _Entry, work: Callable[[], T]) -> T:
        """Run repository work on a thread; what fails verification is EIO."""
        try:
            return await trio.to_thread.run_sync(work)
        except (KeepError, FormatError) as exc:
            self.on_error(entry.path, str(exc))
            raise pyfuse3.FUSEError(errno.EIO) from None
        except OSError as exc:
            self.on_error(entry.path, exc.strerror or str(exc))
            raise pyfuse3.FUSEError(errno.EIO) from None

    # Operations -------------------------------------------------------------------
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        return self._attributes(self._entry(inode))

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        parent = self._entry(parent_inode)
        if parent.node.type is not NodeType.DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if name == b".":
            return self._attributes(parent)
        await self._list(parent)
        inode = (parent.children or {}).get(name)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(self._entries[inode])

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        entry = self._entry(inode)
        if entry.node.type is not NodeType.DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        await self._list(entry)
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entry = self._entry(fh)
        names = entry.listing or ()
        children = entry.children or {}
        for index in range(start_id, len(names)):
            child = self._entries[children[names[index]]]
            if not pyfuse3.readdir_reply(token, names[index], self._attributes(child), index + 1):
                return

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._entry(inode).node
        if node.type is not NodeType.SYMLINK:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return node.target

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        for key, value in self._entry(inode).node.xattrs:
            if key == name:
                return value
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [key for key, _ in self._entry(inode).node.xattrs]

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        entry = self._entry(inode)
        if entry.node.type is not NodeType.FILE:
            raise pyfuse3.FUSEError(errno.EISDIR if entry.node.type is NodeType.DIR else errno.EINVAL)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise pyfuse3.FUSEError(errno.EROFS)
        opened = _OpenFile(entry, entry.node.content)
        opened.starts = await self._blocking(entry, lambda: self._starts(opened))
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self._files[fh] = opened
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    def _starts(self, opened: _OpenFile) -> list[int]:
        """Where each blob begins, from the index's lengths; where those do
        not add up to the file's size (or several copies are claimed), from
        the blobs themselves, read and verified."""
        self.repo.ensure_index()
        lengths = []
        for blob_id in opened.blobs:
            place = self.repo.locate(blob_id)
            lengths.append(
                -1 if place is None or blob_id in self.repo.other_copies else place.entry.raw_length
            )
        if -1 in lengths or sum(lengths) != opened.entry.node.size:
            lengths = [len(self.blobs.get(b)) for b in opened.blobs]
            if sum(lengths) != opened.entry.node.size:
                raise FormatError(
                    f"the file's blobs hold {sum(lengths):,} bytes, its size is {opened.entry.node.size:,}"
                )
        starts, offset = [], 0
        for length in lengths:
            starts.append(offset)
            offset += length
        return starts

    async def read(self, fh: int, off: int, size: int) -> bytes:
        opened = self._files.get(fh)
        if opened is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        # Most reads (the kernel asks 128 KiB at a time) fall in blobs already
        # verified and cached: served here, without a trip to a thread.
        try:
            served = self._read(opened, off, size, self.blobs.cached)
        except (KeepError, FormatError) as exc:
            self.on_error(opened.entry.path, str(exc))
            raise pyfuse3.FUSEError(errno.EIO) from None
        if served is not None:
            return served
        return await self._blocking(
            opened.entry, lambda: self._read(opened, off, size, self.blobs.get) or b""
        )

    def _read(
        self, opened: _OpenFile, off: int, size: int, blob: Callable[[bytes], bytes | None]
    ) -> bytes | None:
        """Bytes [off, off + size) of the file from `blob` (None if it has
        not got one of them), after asking for the blobs ahead."""
        end = min(off + size, opened.entry.node.size)
        if off >= end:
            return b""
        pieces = []
        first = bisect_right(opened.starts, off) - 1
        self.blobs.prefetch(opened.blobs[first + 1 : first + 1 + PREFETCH])
        index = first
        while index < len(opened.blobs) and opened.starts[index] < end:
            data = blob(opened.blobs[index])
            if data is None:
                return None
            start = opened.starts[index]
            following = opened.starts[index + 1] if index + 1 < len(opened.starts) else opened.entry.node.size
            if len(data) != following - start:
                raise FormatError(
                    f"a blob holds {len(data):,} bytes where the index says {following - start:,}"
                )
            pieces.append(memoryview(data)[max(off, start) - start : min(end, following) - start])
            index += 1
        # pyfuse3 replies from any buffer: one piece goes out without a copy.
        return cast(bytes, pieces[0]) if len(pieces) == 1 else b"".join(pieces)

    async def release(self, fh: int) -> None:
        self._files.pop(fh, None)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = BLOCK
        data.f_namemax = 255
        return data

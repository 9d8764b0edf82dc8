"""The backup engine: scan → skip unchanged → read → chunk → (workers: id,
compress) → seal → pack → upload, then trees and the snapshot.

Owns the walk of the source tree and the tree blobs it produces. A file whose
size, mtime, ctime and inode equal its node in the parent snapshot (and whose
blobs are all indexed) is not read again: its node is reused as it was — the
per-file fast path that decides the time of a daily backup. Problems with single
files (vanished, unreadable, changed while read, sockets) become `PathWarning`
values in the result, never crashes.

Paths are bytes throughout so that names that are not UTF-8 survive.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial

from keep.client.engine import collector, explore
from keep.client.engine.chunk_pipeline import (
    ChunkPipeline,
    ChunkResult,
    DeliveryError,
    ReadBuffer,
)
from keep.client.engine.packer import Packer
from keep.client.engine.path_warning import PathWarning
from keep.client.engine.patterns import Patterns, any_match
from keep.client.engine.repository import Repository
from keep.client.engine.source_reader import (
    BATCH_BYTES,
    BATCH_FILES,
    INLINE_FILES,
    Answer,
    SourceReader,
    open_source,
    read_small,
    same_file,
    xattrs_of,
)
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.compression import DATA_LEVEL
from keep.protocol.errors import FormatError, KeepError
from keep.protocol.limits import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, KiB, MiB
from keep.protocol.snapshot import Snapshot
from keep.protocol.tree import Node, NodeType, Tree

# Files up to this size take the one-pass path (`read_small`), in the helper
# process once it runs; each is one chunk (FastCDC cuts nothing shorter than
# CHUNK_MIN). 64 KiB rather than 4: a first backup of the 1 GB corpus, whose
# 6,000 source files are 0.4-15 KB (4,295 over 4 KiB), took 0.94x and 0.98x
# the time (two series of 10 and 13 alternated pairs, medians of the paired
# ratios) and peaked at 71 MiB, not 74; those 6,000 files alone took 0.51-0.56 s
# against 0.60-0.63 s.
SMALL_FILE_MAX = 64 * KiB
POOLED_READ_MIN = 1 * MiB  # smaller reads use os.read into ordinary bytes
# Bytes read per call; with the tail carried over (at most CHUNK_MAX) a pooled
# buffer holds READ_BUFFER + CHUNK_MAX.
READ_BUFFER = 4 * MiB
CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
PROGRAM = "keep 0.1.0"


class SourceError(KeepError):
    """Raised when a backup source path is missing or unusable as a whole."""


@dataclass
class BackupStats:
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    bytes_total: int = 0  # size of all files in the snapshot
    bytes_read: int = 0  # bytes actually read from disk
    bytes_done: int = 0  # read so far, plus the size of unchanged files (progress)
    current: bytes = b""  # the file being read (progress)
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class BackupResult:
    snapshot_id: str
    snapshot: Snapshot
    stats: BackupStats
    bytes_added: int  # padded pack bytes uploaded
    packs: int
    warnings: tuple[PathWarning, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class BackupOptions:
    excludes: tuple[str, ...] = ()
    iexcludes: tuple[str, ...] = ()  # the same globs, matched regardless of case
    exclude_caches: bool = False
    exclude_if_present: tuple[str, ...] = ()  # a directory holding one of these: only the marker is kept
    exclude_larger_than: int | None = None  # bytes; larger regular files are left out
    one_file_system: bool = False
    tags: tuple[str, ...] = ()
    host: str = ""
    compression: int = DATA_LEVEL  # zstd level of file data (trees use DEFAULT_LEVEL)


@cache
def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@cache
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _is_cache_dir(path: bytes) -> bool:
    try:
        with open(os.path.join(path, CACHEDIR_TAG), "rb") as f:
            return f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


class _PendingFile:
    """A file whose content ids arrive from the chunk pipeline; its node is
    built once, when they are all in."""

    __slots__ = ("content", "name", "path", "size", "st")

    def __init__(self, name: bytes, path: bytes, st: os.stat_result) -> None:
        self.name = name
        self.path = path
        self.st = st
        self.size = st.st_size
        self.content: list[bytes | None] = []

    def finish(self) -> Node:
        ids = tuple(c for c in self.content if c is not None)
        if len(ids) != len(self.content):
            raise FormatError("internal: file content incomplete")
        return _meta_node(self.name, self.st, self.path, size=self.size, content=ids)


class _PendingDir:
    """A directory whose tree is stored once the content ids of everything
    in it are in (a callback queued behind its files in the chunk pipeline),
    so walking on to the next directory never waits for the workers."""

    __slots__ = ("name", "path", "st", "subtree")

    def __init__(self, name: bytes, path: bytes, st: os.stat_result | None) -> None:
        self.name = name
        self.path = path
        self.st = st
        self.subtree: bytes | None = None

    def finish(self) -> Node:
        if self.subtree is None or self.st is None:
            raise FormatError("internal: directory tree not stored")
        return _meta_node(self.name, self.st, self.path, subtree=self.subtree)


class _PendingSmall:
    """A small file the source-reading helper reads; its node is made when
    the answer is delivered (None if it could not be read: a warning says
    why, and the directory's tree leaves it out)."""

    __slots__ = ("done", "name", "node", "path", "prev", "st")

    def __init__(self, name: bytes, path: bytes, st: os.stat_result, prev: Node | None) -> None:
        self.name = name
        self.path = path
        self.st = st
        self.prev = prev
        self.node: Node | None = None
        self.done = False

    def finish(self) -> Node | None:
        if not self.done:
            raise FormatError("internal: small file not read")
        return self.node


_Pending = Node | _PendingFile | _PendingDir | _PendingSmall


def _unchanged(prev: Node | None, st: os.stat_result) -> bool:
    """A file whose size, mtime, ctime and inode equal its node in the
    parent snapshot: not read again (its node is reused)."""
    return (
        prev is not None
        and prev.type is NodeType.FILE
        and prev.size == st.st_size
        and prev.mtime_ns == st.st_mtime_ns
        and prev.ctime_ns == st.st_ctime_ns
        and prev.inode == st.st_ino
    )


@dataclass
class BackupPreview:
    """`Archiver.preview`: what a backup would read (`keep backup --dry-run`)."""

    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    bytes_new: int = 0
    bytes_changed: int = 0
    bytes_unchanged: int = 0
    complete: bool = False  # the walk has ended (a scan beside a backup: its totals are final)

    @property
    def files(self) -> int:
        return self.files_new + self.files_changed + self.files_unchanged

    @property
    def bytes(self) -> int:
        return self.bytes_new + self.bytes_changed + self.bytes_unchanged


def _subtree_id(prev: Node | None) -> bytes | None:
    return prev.subtree if prev is not None and prev.type is NodeType.DIR else None


def _meta_node(
    name: bytes,
    st: os.stat_result,
    path: bytes,
    *,
    size: int | None = None,
    content: tuple[bytes, ...] = (),
    subtree: bytes | None = None,
    target: bytes = b"",
) -> Node:
    """The node for `st`, built in one go (dataclass `replace` costs ~35 µs).
    The one-pass small-file path builds its FILE node itself (a test holds
    the two equal)."""
    mode = st.st_mode
    node_type = (
        NodeType.FILE  # the common case first
        if stat.S_ISREG(mode)
        else NodeType.DIR
        if stat.S_ISDIR(mode)
        else NodeType.SYMLINK
        if stat.S_ISLNK(mode)
        else NodeType.FIFO
        if stat.S_ISFIFO(mode)
        else NodeType.CHARDEV
        if stat.S_ISCHR(mode)
        else NodeType.BLOCKDEV
        if stat.S_ISBLK(mode)
        else NodeType.FILE
    )
    return Node(
        name,
        node_type,
        stat.S_IMODE(mode),
        st.st_uid,
        st.st_gid,
        _user(st.st_uid),
        _group(st.st_gid),
        st.st_mtime_ns,
        st.st_ctime_ns,
        (st.st_size if size is None else size) if node_type is NodeType.FILE else 0,
        st.st_ino,
        st.st_nlink,
        st.st_dev,
        st.st_rdev if node_type in (NodeType.CHARDEV, NodeType.BLOCKDEV) else 0,
        xattrs_of(path),
        target,
        content,
        subtree,
    )


Progress = Callable[[BackupStats], None]


class Archiver:
    def __init__(
        self,
        repo: Repository,
        options: BackupOptions,
        progress: Progress | None = None,
        before_snapshot: Callable[[], None] | None = None,
        on_file: Callable[[str, bytes, int], None] | None = None,
    ) -> None:
        self.repo = repo
        self._before_snapshot = before_snapshot  # e.g. Lease.confirm: the lease must still be held
        self._on_file = on_file  # ("new" | "changed", path, size) for each file read (--verbose)
        self.options = options
        self.stats = BackupStats()
        self.warnings: list[PathWarning] = []
        self.packer = Packer(repo)
        self.chunker = Chunker(repo.keys.chunker)
        self.pipeline = ChunkPipeline(
            repo.keys.id,
            self.packer.known,
            buffer_size=READ_BUFFER + CHUNK_MAX,
            buffer_resident=READ_BUFFER + 2 * CHUNK_AVG,
            level=options.compression,
        )
        self._progress = progress
        self._last_progress = 0.0
        self._root_dev: int | None = None
        # git's rules on absolute paths (patterns.py), compiled once.
        self._excluded = any_match(
            [Patterns(options.excludes), Patterns(options.iexcludes, ignore_case=True)]
        )
        self._markers = tuple(map(os.fsencode, options.exclude_if_present))
        self._reader: SourceReader | None = None  # the helper reading small files, once started
        self._small: list[_PendingSmall] = []  # queued for it, not yet sent
        self._small_bytes = 0  # their sizes
        self._small_read_here = 0  # small files read on the engine thread before it started
        self._no_reader = False  # it could not be started: the engine reads them all

    # Public -----------------------------------------------------------------
    def run(self, sources: list[bytes], parent: tuple[str, Snapshot] | None) -> BackupResult:
        with collector.paused():  # a node per file and an entry per blob, kept to the end
            return self._run(sources, parent)

    def _run(self, sources: list[bytes], parent: tuple[str, Snapshot] | None) -> BackupResult:
        paths = sorted({os.path.abspath(s) for s in sources})
        for a in paths:
            for b in paths:
                if a != b and (b + b"/").startswith(a.rstrip(b"/") + b"/"):
                    raise SourceError(f"{b.decode(errors='replace')} is inside {a.decode(errors='replace')}")
        # A missing source is a warning (exit 3), as in restic: the others are
        # still backed up. The snapshot keeps naming every configured source,
        # so the next backup finds this one as its parent.
        present = [a for a in paths if os.path.lexists(a)]
        for a in paths:
            if a not in present:
                self._warn(a, "backup source does not exist; the other sources were backed up")
        if not present:
            raise SourceError(
                f"no backup source exists ({', '.join(a.decode(errors='replace') for a in paths)})"
            )
        parent_root = Tree.from_bytes(self.repo.read_tree_bytes(parent[1].tree)) if parent else None
        root = _PendingDir(b"", b"/", None)
        try:
            self._save_tree(
                self._root_nodes(present, parent_root), parent[1].tree if parent else None, root, parent_root
            )
            self._deliver_all()
            if root.subtree is None:
                raise FormatError("internal: root tree not stored")
            self.packer.flush()
        except DeliveryError as exc:  # raised by our own sink or tree callback
            self.packer.abort()
            raise exc.original from None
        except BaseException:
            self.packer.abort()
            raise
        finally:
            self.pipeline.close()
            if self._reader is not None:
                self._reader.close()
        seconds = time.monotonic() - self.stats.started
        snapshot = Snapshot(
            time_ns=time.time_ns(),
            host=self.options.host,
            user=_user(os.getuid()),
            paths=tuple(paths),
            tree=root.subtree,
            program=PROGRAM,
            tags=self.options.tags,
            parent=bytes.fromhex(parent[0]) if parent else None,
            summary={
                "files_new": self.stats.files_new,
                "files_changed": self.stats.files_changed,
                "files_unchanged": self.stats.files_unchanged,
                "dirs": self.stats.dirs,
                "bytes_total": self.stats.bytes_total,
                "bytes_read": self.stats.bytes_read,
                "bytes_added": self.packer.stats.bytes_uploaded,
                "warnings": len(self.warnings),
                "duration_ms": int(seconds * 1000),
            },
        )
        if self._before_snapshot is not None:
            self._before_snapshot()
        snapshot_id = self.repo.save_snapshot(snapshot)
        return BackupResult(
            snapshot_id,
            snapshot,
            self.stats,
            self.packer.stats.bytes_uploaded,
            self.packer.stats.packs,
            tuple(self.warnings),
            seconds,
        )

    def scan(self, sources: list[bytes], into: BackupPreview) -> None:
        """Count the files and bytes `run` will visit (same excludes, caches
        and file-system rules) into `into`, for progress; meant to run on its
        own thread beside `run`, as restic's scanner does."""
        self._survey(sources, None, into, None)

    def preview(self, sources: list[bytes], parent: tuple[str, Snapshot] | None) -> BackupPreview:
        """What `run` would read and what it would skip as unchanged, by the
        same rules, without reading a file or storing anything (new and
        changed files are reported to `on_file`)."""
        out = BackupPreview()
        try:
            self._survey(sources, parent, out, self._on_file)
        finally:
            self.pipeline.close()  # never used: nothing is read
        return out

    def _survey(
        self,
        sources: list[bytes],
        parent: tuple[str, Snapshot] | None,
        out: BackupPreview,
        report: Callable[[str, bytes, int], None] | None,
    ) -> None:
        for top in sorted({os.path.abspath(s) for s in sources}):
            prev = explore.node_at(self.repo, parent[1].tree, top) if parent else None
            with contextlib.suppress(OSError):
                st = os.lstat(top)
                self._survey_entry(top, st, prev, st.st_dev, out, report)
        out.complete = True

    def _survey_entry(
        self,
        path: bytes,
        st: os.stat_result,
        prev: Node | None,
        dev: int,
        out: BackupPreview,
        report: Callable[[str, bytes, int], None] | None,
    ) -> None:
        if stat.S_ISREG(st.st_mode) and not self._too_large(st):
            size = st.st_size
            if _unchanged(prev, st):
                out.files_unchanged, out.bytes_unchanged = out.files_unchanged + 1, out.bytes_unchanged + size
                return
            kind = "new" if prev is None or prev.type is not NodeType.FILE else "changed"
            if kind == "new":
                out.files_new, out.bytes_new = out.files_new + 1, out.bytes_new + size
            else:
                out.files_changed, out.bytes_changed = out.files_changed + 1, out.bytes_changed + size
            if report is not None:
                report(kind, path, size)
            return
        if not stat.S_ISDIR(st.st_mode) or (self.options.one_file_system and st.st_dev != dev):
            return
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        parent = self._load_parent_subtree(prev)
        before = {n.name: n for n in parent.nodes} if parent else {}
        kept = self._kept_only(path)
        excluded = self._excluded
        for entry in entries:
            if (excluded and excluded(entry.path, partial(entry.is_dir, follow_symlinks=False))) or (
                kept is not None and entry.name != kept
            ):
                continue
            with contextlib.suppress(OSError):
                child = entry.stat(follow_symlinks=False)
                self._survey_entry(entry.path, child, before.get(entry.name), dev, out, report)

    # Tree building -------------------------------------------------------------
    def _root_nodes(self, paths: list[bytes], parent_root: Tree | None) -> list[_Pending]:
        """The root tree: the sources' full paths as nested directories."""
        nested: dict[bytes, object] = {}
        for p in paths:
            parts = [c for c in p.split(b"/") if c]
            level = nested
            for c in parts[:-1]:
                level = level.setdefault(c, {})  # type: ignore[assignment]
            level[parts[-1]] = p
        return self._nodes_for(nested, b"/", parent_root)

    def _nodes_for(self, level: dict[bytes, object], prefix: bytes, parent: Tree | None) -> list[_Pending]:
        parents = {n.name: n for n in parent.nodes} if parent else {}
        nodes: list[_Pending] = []
        for name in sorted(level):
            path = os.path.join(prefix, name)
            prev = parents.get(name)
            target = level[name]
            if isinstance(target, bytes):  # a source path
                node = self._entry(path, name, prev, top=True)
                if node is not None:
                    nodes.append(node)
                continue
            st = os.lstat(path)
            subtree = self._load_parent_subtree(prev)
            children = self._nodes_for(target, path, subtree)  # type: ignore[arg-type]
            pending = _PendingDir(name, path, st)
            self._save_tree(children, _subtree_id(prev), pending, subtree)
            nodes.append(pending)
        return nodes

    def _load_parent_subtree(self, prev: Node | None) -> Tree | None:
        if prev is None or prev.type is not NodeType.DIR or prev.subtree is None:
            return None
        try:
            return Tree.from_bytes(self.repo.read_tree_bytes(prev.subtree))
        except KeepError:
            return None

    def _save_tree(
        self, nodes: list[_Pending], previous: bytes | None, into: _PendingDir, parent: Tree | None = None
    ) -> None:
        """Store the tree of `nodes` once their content is in, and give its
        id to `into`. `previous` is the id of the same directory's tree in the
        parent snapshot: if nothing changed the ids are equal and the index
        need not even be loaded. `parent` is that tree decoded, if it was."""
        self._send_small()  # the tree waits for its small files' answers
        self.pipeline.then(lambda: setattr(into, "subtree", self._store_tree(nodes, previous, parent)))

    def _store_tree(self, nodes: list[_Pending], previous: bytes | None, parent: Tree | None) -> bytes:
        resolved = tuple(
            node for node in (n if isinstance(n, Node) else n.finish() for n in nodes) if node is not None
        )
        if previous is not None and parent is not None and resolved == parent.nodes:
            # The very entries `previous` was decoded from (its id was checked
            # when it was read): the same tree, not encoded and hashed again.
            self.stats.dirs += 1
            return previous
        data = Tree(resolved).to_bytes()
        tid = blob_id(self.repo.keys.id, data)
        if tid != previous:
            # A changed tree is stored without loading the index just to ask
            # (a directory that changed back to an older state is stored
            # twice, a few KiB); data blobs always go through the full check.
            self.packer.add_tree(tid, data, check_index=False, cache=self._cache_tree)
        self.stats.dirs += 1
        return tid

    def _deliver_all(self) -> None:
        """Send what is queued for the helper, deliver every result, and
        send it the last tree cache files."""
        self._send_small()
        self.pipeline.drain()
        if self._reader is not None:
            self._reader.send_cache()

    def _cache_tree(self, tree_id: bytes, data: bytes) -> None:
        """A stored tree into the local tree cache: written by the helper once
        it runs (creating ~1,000 files took ~0.3 s of the engine thread in a
        backup of 100,000 small files), else here."""
        if self._reader is not None:
            self._reader.cache(self.repo.tree_cache_path(tree_id), data)
        else:
            self.repo.cache_tree(tree_id, data)

    def _warn(self, path: bytes, message: str) -> None:
        self.warnings.append(PathWarning(path.decode(errors="replace"), message))

    def _kept_only(self, path: bytes) -> bytes | None:
        """The one name kept of a directory whose contents are excluded (a
        cache directory's CACHEDIR.TAG, an --exclude-if-present marker), or
        None if its contents are backed up."""
        if self.options.exclude_caches and _is_cache_dir(path):
            return CACHEDIR_TAG
        return next((m for m in self._markers if os.path.lexists(os.path.join(path, m))), None)

    def _too_large(self, st: os.stat_result) -> bool:
        limit = self.options.exclude_larger_than
        return limit is not None and stat.S_ISREG(st.st_mode) and st.st_size > limit

    def _entry(self, path: bytes, name: bytes, prev: Node | None, top: bool = False) -> _Pending | None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._warn(path, "vanished before it could be read")
            return None
        except OSError as exc:
            self._warn(path, f"cannot stat: {exc.strerror}")
            return None
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            self._warn(path, "socket skipped")
            return None
        if stat.S_ISREG(mode):
            return None if self._too_large(st) else self._file(path, name, st, prev)
        if stat.S_ISDIR(mode):
            if self.options.one_file_system and not top and st.st_dev != self._root_dev:
                return None  # another file system: not crossed
            return self._directory(path, name, st, prev, top)
        target = b""
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                self._warn(path, f"cannot read link: {exc.strerror}")
                return None
        self._tick()
        return _meta_node(name, st, path, target=target)

    def _directory(
        self, path: bytes, name: bytes, st: os.stat_result, prev: Node | None, top: bool
    ) -> _PendingDir:
        if self._root_dev is None or top:
            self._root_dev = st.st_dev
        try:
            entries = sorted(os.listdir(path))  # names only: 0.5 µs a name, against 0.7 from scandir
        except OSError as exc:
            self._warn(path, f"cannot list directory: {exc.strerror}")
            empty = _PendingDir(name, path, st)
            self._save_tree([], None, empty)
            return empty
        parent = self._load_parent_subtree(prev)
        parents = {n.name: n for n in parent.nodes} if parent else {}
        kept = self._kept_only(path)
        children: list[_Pending] = []
        prefix = path if path.endswith(b"/") else path + b"/"  # os.path.join, without its cost per name
        excluded = self._excluded
        for child_name in entries:
            child = prefix + child_name
            if (excluded and excluded(child, partial(_is_dir, child))) or (
                kept is not None and child_name != kept
            ):
                continue
            result = self._entry(child, child_name, parents.get(child_name))
            if result is not None:
                children.append(result)
        pending = _PendingDir(name, path, st)
        self._save_tree(children, _subtree_id(prev), pending, parent)
        return pending

    def _file(
        self, path: bytes, name: bytes, st: os.stat_result, prev: Node | None
    ) -> Node | _PendingFile | _PendingSmall | None:
        self.stats.bytes_total += st.st_size
        if _unchanged(prev, st):
            # The parent snapshot was written only after all its blobs were
            # indexed, and it cannot be forgotten while this backup holds its
            # shared lease, so prune keeps its blobs (docs/engine.md "Prune").
            self.stats.files_unchanged += 1
            self.stats.bytes_done += st.st_size
            self._tick()
            return prev
        if st.st_size <= SMALL_FILE_MAX:
            if self._reader is None and not self._start_reader():
                self.stats.current = path
                answer = read_small(path, st.st_size, st.st_ino)
                return self._small_read(path, name, st, prev, answer, delivering=False)
            return self._small_later(path, name, st, prev)
        try:
            pending = self._read_file(path, name, st)
        except OSError as exc:
            self._unreadable(path, st, exc.errno, exc.strerror)
            return None
        self._read_one(path, st, prev)
        return pending

    def _unreadable(self, path: bytes, st: os.stat_result, code: int | None, message: str | None) -> None:
        if code == errno.ENOENT:
            self._warn(path, "vanished before it could be read")
        else:
            self._warn(path, f"cannot read: {message}")
        self.stats.bytes_total -= st.st_size

    def _read_one(self, path: bytes, st: os.stat_result, prev: Node | None) -> None:
        """Count a file read (new or changed) and report it."""
        if prev is None:
            self.stats.files_new += 1
        else:
            self.stats.files_changed += 1
        if self._on_file is not None:
            self._on_file("new" if prev is None else "changed", path, st.st_size)
        self._tick()

    def _small_read(
        self,
        path: bytes,
        name: bytes,
        st: os.stat_result,
        prev: Node | None,
        answer: Answer,
        *,
        delivering: bool,
    ) -> Node | _PendingFile | None:
        """The rest of a small file's one pass, given what reading it gave
        (`read_small`, here or in the helper): its one chunk identified,
        compressed and sealed at once, its node built. The chunk pipeline's
        queue is not involved: nothing waits on this file. Measured on
        100,000 files of 0.1-2 KB: see docs/engine.md "Small files".
        `delivering`: called from the pipeline's delivery of the helper's
        answers, where a file that grew cannot be handed to the pipeline (its
        directory's tree is already queued behind it) and is read in full
        here instead."""
        if answer[0]:
            self._unreadable(path, st, answer[0], answer[1])
            return None
        _, data, mtime_ns, xattrs, codec, packed = answer
        size = len(data)
        if size > st.st_size:  # it grew since the lstat: read in full, with a warning
            try:
                pending = self._read_file(path, name, st, here=delivering)
            except OSError as exc:
                self._unreadable(path, st, exc.errno, exc.strerror)
                return None
            self._read_one(path, st, prev)
            return pending
        self.stats.bytes_read += size
        self.stats.bytes_done += size
        if size != st.st_size or mtime_ns != st.st_mtime_ns:
            self._warn(path, "changed while being read; the snapshot has what was read")
        content = (self._store_here(data, codec, packed),)  # an empty file too: one empty blob
        self._read_one(path, st, prev)
        # Built here, not by _meta_node: its generic type and field choices
        # cost 5-8 % of a 100,000-small-file backup (paired runs).
        uid, gid = st.st_uid, st.st_gid
        return Node(
            name, NodeType.FILE, stat.S_IMODE(st.st_mode), uid, gid, _user(uid), _group(gid),
            st.st_mtime_ns, st.st_ctime_ns, size, st.st_ino, st.st_nlink, st.st_dev, 0,
            xattrs, b"", content, None,
        )  # fmt: skip

    def _start_reader(self) -> bool:
        """Whether small files now go to the helper: once INLINE_FILES were
        read here, it is started. One that cannot start (no processes left)
        is no reason to fail a backup: the engine goes on reading them."""
        if self._no_reader:
            return False
        self._small_read_here += 1
        if self._small_read_here <= INLINE_FILES:
            return False
        try:
            self._reader = SourceReader(self.options.compression)
        except OSError:
            self._no_reader = True
            return False
        return True

    def _small_later(self, path: bytes, name: bytes, st: os.stat_result, prev: Node | None) -> _PendingSmall:
        """Queue a small file for the helper to read; the batch goes out when
        full or when a tree must wait for it."""
        pending = _PendingSmall(name, path, st, prev)
        self._small.append(pending)
        self._small_bytes += st.st_size
        if len(self._small) >= BATCH_FILES or self._small_bytes >= BATCH_BYTES:
            self._send_small()
        return pending

    def _send_small(self) -> None:
        """Send the queued small files to the helper; their answers take their
        turn in the pipeline, ahead of anything submitted after them."""
        batch, self._small, self._small_bytes = self._small, [], 0
        if not batch or self._reader is None:
            return
        future = self._reader.read([(p.path, p.st.st_size, p.st.st_ino) for p in batch])

        def deliver(answers: tuple[Answer, ...]) -> None:
            for pending, answer in zip(batch, answers, strict=True):
                path = self.stats.current = pending.path
                node = self._small_read(path, pending.name, pending.st, pending.prev, answer, delivering=True)
                pending.node = node.finish() if isinstance(node, _PendingFile) else node
                pending.done = True

        self.pipeline.later(future, deliver, sum(p.st.st_size for p in batch))

    def _store_here(
        self, data: bytes | memoryview, codec: int | None = None, packed: bytes | None = None
    ) -> bytes:
        """Identify, compress (unless the helper did: `codec`, `packed`) and
        seal one chunk here; its id. A failure past the read (a full spool
        disk) ends the backup, as one in the pipeline's sinks does: it is
        not a problem of this file."""
        try:
            # asks `packer.known`: nothing is added in between
            result = self.pipeline.work_here(data, codec, packed)
            if result.payload is not None:
                self.packer.add_unknown(
                    BlobType.DATA, result.blob_id, result.codec, result.payload, result.raw_length
                )
        except Exception as exc:
            raise DeliveryError(exc) from exc
        return result.blob_id

    def _read_file(self, path: bytes, name: bytes, st: os.stat_result, *, here: bool = False) -> _PendingFile:
        """Read a file through the chunk pipeline, or with `here` entirely on
        the engine thread (its chunks done at once, the pipeline not touched:
        what a small file that grew gets while the pipeline delivers)."""
        fd = open_source(path)
        pending = _PendingFile(name, path, st)
        self.stats.current = path
        try:
            same_file(fd, st.st_ino)
            total = self._read_chunks(fd, pending, st.st_size, here)
            self.stats.bytes_read += total
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if total != st.st_size or after.st_mtime_ns != st.st_mtime_ns:
            self._warn(path, "changed while being read; the snapshot has what was read")
        pending.size = total
        return pending

    def _read_chunks(self, fd: int, pending: _PendingFile, size: int, here: bool) -> int:
        """Read `fd` to its end, cut it and submit the chunks; bytes read."""
        total = 0
        carry = memoryview(b"")
        buffer: ReadBuffer | None = None  # the pooled buffer `carry` points into
        try:
            while True:
                # Ask for what is left (+1 to see EOF in the same call).
                remaining = size - total
                want = remaining + 1 if 0 <= remaining < READ_BUFFER else READ_BUFFER
                if want < POOLED_READ_MIN or here:
                    block = os.read(fd, want)
                    got = len(block)
                    view = memoryview(bytes(carry) + block if carry else block)
                    filled = None
                else:
                    filled = self.pipeline.read_buffer()
                    filled.view[: len(carry)] = carry
                    got = os.readv(fd, [filled.view[len(carry) : len(carry) + want]])
                    view = filled.view[: len(carry) + got]
                if buffer is not None:
                    buffer.release()  # its carry has been copied out
                buffer = filled
                eof = got < want
                total += got
                self.stats.bytes_done += got
                # A final buffer below the minimum chunk size is one chunk
                # (an empty file is one empty blob).
                lengths = [len(view)] if eof and len(view) < CHUNK_MIN else self.chunker.cut(view, final=eof)
                offset = 0
                for length in lengths:
                    self._submit(pending, view[offset : offset + length], buffer, here)
                    offset += length
                if eof:
                    if offset < len(view):
                        self._submit(pending, view[offset:], buffer, here)
                    return total
                carry = view[offset:]
        finally:
            if buffer is not None:
                buffer.release()

    def _submit(
        self, pending: _PendingFile, chunk: memoryview, buffer: ReadBuffer | None, here: bool
    ) -> None:
        if here:
            pending.content.append(self._store_here(chunk))
            return
        position = len(pending.content)
        pending.content.append(None)

        def sink(result: ChunkResult) -> None:
            if result.payload is not None:
                self.packer.add(
                    BlobType.DATA, result.blob_id, result.codec, result.payload, result.raw_length
                )
            pending.content[position] = result.blob_id

        self.pipeline.submit(chunk, sink, buffer)

    def _tick(self) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if now - self._last_progress >= 0.2:
            self._last_progress = now
            self._progress(self.stats)


__all__ = ["Archiver", "BackupOptions", "BackupPreview", "BackupResult"]


def _is_dir(path: bytes) -> bool:
    """Whether `path` is a directory itself (not a link to one)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False

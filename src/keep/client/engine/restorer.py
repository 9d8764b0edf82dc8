"""Restore: recreate a snapshot's tree under a target directory.

Phase 1 walks the snapshot's trees and creates directories, symlinks, FIFOs
and device nodes — always through directory file descriptors with O_NOFOLLOW,
so no entry, however crafted, can reach outside the target: names are single
components (checked when trees decode), an existing symlink where a directory
should be is refused, and files are opened without following links. A
directory phase 1 made is known to be empty; an existing one is listed once.
Regular files are planned, not created. Files that already exist with the
same size, mtime and content are skipped.

Phase 2 plans the files PLAN_BATCH at a time and fetches each batch's pack
ranges on a few threads, which verify every blob (AEAD tag and keyed id).
Every file is written under a temporary name in its own directory, created
by its first write and truncated to its size (unwritten regions stay sparse
holes; all-zero blocks are not written), and once complete it gets its
ownership, xattrs, mode and times through its descriptor and is renamed
over the final name: an existing file is only ever replaced by a complete,
verified one. A file of one blob is written in one go by a writer
(`file_writer`: helper processes for large restores), without a name until
it is complete where the file system allows; the thread that writes the
last blob of a larger file finishes it. A file whose
data fails verification or cannot be fetched is removed instead and named
in a warning; the old file stays. A failure that stops the whole restore
(server unreachable, disk full, interrupt) removes every temporary file
before the error is raised.

Phase 3 makes hardlinks (each under a temporary name renamed into place) and
applies metadata to the other entries and to directories, deepest first.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import stat
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from keep.client.engine import collector, file_writer
from keep.client.engine.file_writer import (
    DIR_FLAGS,
    DirectoryReplacedError,
    HelperWriters,
    InlineWriter,
    Job,
    data_runs,
)
from keep.client.engine.locations import RANGE_ALIGN
from keep.client.engine.path_warning import PathWarning
from keep.client.engine.patterns import Patterns
from keep.client.engine.repository import Repository
from keep.client.engine.restore_plan import BlobFetch, RangeFetch, plan
from keep.protocol.blob import blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.errors import ExitCode, FormatError, IntegrityError, KeepError, NotFoundError
from keep.protocol.keys import RepositoryKeys
from keep.protocol.limits import MiB
from keep.protocol.tree import Node, NodeType, Tree

FETCH_THREADS = 2  # they verify and decompress (the helpers write): one per core here
# One-blob files go to helper processes (`file_writer`) once the walk has
# planned this many; until then (and in a smaller restore) the fetch threads
# write them themselves.
HELPERS_FROM = 2_000  # measured: helpers 1.10x the wall time at 1,000 files, 0.80x at 3,000
# Phase 2 plans this many files at a time, and gives the fetch threads at
# most RANGES_AHEAD ranges each beyond the one they are on: a plan costs
# ~400 bytes a file while it lasts. 100,000 small files planned in one piece
# peaked at 191 MiB, in batches at 147 MiB, in 0.91x the time. (Planning
# and fetching alongside the walk peaked at 145 MiB but took 1.10x the time,
# 1.33x on a new machine: the walk took the interpreter lock from the fetch
# threads and the helpers' feeders.)
PLAN_BATCH = 4_096
RANGES_AHEAD = 2
HELPER_PROCESSES = 2
OPEN_FILES_MAX = 256  # idle descriptors kept open; held ones are never closed
# What the fetch threads hold at once while they open blobs: each blob's
# sealed bytes, its decrypted payload and its plaintext. A thread waits for
# room before it reads a blob off its range (one blob alone may pass it).
# Two threads opening 8 MiB chunks (a disk image's: 4 MiB sealed, 8 MiB of
# plaintext) held 32 MiB at once; 1 MiB chunks never wait.
HOLD_MAX = 16 * MiB
TEMP_PREFIX = b".keep-restore-"
# Damage confined to the files that needed the data: those files are not
# restored, every other file is. Anything else stops the restore.
FILE_FAILURES = (IntegrityError, FormatError, NotFoundError)


class RestoreError(KeepError):
    """Raised when the restore target is unusable as a whole."""


class _Stopped(Exception):  # noqa: N818 — an internal signal, never seen outside this module
    """A fetch or a write failed (`cause`): the restore stops. Its own
    type, so that `_fetching` tells it from a failure of its body."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class RestoreStoppedError(KeepError):
    """Raised when a failure stopped the restore part-way; `not_restored`
    names the files left as they were (no temporary file remains)."""

    def __init__(self, message: str, exit_code: ExitCode, not_restored: list[str]) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.not_restored = not_restored


# What to do with an entry the target already holds (restic's names):
# always replace it; replace it only if its content differs; only if the
# snapshot's copy is newer (by mtime); or never. A replaced file is swapped
# whole for the restored one (temporary name, then rename).
OVERWRITE = ("always", "if-changed", "if-newer", "never")


@dataclass
class RestoreStats:
    files: int = 0
    files_skipped: int = 0  # regular files that already held exactly the snapshot's content
    files_kept: int = 0  # entries left as they were by --overwrite if-newer / never
    files_overwritten: int = 0  # existing entries replaced
    dirs: int = 0
    bytes_written: int = 0
    bytes_fetched: int = 0
    files_failed: int = 0  # not restored: their data failed verification or could not be fetched
    files_failed_integrity: int = 0  # of those, data that failed verification (exit 15)
    matched: int = 0  # entries selected (all of them without includes)
    files_planned: int = 0  # files to write, known once the trees are walked (progress)
    bytes_planned: int = 0  # their size
    files_written: int = 0  # of those, complete and in place (progress)
    current: bytes = b""  # the file last put in place (progress)
    warnings: list[PathWarning] = field(default_factory=list)


@dataclass
class Preview:
    """`Restorer.preview`: what a restore would do (restore --dry-run)."""

    matched: int = 0
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    replaced: int = 0  # entries the target holds that would be replaced
    kept: int = 0  # … and that --overwrite would leave as they are


@dataclass(slots=True)
class _Dir:
    """A directory phase 1 is filling in."""

    fd: int
    rel: bytes  # its path relative to the target (b"" for the target)
    id: tuple[int, int]  # its (st_dev, st_ino)
    names: frozenset[bytes]  # what it held before the restore (nothing if phase 1 made it)


@dataclass(slots=True)
class _File:
    """A regular file to write: of its node only what writing it needs. A
    restore holds one per file from the walk to its end, and the node kept
    whole (with its change time, inode, file system and a tuple of eighteen
    fields) cost ~200 bytes more a file: ~20 MiB of a 100,000-file
    restore's peak."""

    name: bytes
    parent: bytes  # the directory's path relative to the target (b"" for the target)
    parent_id: tuple[int, int]  # its (st_dev, st_ino), checked before every use by path
    mode: int
    uid: int
    gid: int
    xattrs: tuple[tuple[bytes, bytes], ...]
    mtime_ns: int
    size: int
    content: tuple[bytes, ...]
    pending: int = 0  # blob writes still to come
    single: bool = False  # exactly one blob write: its writer owns it outright (no shared descriptor)
    failure: KeepError | None = None
    done: bool = False  # renamed into place, or removed
    # The temporary name in its directory, from when the first write creates
    # it until it is renamed into place; and the file's (st_dev, st_ino),
    # checked whenever a file written in several parts is opened again.
    temp: bytes | None = None
    file_id: tuple[int, int] = (0, 0)

    @property
    def path(self) -> bytes:
        """The final path, relative to the target."""
        return self.parent + b"/" + self.name if self.parent else self.name  # a name holds no "/"


@dataclass(slots=True)
class _Link:
    """A further name of a hardlinked file, made once the first name exists."""

    path: bytes
    node: Node
    parent: bytes
    parent_id: tuple[int, int]
    first: bytes  # path of the name the data went to
    first_file: int | None  # its index in the files being written, or None if it was up to date


def _display(path: bytes) -> str:
    return path.decode(errors="replace")


class _Budget:
    """Bytes held by several threads at once, at most `limit` (a thread that
    holds nothing may take more alone: a blob larger than the limit still
    opens, only without company). Taken and given back once per blob, so
    both are a plain lock's enter and exit unless a thread has to wait."""

    def __init__(self, limit: int) -> None:
        self._limit, self._held, self._waiting = limit, 0, 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)

    def take(self, size: int) -> None:
        with self._lock:
            while self._held and self._held + size > self._limit:
                self._waiting += 1
                self._room.wait()
                self._waiting -= 1
            self._held += size

    def give(self, size: int) -> None:
        with self._lock:
            self._held -= size
            if self._waiting:
                self._room.notify_all()


class _OpenFiles:
    """Descriptors of the files being written, shared by the fetch threads.

    A descriptor is closed only while no thread holds it. `hold` pins it for
    the length of a write; when more than `limit` are open, only unpinned ones
    are closed (least recently used first), so the number of a descriptor a
    thread is about to write through is never closed and handed by the kernel
    to another file. At most `limit` plus one per fetch thread are open."""

    def __init__(self, opener: Callable[[int], int], limit: int) -> None:
        self._open_file = opener
        self._limit = limit
        self._lock = threading.Lock()
        self._idle: OrderedDict[int, int] = OrderedDict()  # file index -> fd, least recent first
        self._held: dict[int, list[int]] = {}  # file index -> [fd, holders]

    @contextlib.contextmanager
    def hold(self, index: int) -> Iterator[int]:
        with self._lock:
            held = self._held.get(index)
            if held is not None:
                held[1] += 1
            else:
                fd = self._idle.pop(index, None)
                held = self._held[index] = [self._open_file(index) if fd is None else fd, 1]
                self._close_idle()
        try:
            yield held[0]
        finally:
            with self._lock:
                held[1] -= 1
                if held[1] == 0:
                    del self._held[index]
                    self._idle[index] = held[0]
                    self._close_idle()

    def take(self, index: int) -> int | None:
        """Hand over a file no thread will write again: its descriptor if it
        is still open (now the caller's to close), else None."""
        with self._lock:
            if index in self._held:
                raise RuntimeError("a file was taken while a thread still writes to it")
            return self._idle.pop(index, None)

    def close_all(self) -> None:
        with self._lock:
            for fd in self._idle.values():
                os.close(fd)
            self._idle.clear()

    def _close_idle(self) -> None:
        while self._idle and len(self._idle) + len(self._held) > self._limit:
            os.close(self._idle.popitem(last=False)[1])


class Restorer:
    def __init__(
        self,
        repo: Repository,
        target: bytes,
        includes: tuple[bytes, ...] = (),
        *,
        threads: int | None = None,
        overwrite: str = "always",
        excludes: tuple[bytes, ...] = (),
    ) -> None:
        if overwrite not in OVERWRITE:
            raise ValueError(f"overwrite must be one of {OVERWRITE}")
        self.overwrite = overwrite
        self.repo = repo
        self.target = os.path.abspath(target)
        self.includes = {b"/" + i.strip(b"/") for i in includes}
        self._excludes = Patterns(excludes)  # git's rules (patterns.py), on absolute paths
        self._include_parents = {p for i in self.includes for p in _parents(i)}
        self.threads = threads or FETCH_THREADS
        self.stats = RestoreStats()
        self._files: list[_File] = []
        self._content: list[tuple[bytes, ...]] = []  # each file's blobs, until phase 2 plans
        self._fetches: deque[Future[None]] = deque()  # ranges handed to the fetch threads, oldest first
        self._pool: ThreadPoolExecutor | None = None
        self._dirs: list[tuple[bytes, Node]] = []
        self._first_names: dict[tuple[int, int], tuple[bytes, int | None]] = {}
        self._links: list[_Link] = []
        self._meta: list[tuple[bytes, Node]] = []
        self._up_to_date: list[tuple[bytes, Node]] = []  # regular files skipped as already restored
        self._is_root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._temp_prefix = TEMP_PREFIX + secrets.token_hex(4).encode() + b"-"
        self._temps = itertools.count(1)  # next() is atomic: one thread at a time runs it
        self._open_files = _OpenFiles(self._open_temp, OPEN_FILES_MAX)
        self._stop = threading.Event()
        self._holding = _Budget(HOLD_MAX)  # what the fetch threads hold at once
        self._progress: Callable[[RestoreStats], None] | None = None
        # Who writes one-blob files in phase 2: the fetch threads, then
        # helpers once enough are planned (`_fetch_batch`).
        self._inline = InlineWriter(self.target, self._written, self._write_failed)
        self._writer: InlineWriter | HelperWriters = self._inline
        self._singles = 0  # one-blob files planned while the fetch threads write them
        self._write_failure: OSError | None = None  # the first a writer reported: it stops the restore
        self._careful: list[int] = []  # files restored blob by blob (`_restore_carefully`)

    def warn(self, path: bytes, message: str) -> None:
        with self._lock:
            self.stats.warnings.append(PathWarning(_display(path), message))

    # Selection -------------------------------------------------------------
    def _wanted(self, path: bytes, node: Node) -> tuple[bool, bool]:
        """(restore this entry, descend into it): an entry is restored if it
        or a directory above it is included; directories above an included
        path are entered without being restored themselves."""
        absolute = b"/" + path
        if self._excludes.match(absolute, lambda: node.type is NodeType.DIR):
            return False, False  # the entry and everything below it
        if not self.includes or b"/" in self.includes:
            return True, True
        if absolute in self.includes or any(p in self.includes for p in _parents(absolute)):
            return True, True
        return False, absolute in self._include_parents

    def preview(self, root_tree: bytes) -> Preview:
        """What `run` would do, without touching the target: the entries it
        would write, and of those already there, which it would replace and
        which `overwrite` leaves (identical files count as replaced here:
        telling them apart means reading them)."""
        preview = Preview()
        stack = [(root_tree, b"")]
        while stack:
            tree_id, rel = stack.pop()
            for node in Tree.from_bytes(self.repo.read_tree_bytes(tree_id)).nodes:
                path = os.path.join(rel, node.name) if rel else node.name
                restore, descend = self._wanted(path, node)
                if node.type is NodeType.DIR and descend and node.subtree is not None:
                    stack.append((node.subtree, path))
                if not restore:
                    continue
                preview.matched += 1
                if node.type is NodeType.DIR:
                    preview.dirs += 1
                    continue
                try:
                    st = os.lstat(os.path.join(self.target, path))
                except FileNotFoundError:
                    st = None
                if st is not None and self._policy_keeps(st, node):
                    preview.kept += 1
                    continue
                preview.replaced += st is not None
                preview.files += node.type is NodeType.FILE
                preview.bytes += node.size if node.type is NodeType.FILE else 0
        return preview

    # Phase 1 ---------------------------------------------------------------
    def run(self, root_tree: bytes, progress: Callable[[RestoreStats], None] | None = None) -> RestoreStats:
        with collector.paused():
            return self._run(root_tree, progress)

    def _run(self, root_tree: bytes, progress: Callable[[RestoreStats], None] | None) -> RestoreStats:
        os.makedirs(self.target, exist_ok=True)
        try:
            root_fd = os.open(self.target, DIR_FLAGS)
        except OSError as exc:
            raise RestoreError(f"cannot open restore target: {exc.strerror}") from None
        try:
            try:
                self._restore_dir(_Dir(root_fd, b"", _fs_id(root_fd), _listing(root_fd)), root_tree)
            finally:
                self.repo.stop_prefetch()
                os.close(root_fd)
            self.stats.files_planned = len(self._files)
            self.stats.bytes_planned = sum(f.size for f in self._files)
            with self._fetching(progress):
                self._fetch_planned()
            self._restore_carefully()
        except BaseException:
            self._remove_temps()
            raise
        failed = [f for f in self._files if f.failure is not None]
        self.stats.files -= len(failed)
        self.stats.files_failed += len(failed)  # on top of blobs missing from the index
        self.stats.files_failed_integrity = sum(
            isinstance(f.failure, (IntegrityError, FormatError)) for f in failed
        )
        self._make_links()  # names of a failed file count as failed too
        self._apply_metadata()
        return self.stats

    def _restore_dir(self, d: _Dir, tree_id: bytes) -> None:
        tree = Tree.from_bytes(self.repo.read_tree_bytes(tree_id))
        entries = []
        for node in tree.nodes:
            path = d.rel + b"/" + node.name if d.rel else node.name
            entries.append((node, path, *self._wanted(path, node)))
        self.repo.prefetch_trees(node.subtree for node, _, _, descend in entries if descend and node.subtree)
        for node, path, restore, descend in entries:
            if not (restore or descend):
                continue
            self.stats.matched += restore
            try:
                if node.type is NodeType.DIR:
                    self._make_dir(d, path, node, restore)
                elif node.type is NodeType.FILE:
                    if restore:
                        self._make_file(d, path, node)
                elif restore:
                    self._make_entry(d, path, node)
            except OSError as exc:
                self.warn(path, f"cannot restore: {exc.strerror}")

    def _make_dir(self, d: _Dir, path: bytes, node: Node, restore: bool) -> None:
        made = node.name not in d.names
        try:
            os.mkdir(node.name, 0o700, dir_fd=d.fd)
        except FileExistsError:
            made = False
            st = os.stat(node.name, dir_fd=d.fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.warn(path, "exists and is not a directory (not followed)")
                return
        child_fd = os.open(node.name, DIR_FLAGS, dir_fd=d.fd)
        try:
            if node.subtree is not None:
                names = frozenset() if made else _listing(child_fd)
                self._restore_dir(_Dir(child_fd, path, _fs_id(child_fd), names), node.subtree)
        finally:
            os.close(child_fd)
        if restore:
            self.stats.dirs += 1
            self._dirs.append((path, node))

    def _keeps(self, d: _Dir, node: Node) -> bool | None:
        """Whether --overwrite leaves what the target holds under `node`'s
        name (None: it holds nothing)."""
        if node.name not in d.names:
            return None  # a directory this restore made, or a name it did not hold
        try:
            st = os.stat(node.name, dir_fd=d.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return self._policy_keeps(st, node)

    def _policy_keeps(self, existing: os.stat_result, node: Node) -> bool:
        """Whether --overwrite leaves `existing` where `node` would go."""
        newer = existing.st_mtime_ns >= node.mtime_ns
        return self.overwrite == "never" or (self.overwrite == "if-newer" and newer)

    def _make_entry(self, d: _Dir, path: bytes, node: Node) -> None:
        name, dir_fd = node.name, d.fd
        keeps = self._keeps(d, node)
        if keeps:
            self.stats.files_kept += 1
            return
        if keeps is not None:
            self.stats.files_overwritten += 1
            self._remove_existing(dir_fd, name)
        if node.type is NodeType.SYMLINK:
            os.symlink(node.target, name, dir_fd=dir_fd)
        elif node.type is NodeType.FIFO:
            os.mkfifo(name, 0o600, dir_fd=dir_fd)
        elif node.type in (NodeType.CHARDEV, NodeType.BLOCKDEV):
            if not self._is_root:
                self.warn(path, "device node skipped (needs root)")
                return
            kind = stat.S_IFCHR if node.type is NodeType.CHARDEV else stat.S_IFBLK
            os.mknod(name, kind | 0o600, node.rdev, dir_fd=dir_fd)
        self._meta.append((path, node))

    def _remove_existing(self, dir_fd: int, name: bytes) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, "a directory is in the way")
        os.unlink(name, dir_fd=dir_fd)

    def _new_temp(self, dir_fd: int) -> tuple[bytes, int]:
        """A new temporary file in the directory: (its name, an open descriptor)."""
        while True:
            name = self._new_temp_name()
            try:
                return name, os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dir_fd,
                )
            except FileExistsError:
                continue

    def _make_file(self, d: _Dir, path: bytes, node: Node) -> None:
        """Plan a regular file. Nothing is created yet: the first write
        creates its temporary file (`_create_temp`)."""
        if self._leave_existing(d, path, node):
            return
        key = (node.device_id, node.inode) if node.links > 1 else None
        if key is not None and key in self._first_names:
            first, first_file = self._first_names[key]
            self._links.append(_Link(path, node, d.rel, d.id, first, first_file))
            self.stats.files += 1
            return
        offset = 0
        for bid in node.content:
            raw_length = self.repo.raw_length(bid)
            if raw_length is None:
                self.warn(path, f"not restored: blob {bid.hex()[:12]} is missing from the repository")
                self.stats.files_failed += 1
                return
            offset += raw_length
        # Where each blob goes comes from the index's lengths. If they do not
        # add up to the file's size, or a blob is listed in several packs
        # (one copy may be a planted claim with another length), the file is
        # restored blob by blob after the others, each verified before its
        # length places the next (`_restore_carefully`).
        careful = offset != node.size or any(bid in self.repo.other_copies for bid in node.content)
        index = len(self._files)
        pending = 0 if careful else len(node.content)
        self._files.append(
            _File(
                node.name, d.rel, d.id, node.mode, node.uid, node.gid, node.xattrs, node.mtime_ns, node.size,
                node.content, pending, pending == 1,
            )
        )  # fmt: skip
        self._content.append(() if careful else node.content)
        if key is not None:
            self._first_names[key] = (path, index)
        self.stats.files += 1
        if careful:
            self._careful.append(index)
        elif not node.content:  # empty, or all holes: complete already
            self._finish(index, None)

    def _leave_existing(self, d: _Dir, path: bytes, node: Node) -> bool:
        """Whether what the target holds under this file's name stays: kept by
        --overwrite, or already the snapshot's file (then only its metadata is
        set). Counts what will be replaced."""
        keeps = self._keeps(d, node)
        if keeps:  # left as it is; not a first name other names may link to
            self.stats.files_kept += 1
            return True
        if keeps is None:
            return False
        key = (node.device_id, node.inode)
        if node.links > 1 and key in self._first_names:  # a further name of a hardlinked file
            first, first_file = self._first_names[key]
            existing = "same" if first_file is None and self._linked(d.fd, node.name, first) else "other"
        else:
            existing = self._existing(d.fd, node)
        if existing == "same":
            self.stats.files_skipped += 1
            self._up_to_date.append((path, node))
            self._meta.append((path, node))
            if node.links > 1:
                self._first_names[key] = (path, None)
            return True
        if existing == "dir":
            raise OSError(errno.EISDIR, "a directory is in the way")
        self.stats.files_overwritten += 1
        return False

    def _linked(self, dir_fd: int, name: bytes, first: bytes) -> bool:
        """Whether `name` is already a hardlink of the up-to-date `first`."""
        try:
            here = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return _same_file(here, os.stat(os.path.join(self.target, first), follow_symlinks=False))
        except OSError:
            return False

    def _existing(self, dir_fd: int, node: Node) -> str:
        """ "same" (a regular file with this size, mtime and content — with
        --overwrite if-changed, any mtime), "dir", "other" (anything that is
        replaced) or "none"."""
        try:
            fd = os.open(node.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return "none"
        except OSError:
            return "other"  # a symlink (ELOOP), a socket, unreadable: replaced
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                return "dir"
            same_time = st.st_mtime_ns == node.mtime_ns or self.overwrite == "if-changed"
            if not stat.S_ISREG(st.st_mode) or st.st_size != node.size or not same_time:
                return "other"
            return "same" if content_ids(fd, self.repo.keys) == node.content else "other"
        finally:
            os.close(fd)

    # Phase 2 ---------------------------------------------------------------
    def _create_temp(self, f: _File, dir_fd: int) -> int:
        """Create `f`'s temporary file in its directory, truncated to the
        file's size (what no blob writes stays a sparse hole): an open
        descriptor for writing."""
        f.temp, fd = self._new_temp(dir_fd)
        try:
            if f.size:
                os.ftruncate(fd, f.size)
            if not f.single:  # it may be opened again (`_open_temp`)
                f.file_id = _fs_id(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_temp(self, index: int, dir_fd: int | None = None) -> int:
        """Open file `index`'s temporary file for writing, in its directory
        (`dir_fd` if the caller holds it open already): create it, or open it
        again, checking it is still the file that was created."""
        f = self._files[index]
        parent = self._open_parent(f.parent, f.parent_id) if dir_fd is None else dir_fd
        try:
            if f.temp is None:
                return self._create_temp(f, parent)
            fd = os.open(f.temp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            if dir_fd is None:
                os.close(parent)
        if _fs_id(fd) != f.file_id:
            os.close(fd)
            raise RestoreError(f"{_display(f.path)} was replaced during the restore")
        return fd

    def _open_parent(self, parent: bytes, parent_id: tuple[int, int]) -> int:
        try:
            return file_writer.open_directory(self.target, parent, parent_id)
        except DirectoryReplacedError:
            raise RestoreError(
                f"{_display(parent) or 'the target'} was replaced during the restore"
            ) from None

    @contextlib.contextmanager
    def _fetching(self, progress: Callable[[RestoreStats], None] | None) -> Iterator[None]:
        """The fetch threads, for the body to give ranges to (`_fetch_batch`).
        When the body ends, every range is waited for, the writer closed and
        its failure raised. A failed fetch or write stops the restore
        (RestoreStoppedError); any failure stops the fetch threads (what they
        hold is finished, the rest dropped)."""
        self._progress = progress
        try:
            try:
                with ThreadPoolExecutor(self.threads, thread_name_prefix="keep-restore") as self._pool:
                    try:
                        yield
                        self._wait_fetched()
                    except BaseException:  # Ctrl-C while waiting, too: what is not started is dropped
                        self._stop.set()
                        with contextlib.suppress(_Stopped):  # the first failure is the one to report
                            self._wait_fetched()
                        raise
            finally:  # every file a writer was given is in place or reported before anything is said
                self._pool = None
                self._writer.close(abandon=self._stop.is_set())
                self._inline.close()  # what a fetch thread wrote inline is done (the pool has ended)
                self._open_files.close_all()
            if self._write_failure is not None:
                raise _Stopped(self._write_failure)
        except _Stopped as stopped:
            cause = stopped.cause
            if isinstance(cause, OSError):
                raise self._stopped(_os_failure(cause, self._bytes_left())) from None
            if isinstance(cause, KeepError):
                raise self._stopped(str(cause), cause.exit_code) from None
            raise cause from None

    def _fetch_planned(self) -> None:
        """Plan the walked files PLAN_BATCH at a time and give each batch's
        ranges to the fetch threads, staying RANGES_AHEAD ranges per thread
        ahead of them: the plan of a batch (~400 bytes a file) lives only
        until its ranges are written."""
        content, self._content = self._content, []
        for first in range(0, len(content), PLAN_BATCH):
            self._fetch_batch(content[first : first + PLAN_BATCH], first)

    def _fetch_batch(self, content: list[tuple[bytes, ...]], first: int) -> None:
        """Files `first`… (their blobs in `content`): plan them and queue
        their ranges. Once HELPERS_FROM one-blob files are planned, helper
        processes write those that follow. Raises `_Stopped` once a fetch or
        a write has failed."""
        if self._pool is None:
            raise RuntimeError("files planned outside `_fetching`")
        if self._writer is self._inline:
            self._singles += sum(self._files[i].single for i in range(first, first + len(content)))
            if self._singles >= HELPERS_FROM:
                try:
                    self._writer = HelperWriters(
                        self.target, HELPER_PROCESSES, self._written, self._write_failed
                    )
                except OSError as exc:
                    raise _Stopped(exc) from None
        if self._write_failure is not None:
            raise _Stopped(self._write_failure)
        for rng in plan(content, self.repo.place, self.repo.pack_sizes, first):
            self._fetches.append(self._pool.submit(self._fetch_range, rng))
        self._wait_fetched(RANGES_AHEAD * self.threads)

    def _wait_fetched(self, outstanding: int = 0) -> None:
        """Wait for the oldest fetches until at most `outstanding` are left
        (those done already are always collected); raises `_Stopped` for one
        that failed. Once the restore stops, fetches not started are dropped."""
        while self._fetches and (len(self._fetches) > outstanding or self._fetches[0].done()):
            future = self._fetches.popleft()
            if self._stop.is_set():
                future.cancel()
            if future.cancelled():
                continue
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 — whatever a fetch raised stops the restore (`_fetching` raises it)
                self._stop.set()
                raise _Stopped(exc) from None

    def _fetch_range(self, rng: RangeFetch) -> None:
        """Fetch one range a blob at a time, verify each blob and write it
        everywhere it belongs: a fetch thread holds one blob, not the range,
        and the threads together hold at most HOLD_MAX (`_Budget`)."""
        if self._stop.is_set():
            return
        fetches, rng.blobs = rng.blobs, []  # what is done can go with the range
        with self.repo.remote.range_reader("pack", rng.pack_id, rng.start, rng.end, RANGE_ALIGN) as reader:
            places = [f.location for f in fetches]
            blobs = self.repo.open_range(reader, places)
            for at, (fetch, loc) in enumerate(zip(fetches, places, strict=True)):
                room = 2 * loc.entry.length + loc.entry.raw_length
                self._holding.take(room)
                try:
                    try:
                        _, plain = next(blobs)
                    except FILE_FAILURES as exc:  # the range is missing or short: the rest is not there
                        self._give_up(fetches[at:], exc)
                        break
                    if isinstance(plain, bytes):
                        self._place(fetch, plain)
                    else:
                        self._give_up([fetch], plain)
                    del plain  # released before the room is
                finally:
                    self._holding.give(room)
        with self._lock:
            self.stats.bytes_fetched += rng.end - rng.start
        if self._progress is not None:
            self._progress(self.stats)

    def _place(self, fetch: BlobFetch, plain: bytes) -> None:
        """Write a verified blob everywhere it belongs."""
        runs: list[tuple[int, int]] | None = None
        for t in fetch.targets:
            f = self._files[t.file]
            if f.single:
                self._write_whole(t.file, f, plain)
                continue
            if runs is None:
                runs = data_runs(plain)
            if runs and f.failure is None:
                self._write(t.file, memoryview(plain), runs, t.offset)
            self._wrote(t.file, len(plain))

    def _write_whole(self, index: int, f: _File, plain: bytes) -> None:
        """A file made of one blob: the writer creates, writes and finishes
        it in one go (`file_writer.write_job`) and reports it to `_written`."""
        f.temp = self._new_temp_name()
        owner = (f.uid, f.gid) if self._is_root else None
        self._writer.write(
            Job(
                index,
                f.parent,
                f.parent_id,
                f.temp,
                f.name,
                plain,
                f.size,
                f.mode,
                owner,
                f.xattrs,
                f.mtime_ns,
            )
        )

    def _written(self, index: int) -> None:
        f = self._files[index]
        # In place: its temporary name is not needed again (100,000 of them
        # held to the end were ~6 MiB of the restore's peak).
        f.done, f.temp = True, None
        with self._lock:
            self.stats.files_written += 1
            self.stats.bytes_written += f.size
        self.stats.current = f.path

    def _write_failed(self, index: int, exc: OSError) -> None:
        exc.filename = _display(self._files[index].path)
        with self._lock:
            if self._write_failure is None:
                self._write_failure = exc
        self._stop.set()

    def _into_place(self, f: _File, fd: int, dir_fd: int) -> None:
        """Give a complete file its metadata through its descriptor (closed
        here), then rename it over its final name in its directory."""
        try:
            owner = (f.uid, f.gid) if self._is_root else None
            file_writer.set_meta(fd, f.mode, owner, f.xattrs, f.mtime_ns)
        finally:
            os.close(fd)
        if f.temp is None:  # cannot be: `fd` is its temporary file
            raise RuntimeError(f"{_display(f.path)} has no temporary name")
        os.rename(f.temp, f.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        f.done, f.temp = True, None
        self.stats.files_written += 1  # several threads: a display figure, not a result
        self.stats.current = f.path

    def _write(self, index: int, plain: memoryview, runs: list[tuple[int, int]], offset: int) -> None:
        with self._open_files.hold(index) as fd:
            self._pwrite_runs(self._files[index], fd, plain, runs, offset)

    @staticmethod
    def _pwrite_runs(f: _File, fd: int, plain: memoryview, runs: list[tuple[int, int]], offset: int) -> None:
        try:
            for start, end in runs:
                file_writer.pwrite_all(fd, plain[start:end], offset + start)
        except OSError as exc:
            exc.filename = _display(f.path)
            raise

    def _wrote(self, index: int, length: int) -> None:
        """One blob's part of file `index` is written (or given up on); the
        thread that does the file's last part finishes it."""
        with self._lock:
            f = self._files[index]
            f.pending -= 1
            if f.failure is None:
                self.stats.bytes_written += length
            last = f.pending == 0
        if last:
            self._finish(index, self._open_files.take(index))

    def _give_up(self, fetches: list[BlobFetch], exc: KeepError) -> None:
        """Nothing unverified is ever written: the files that needed these
        blobs are removed once their other blobs are through, and whatever
        the target held under their names before stays."""
        with self._lock:
            for fetch in fetches:
                for t in fetch.targets:
                    f = self._files[t.file]
                    if f.failure is None:
                        f.failure = exc
        for fetch in fetches:
            for t in fetch.targets:
                self._wrote(t.file, 0)

    def _restore_carefully(self) -> None:
        """Files whose layout the index cannot be trusted for: each blob is
        read and verified (every copy an index names is tried) before its
        real length places the next one."""
        for index in self._careful:
            f = self._files[index]
            fd = self._open_temp(index)
            try:
                offset = 0
                for bid in f.content:
                    plain = self.repo.read_blob(bid)
                    self._pwrite_runs(f, fd, memoryview(plain), data_runs(plain), offset)
                    offset += len(plain)
                if offset != f.size:
                    raise IntegrityError(f"its blobs hold {offset} bytes, not {f.size}")
                self.stats.bytes_written += offset
            except FILE_FAILURES as exc:
                f.failure = exc
            finally:
                os.close(fd)
            self._finish(index, None)

    def _bytes_left(self) -> int:
        return sum(f.size for f in self._files if not f.done)

    def _stopped(self, cause: str, exit_code: ExitCode = ExitCode.FATAL) -> RestoreStoppedError:
        """The error for a stop; `run` removes the temporary files on its way out."""
        names = [_display(f.path) for f in self._files if f.failure is not None or not f.done]
        names += [_display(link.path) for link in self._links]
        return RestoreStoppedError(
            f"restore stopped: {cause}; {len(names)} file(s) not restored, left as they were",
            exit_code,
            names,
        )

    def _finish(self, index: int, fd: int | None) -> None:
        """File `index` has all its data (or failed): give it its metadata
        and rename it into place, or remove it."""
        f = self._files[index]
        if f.failure is not None:
            if fd is not None:
                os.close(fd)
            self._unlink_temp(f)
            f.done = True
            self.warn(f.path, f"not restored: {f.failure}")
            return
        try:
            dir_fd = self._open_parent(f.parent, f.parent_id)
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        try:
            self._into_place(f, self._open_temp(index, dir_fd) if fd is None else fd, dir_fd)
        finally:
            os.close(dir_fd)

    def _unlink_temp(self, f: _File) -> None:
        if f.temp is None:
            return  # never created
        with contextlib.suppress(FileNotFoundError):
            dir_fd = self._open_parent(f.parent, f.parent_id)
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f.temp, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)

    def _remove_temps(self) -> None:
        """Remove every temporary file not renamed into place (best effort:
        this runs on the way out of a failure)."""
        for f in self._files:
            if not f.done:
                with contextlib.suppress(OSError, RestoreError):
                    self._unlink_temp(f)

    # Phase 3 ---------------------------------------------------------------
    def _make_links(self) -> None:
        for link in self._links:
            first_failed = link.first_file is not None and self._files[link.first_file].failure
            if first_failed:
                self.warn(link.path, f"not restored: {first_failed}")
                self.stats.files -= 1
                self.stats.files_failed += 1
                continue
            try:
                dir_fd = self._open_parent(link.parent, link.parent_id)
            except (OSError, RestoreError) as exc:
                self.warn(link.path, f"cannot restore: {exc}")
                continue
            try:
                first = os.stat(os.path.join(self.target, link.first), follow_symlinks=False)
                with contextlib.suppress(FileNotFoundError):
                    if _same_file(os.stat(link.node.name, dir_fd=dir_fd, follow_symlinks=False), first):
                        continue  # linked already (rename would leave the temporary name behind)
                temp = self._new_temp_name()
                os.link(os.path.join(self.target, link.first), temp, dst_dir_fd=dir_fd, follow_symlinks=False)
                try:
                    os.rename(temp, link.node.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except OSError:
                    os.unlink(temp, dir_fd=dir_fd)
                    raise
            except OSError as exc:
                self.warn(link.path, f"cannot restore: {exc.strerror}")
            finally:
                os.close(dir_fd)

    def _new_temp_name(self) -> bytes:
        return self._temp_prefix + b"%x" % next(self._temps)

    def _apply_metadata(self) -> None:
        entries = self._meta + sorted(self._dirs, key=lambda d: -d[0].count(b"/"))
        for path, node in entries:
            full = os.path.join(self.target, path)
            try:
                self._set_meta(full, node)
            except OSError as exc:
                self.warn(path, f"cannot restore metadata: {exc.strerror}")

    def _set_meta(self, where: bytes | int, node: Node) -> None:
        """Ownership (as root), xattrs, mode and times of `where`: a path (not
        followed if it is a symlink) or an open descriptor."""
        file_writer.set_meta(
            where,
            None if node.type is NodeType.SYMLINK else node.mode,
            (node.uid, node.gid) if self._is_root else None,
            node.xattrs,
            node.mtime_ns,
        )

    # Verification ----------------------------------------------------------
    def verify(self) -> list[PathWarning]:
        """Read every restored file back, cut and hash it as a backup would,
        and compare with the snapshot's content ids and size: what did not
        come out as it went in (whatever the cause: a restore bug, the disk,
        another process writing meanwhile)."""
        todo = [(f.path, f.size, f.content) for f in self._files if f.done and f.failure is None]
        todo += [(path, node.size, node.content) for path, node in self._up_to_date]
        todo += [
            (link.path, link.node.size, link.node.content) for link in self._links if self._link_ok(link)
        ]
        with ThreadPoolExecutor(self.threads, thread_name_prefix="keep-verify") as pool:
            problems = pool.map(lambda item: compare_file(self.repo.keys, self.target, *item), todo)
            return [
                PathWarning(_display(p), problem)
                for (p, _, _), problem in zip(todo, problems, strict=True)
                if problem
            ]

    def _link_ok(self, link: _Link) -> bool:
        return link.first_file is None or self._files[link.first_file].failure is None


def compare_file(
    keys: RepositoryKeys, root: bytes, path: bytes, size: int, content: tuple[bytes, ...]
) -> str:
    """Why the file at `root`/`path` does not hold a file node's `content` of
    `size` bytes, or "" if it does."""
    try:
        fd = os.open(os.path.join(root, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return "was not restored"
    except OSError as exc:
        return f"cannot be read back: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "was not restored as a regular file"
        if st.st_size != size:
            return f"restored with {st.st_size} bytes instead of {size}"
        if content_ids(fd, keys) != content:
            return "restored content differs from what was backed up"
    finally:
        os.close(fd)
    return ""


def _listing(dir_fd: int) -> frozenset[bytes]:
    """The names an existing directory holds (one read of it instead of a
    lookup per name the snapshot has there)."""
    return frozenset(map(os.fsencode, os.listdir(dir_fd)))


def _fs_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _parents(absolute: bytes) -> Iterator[bytes]:
    """The directories above an absolute path, nearest first, without "/"."""
    while (absolute := absolute.rpartition(b"/")[0]) != b"":
        yield absolute


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _os_failure(exc: OSError, bytes_left: int) -> str:
    where = f" writing {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full{where} (about {bytes_left:,} more bytes are needed)"
    return f"{exc.strerror or exc}{where}"


def content_ids(fd: int, keys: RepositoryKeys) -> tuple[bytes, ...]:
    """The blob ids of an open file's content, cut as a backup would cut it:
    what a node's `content` must equal if the file holds the same bytes."""
    chunker = Chunker(keys.chunker)
    ids: list[bytes] = []
    data = b""
    while block := os.read(fd, 16 << 20):
        data = data + block
        pos = 0
        for n in chunker.cut(data, final=False):
            ids.append(blob_id(keys.id, memoryview(data)[pos : pos + n]))
            pos += n
        data = data[pos:]
    pos = 0
    for n in chunker.cut(data, final=True):
        ids.append(blob_id(keys.id, memoryview(data)[pos : pos + n]))
        pos += n
    # A backup stores an empty file as one empty blob (the chunker cuts none).
    return tuple(ids) or (blob_id(keys.id, b""),)

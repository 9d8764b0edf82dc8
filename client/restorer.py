"""Restore: recreate a snapshot's tree under a target directory.

Phase 1 walks the snapshot's trees and creates directories, empty files
(truncated to size, so unwritten regions stay sparse holes), symlinks, FIFOs,
device nodes and hardlinks — always through directory file descriptors with
O_NOFOLLOW, so no entry, however crafted, can reach outside the target: names
are single components (checked when trees decode), an existing symlink where a
directory should be is refused, and files are opened without following links.
Files that already exist with the same size, mtime and content are skipped.
Phase 2 fetches the planned pack ranges on a few threads, verifies every blob
(AEAD tag and keyed id) and writes it in place; all-zero blobs are not written.
Phase 3 applies ownership (as root), modes, xattrs and times, deepest first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from keep.client.path_warning import PathWarning
from keep.client.repository import Repository
from keep.client.restore_plan import BlobFetch, RangeFetch, plan
from keep.protocol.blob import blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.errors import FormatError, IntegrityError, KeepError
from keep.protocol.keys import RepositoryKeys
from keep.protocol.tree import Node, NodeType, Tree

FETCH_THREADS = 4
HOLE_BLOCK = 64 * 1024  # zero runs of this size inside a blob stay holes
_ZERO_BLOCK = bytes(HOLE_BLOCK)
OPEN_FILES_MAX = 256
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RestoreError(KeepError):
    """Raised when the restore target is unusable as a whole."""


@dataclass
class RestoreStats:
    files: int = 0
    files_skipped: int = 0
    dirs: int = 0
    bytes_written: int = 0
    bytes_fetched: int = 0
    files_failed: int = 0  # data failed verification; removed, listed in warnings
    warnings: list[PathWarning] = field(default_factory=list)


@dataclass
class _File:
    path: bytes  # relative to the target
    node: Node
    dev_ino: tuple[int, int]  # of the file we created, checked before writing


def _display(path: bytes) -> str:
    return path.decode(errors="replace")


class Restorer:
    def __init__(self, repo: Repository, target: bytes, includes: tuple[bytes, ...] = ()) -> None:
        self.repo = repo
        self.target = os.path.abspath(target)
        self.includes = tuple(i.rstrip(b"/") or b"/" for i in includes)
        self.stats = RestoreStats()
        self._files: list[_File] = []
        self._content: list[list[tuple[bytes, int]]] = []
        self._dirs: list[tuple[bytes, Node]] = []
        self._links: dict[tuple[int, int], bytes] = {}
        self._meta: list[tuple[bytes, Node]] = []
        self._is_root = os.geteuid() == 0
        self._lock = threading.Lock()
        self._failed: dict[int, str] = {}  # file index -> why its data failed verification

    def warn(self, path: bytes, message: str) -> None:
        with self._lock:
            self.stats.warnings.append(PathWarning(_display(path), message))

    # Selection -------------------------------------------------------------
    def _wanted(self, path: bytes) -> tuple[bool, bool]:
        """(restore this entry, descend into it)."""
        if not self.includes:
            return True, True
        absolute = b"/" + path
        for inc in self.includes:
            if absolute == inc or absolute.startswith(inc.rstrip(b"/") + b"/") or inc == b"/":
                return True, True
            if inc.startswith(absolute + b"/"):
                return False, True  # an ancestor of an included path
        return False, False

    # Phase 1 ---------------------------------------------------------------
    def run(self, root_tree: bytes, progress: Callable[[RestoreStats], None] | None = None) -> RestoreStats:
        os.makedirs(self.target, exist_ok=True)
        try:
            root_fd = os.open(self.target, DIR_FLAGS)
        except OSError as exc:
            raise RestoreError(f"cannot open restore target: {exc.strerror}") from None
        try:
            self._restore_dir(root_fd, b"", root_tree)
        finally:
            os.close(root_fd)
        self._fetch_and_write(progress)
        self._remove_failed()
        self._apply_metadata()
        self.stats.files_failed = len(self._failed)
        return self.stats

    def _restore_dir(self, dir_fd: int, rel: bytes, tree_id: bytes) -> None:
        tree = Tree.from_bytes(self.repo.read_tree_bytes(tree_id))
        for node in tree.nodes:
            path = os.path.join(rel, node.name) if rel else node.name
            restore, descend = self._wanted(path)
            if not (restore or descend):
                continue
            try:
                if node.type is NodeType.DIR:
                    self._make_dir(dir_fd, path, node, restore)
                elif restore:
                    self._make_entry(dir_fd, path, node)
            except OSError as exc:
                self.warn(path, f"cannot restore: {exc.strerror}")

    def _make_dir(self, dir_fd: int, path: bytes, node: Node, restore: bool) -> None:
        try:
            os.mkdir(node.name, 0o700, dir_fd=dir_fd)
        except FileExistsError:
            st = os.stat(node.name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.warn(path, "exists and is not a directory (not followed)")
                return
        child_fd = os.open(node.name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            if node.subtree is not None:
                self._restore_dir(child_fd, path, node.subtree)
        finally:
            os.close(child_fd)
        if restore:
            self.stats.dirs += 1
            self._dirs.append((path, node))

    def _make_entry(self, dir_fd: int, path: bytes, node: Node) -> None:
        name = node.name
        if node.type is NodeType.FILE:
            self._make_file(dir_fd, path, node)
            return
        self._remove_existing(dir_fd, name, path)
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

    def _remove_existing(self, dir_fd: int, name: bytes, path: bytes) -> None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, "a directory is in the way")
        os.unlink(name, dir_fd=dir_fd)

    def _make_file(self, dir_fd: int, path: bytes, node: Node) -> None:
        key = (node.device_id, node.inode)
        if node.links > 1 and key in self._links:
            self._remove_existing(dir_fd, node.name, path)
            os.link(
                os.path.join(self.target, self._links[key]),
                node.name,
                dst_dir_fd=dir_fd,
                follow_symlinks=False,
            )
            self.stats.files += 1
            return
        if self._matches_existing(dir_fd, node):
            self.stats.files_skipped += 1
            self._meta.append((path, node))
            if node.links > 1:
                self._links[key] = path
            return
        self._remove_existing(dir_fd, node.name, path)
        fd = os.open(
            node.name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
        try:
            os.ftruncate(fd, node.size)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if node.links > 1:
            self._links[key] = path
        self._files.append(_File(path, node, (st.st_dev, st.st_ino)))
        offsets: list[tuple[bytes, int]] = []
        offset = 0
        for bid in node.content:
            loc = self.repo.locate(bid)
            if loc is None:
                self.warn(path, f"blob {bid.hex()[:12]} is missing from the repository")
                offsets = []
                break
            offsets.append((bid, offset))
            offset += loc.entry.raw_length
        self._content.append(offsets)
        self._meta.append((path, node))
        self.stats.files += 1

    def _matches_existing(self, dir_fd: int, node: Node) -> bool:
        try:
            fd = os.open(node.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != node.size or st.st_mtime_ns != node.mtime_ns:
                return False
            return content_ids(fd, self.repo.keys) == node.content
        finally:
            os.close(fd)

    # Phase 2 ---------------------------------------------------------------
    def _fetch_and_write(self, progress: Callable[[RestoreStats], None] | None) -> None:
        ranges = plan(self._content, self.repo.readable, self.repo.pack_sizes)
        fds: OrderedDict[int, int] = OrderedDict()
        fd_lock = threading.Lock()

        def fd_for(index: int) -> int:
            with fd_lock:
                fd = fds.get(index)
                if fd is not None:
                    fds.move_to_end(index)
                    return fd
                f = self._files[index]
                fd = os.open(os.path.join(self.target, f.path), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != f.dev_ino:
                    os.close(fd)
                    raise RestoreError(f"{_display(f.path)} was replaced during the restore")
                fds[index] = fd
                while len(fds) > OPEN_FILES_MAX:
                    _, old = fds.popitem(last=False)
                    os.close(old)
                return fd

        def fail(fetches: list[BlobFetch], exc: KeepError) -> None:
            # Nothing unverified is ever written; the files that needed this
            # data are removed afterwards rather than left half-filled.
            with self._lock:
                for fetch in fetches:
                    for t in fetch.targets:
                        self._failed.setdefault(t.file, str(exc))

        def work(rng: RangeFetch) -> None:
            try:
                data = self.repo.remote.get_range("pack", rng.pack_id, rng.start, rng.end)
            except (IntegrityError, FormatError) as exc:
                fail(rng.blobs, exc)
                return
            view = memoryview(data)
            for fetch in rng.blobs:
                entry = fetch.location.entry
                rel = entry.offset - rng.start
                try:
                    plain = self.repo.open_located(fetch.location, view[rel : rel + entry.length])
                except (IntegrityError, FormatError) as exc:
                    fail([fetch], exc)
                    continue
                runs = _data_runs(plain)
                for t in fetch.targets:
                    if runs:
                        fd = fd_for(t.file)
                        for start, end in runs:
                            os.pwrite(fd, memoryview(plain)[start:end], t.offset + start)
                    with self._lock:
                        self.stats.bytes_written += len(plain)
            with self._lock:
                self.stats.bytes_fetched += len(data)
            if progress is not None:
                progress(self.stats)

        try:
            with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="keep-restore") as pool:
                for future in [pool.submit(work, r) for r in ranges]:
                    future.result()
        finally:
            for fd in fds.values():
                os.close(fd)

    def _remove_failed(self) -> None:
        """Files whose data failed verification are removed, not left with
        holes where the data should be."""
        for index, reason in sorted(self._failed.items()):
            f = self._files[index]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.target, f.path))
            self._meta = [(p, n) for p, n in self._meta if p != f.path]
            self.warn(f.path, f"not restored: {reason}")

    # Phase 3 ---------------------------------------------------------------
    def _apply_metadata(self) -> None:
        entries = self._meta + sorted(self._dirs, key=lambda d: -d[0].count(b"/"))
        for path, node in entries:
            full = os.path.join(self.target, path)
            try:
                self._set_meta(full, node)
            except OSError as exc:
                self.warn(path, f"cannot restore metadata: {exc.strerror}")

    def _set_meta(self, full: bytes, node: Node) -> None:
        link = node.type is NodeType.SYMLINK
        if self._is_root:
            os.chown(full, node.uid, node.gid, follow_symlinks=False)
        if not link:
            for name, value in node.xattrs:
                try:
                    os.setxattr(full, name, value, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP):
                        raise
            os.chmod(full, node.mode)
        os.utime(full, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)


def _data_runs(data: bytes) -> list[tuple[int, int]]:
    """[start, end) runs of `data` that are not all-zero HOLE_BLOCKs; the file
    was truncated to size beforehand, so skipped blocks stay sparse holes."""
    runs: list[tuple[int, int]] = []
    for start in range(0, len(data), HOLE_BLOCK):
        end = min(start + HOLE_BLOCK, len(data))
        # bytes == bytes is a memcmp; memoryview == bytes compares byte by
        # byte in Python's C loop (2.9 ms per MiB of zeros, against 0.07).
        if data[start:end] == _ZERO_BLOCK[: end - start]:
            continue
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


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
    return tuple(ids)


def walk(repo: Repository, tree_id: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Node]]:
    """Every (path, node) of a snapshot, depth first."""
    for node in Tree.from_bytes(repo.read_tree_bytes(tree_id)).nodes:
        path = prefix + b"/" + node.name
        yield path, node
        if node.type is NodeType.DIR and node.subtree is not None:
            yield from walk(repo, node.subtree, path)

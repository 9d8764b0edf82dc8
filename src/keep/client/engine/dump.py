"""`keep dump`: a file's content, or a directory as a tar or zip stream, out
of a snapshot. One blob is held at a time, so memory stays bounded whatever
the size; every blob is authenticated and re-hashed before its bytes are
written, as in a restore. Its own module so that a backup or a restore does
not import the archive formats.
"""

from __future__ import annotations

import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterable
from typing import BinaryIO

from keep.client.engine.explore import node_at, walk
from keep.client.engine.repository import Repository
from keep.protocol.errors import NotFoundError
from keep.protocol.tree import Node, NodeType


class BlobReader:
    """A file's content as a stream, one verified blob at a time."""

    def __init__(self, repo: Repository, content: Iterable[bytes]) -> None:
        self._repo = repo
        self._blobs = iter(content)
        self._buffer = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if not self._buffer:
                blob = next(self._blobs, None)
                if blob is None:
                    break
                self._buffer = memoryview(self._repo.read_blob(blob))
            take = len(self._buffer) if size < 0 else min(size - len(out), len(self._buffer))
            out += self._buffer[:take]
            self._buffer = self._buffer[take:]
        return bytes(out)


def dump_file(repo: Repository, node: Node, out: BinaryIO) -> int:
    """A regular file's bytes to `out`; the number written."""
    written = 0
    for blob in node.content:
        data = repo.read_blob(blob)
        out.write(data)
        written += len(data)
    return written


def dump_tree(repo: Repository, root: bytes, path: bytes, out: BinaryIO, archive: str = "tar") -> int:
    """The directory at `path` as a tar (POSIX pax) or zip stream on `out`,
    names relative to its parent, with modes, owners, times, symlinks,
    hardlinks (tar) and xattrs (tar); entries written."""
    node = node_at(repo, root, path)
    if node is None or node.type is not NodeType.DIR:
        raise NotFoundError(f"{os.fsdecode(path)} is not a directory in this snapshot")
    base = os.path.basename(path.rstrip(b"/")) or b"root"
    entries = [(base, node), *(walk(repo, node.subtree, base) if node.subtree is not None else ())]
    if archive == "zip":
        return _zip(repo, entries, out)
    return _tar(repo, entries, out)


_TAR_TYPES = {
    NodeType.FILE: tarfile.REGTYPE,
    NodeType.DIR: tarfile.DIRTYPE,
    NodeType.SYMLINK: tarfile.SYMTYPE,
    NodeType.FIFO: tarfile.FIFOTYPE,
    NodeType.CHARDEV: tarfile.CHRTYPE,
    NodeType.BLOCKDEV: tarfile.BLKTYPE,
}


def _tar(repo: Repository, entries: list[tuple[bytes, Node]], out: BinaryIO) -> int:
    first_names: dict[tuple[int, int], str] = {}
    # Names that are not UTF-8 survive as raw bytes (pax hdrcharset=BINARY).
    with tarfile.open(
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for path, node in entries:
            info = tarfile.TarInfo(os.fsdecode(path))
            info.type = _TAR_TYPES[node.type]
            info.mode, info.uid, info.gid = node.mode, node.uid, node.gid
            info.uname, info.gname = node.user, node.group
            info.mtime = node.mtime_ns / 1e9
            info.pax_headers = {"mtime": f"{node.mtime_ns // 10**9}.{node.mtime_ns % 10**9:09d}"}
            for name, value in node.xattrs:
                info.pax_headers["SCHILY.xattr." + os.fsdecode(name)] = value.decode(
                    "utf-8", "surrogateescape"
                )
            if node.type is NodeType.SYMLINK:
                info.linkname = os.fsdecode(node.target)
            elif node.type in (NodeType.CHARDEV, NodeType.BLOCKDEV):
                info.devmajor, info.devminor = os.major(node.rdev), os.minor(node.rdev)
            elif node.type is NodeType.FILE:
                key = (node.device_id, node.inode)
                if node.links > 1 and key in first_names:
                    info.type, info.linkname = tarfile.LNKTYPE, first_names[key]
                else:
                    if node.links > 1:
                        first_names[key] = info.name
                    info.size = node.size
                    tar.addfile(info, BlobReader(repo, node.content))
                    continue
            tar.addfile(info)
    return len(entries)


def _zip(repo: Repository, entries: list[tuple[bytes, Node]], out: BinaryIO) -> int:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path, node in entries:
            name = os.fsdecode(path) + ("/" if node.type is NodeType.DIR else "")
            info = zipfile.ZipInfo(name, _zip_time(node.mtime_ns))
            kind = {NodeType.DIR: stat.S_IFDIR, NodeType.SYMLINK: stat.S_IFLNK}.get(node.type, stat.S_IFREG)
            info.external_attr = (kind | node.mode) << 16
            if node.type is NodeType.FILE:
                with archive.open(info, "w", force_zip64=True) as member:
                    dump_file(repo, node, member)  # type: ignore[arg-type]
            elif node.type is NodeType.SYMLINK:
                archive.writestr(info, node.target)
            elif node.type is NodeType.DIR:
                archive.writestr(info, b"")
            # FIFOs and devices have no place in a zip file
    return len(entries)


def _zip_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(max(mtime_ns // 10**9, 315532800))  # zip cannot hold times before 1980
    return (max(t.tm_year, 1980), t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)

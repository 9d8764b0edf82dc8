"""Builds source trees with every file type and metadata Keep restores, and
compares trees (content and metadata)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path


def make_rich_tree(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "docs").mkdir()
    (root / "docs" / "readme.txt").write_text("hello keep\n" * 1000)
    (root / "docs" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "docs" / "empty.txt").write_bytes(b"")
    os.chmod(root / "docs" / "readme.txt", 0o640)
    os.chmod(root / "docs", 0o750)
    # Names that are not UTF-8, contain a newline, or are 255 bytes long.
    (root / os.fsdecode(b"caf\xe9-latin1.txt")).write_bytes(b"latin-1 name")
    (root / "name with\nnewline").write_text("newline in name")
    (root / ("x" * 255)).write_text("long name")
    # Symbolic links: relative, absolute and dangling.
    os.symlink("docs/readme.txt", root / "link-rel")
    os.symlink("/etc/hostname", root / "link-abs")
    os.symlink("does-not-exist", root / "link-dangling")
    # hardlinks
    (root / "hard-a").write_text("shared inode")
    os.link(root / "hard-a", root / "hard-b")
    # sparse file: 8 MiB hole, a little data at the end
    with open(root / "sparse.img", "wb") as f:
        f.truncate(12 * 1024 * 1024)
        f.seek(10 * 1024 * 1024)
        f.write(b"data after a hole")
    # FIFO
    os.mkfifo(root / "fifo")
    # xattrs (user namespace)
    with contextlib.suppress(OSError):
        os.setxattr(root / "docs" / "readme.txt", "user.keep.test", b"xattr value")
    # fixed times
    for p in [root / "docs" / "readme.txt", root / "hard-a"]:
        os.utime(p, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.utime(root / "link-rel", ns=(1_500_000_000_000_000_000,) * 2, follow_symlinks=False)


def make_deep_tree(root: Path, depth: int) -> None:
    """`root`/deep/d/d/…/bottom.txt, `depth` directories down: longer than
    PATH_MAX would allow in one path, so made one step at a time (the process
    leaves the tree again whatever happens)."""
    (root / "deep").mkdir()
    here = os.getcwd()
    os.chdir(root / "deep")
    try:
        for _ in range(depth):
            os.mkdir("d")
            os.chdir("d")
        Path("bottom.txt").write_text("at the bottom\n")
    finally:
        os.chdir(here)


def add_socket(root: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "app.sock"))
    return s


def describe(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Everything restore promises to keep, per relative path."""
    out: dict[bytes, tuple[object, ...]] = {}
    base = os.fsencode(root)
    inodes: dict[int, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            entry: tuple[object, ...] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    entry += (f.read(), st.st_mtime_ns)
                if st.st_nlink > 1:
                    entry += (inodes.setdefault(st.st_ino, rel),)
                with contextlib.suppress(OSError):
                    entry += (tuple(sorted((n, os.getxattr(full, n)) for n in os.listxattr(full))),)
            elif stat.S_ISLNK(st.st_mode):
                entry = (kind, os.readlink(full), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                entry += (st.st_mtime_ns,)
            out[rel] = entry
    return out


def allocated_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512

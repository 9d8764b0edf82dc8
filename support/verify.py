"""Does a restored tree equal its source? Byte for byte and entry for entry:
what every restore in the demo and the benchmarks is checked with."""

from __future__ import annotations

import os
import stat
from pathlib import Path

MiB = 1024 * 1024


def _entry(path: Path) -> tuple[object, ...]:
    st = path.lstat()
    kind = stat.S_IFMT(st.st_mode)
    meta = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
    if stat.S_ISLNK(st.st_mode):
        return (kind, os.readlink(path), st.st_uid, st.st_gid, st.st_mtime_ns)
    if stat.S_ISREG(st.st_mode):
        return (*meta, st.st_size)
    return meta


def _same_bytes(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            block = fa.read(MiB)
            if block != fb.read(MiB):
                return False
            if not block:
                return True


def verify_restore(source: Path, restored: Path, limit: int = 10) -> list[str]:
    """Up to `limit` differences between a source tree and its restored copy:
    every entry's type, mode, owner, mtime (and size, symlink target), every
    regular file's bytes, and entries missing or extra. [] when identical."""
    problems: list[str] = []
    if not restored.is_dir():
        return [f"{restored} was not restored"]
    for dirpath, dirnames, filenames in os.walk(source):
        here = Path(dirpath)
        there = restored / here.relative_to(source)
        names = set(dirnames) | set(filenames)
        try:
            extra = set(os.listdir(there)) - names
        except OSError as exc:
            problems.append(f"{there}: {exc.strerror}")
            continue
        problems += [f"{there / n}: not in the source" for n in sorted(extra)]
        for name in sorted(names):
            a, b = here / name, there / name
            try:
                ea, eb = _entry(a), _entry(b)
            except OSError as exc:
                problems.append(f"{b}: {exc.strerror}")
                continue
            if ea != eb:
                problems.append(f"{b}: metadata {eb} != source {ea}")
            elif stat.S_ISREG(a.lstat().st_mode) and not _same_bytes(a, b):
                problems.append(f"{b}: content differs")
            if len(problems) >= limit:
                return problems[:limit]
    return problems[:limit]

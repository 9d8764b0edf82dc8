"""`keep drill`: prove that a restore works, on a sample, regularly.

A random sample of files of a snapshot is restored through the ordinary
restore path into a private temporary directory; then each restored file is
read back, cut and hashed exactly as a backup would, and must give the blob
ids recorded for it at backup time (and its size). That catches damaged
objects and restore bugs alike. The outcome is kept in `$KEEP_HOME/drill.json`
(shown by `keep stats` and the admin page); the restored copies are removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keep.client.device_state import read_record, write_private
from keep.client.repository import Repository, SnapshotInfo
from keep.client.restorer import Restorer, content_ids, walk
from keep.protocol.tree import Node, NodeType

DRILL_FILE = "drill.json"
SAMPLE_FILES = 20
SAMPLE_BYTES = 1 << 30  # stop adding files to the sample beyond this many bytes


@dataclass
class DrillResult:
    snapshot: str
    time: float  # epoch seconds the drill ended
    files: int = 0
    bytes: int = 0
    mismatches: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches


def choose(files: list[tuple[bytes, Node]], count: int, max_bytes: int) -> list[tuple[bytes, Node]]:
    """A uniformly random sample of at most `count` files and about `max_bytes`."""
    picked: list[tuple[bytes, Node]] = []
    total = 0
    for path, node in secrets.SystemRandom().sample(files, len(files)):
        if len(picked) >= count:
            break
        if picked and total + node.size > max_bytes:
            continue
        picked.append((path, node))
        total += node.size
    return picked


def drill(repo: Repository, info: SnapshotInfo, home: Path, count: int = SAMPLE_FILES) -> DrillResult:
    started = time.monotonic()
    files = [(p, n) for p, n in walk(repo, info.snapshot.tree) if n.type is NodeType.FILE]
    sample = choose(files, count, SAMPLE_BYTES)
    result = DrillResult(info.id, 0.0, len(sample), sum(n.size for _, n in sample))
    scratch = Path(tempfile.mkdtemp(prefix="drill-", dir=home))  # mode 0700, beside the state
    try:
        warnings: dict[str, str] = {}
        if sample:
            restorer = Restorer(repo, os.fsencode(scratch), tuple(p for p, _ in sample))
            stats = restorer.run(info.snapshot.tree)
            warnings = {"/" + w.path.lstrip("/"): w.message for w in stats.warnings}
        for path, node in sample:
            problem = _compare(repo, os.fsencode(scratch) + path, node)
            if problem and os.fsdecode(path) in warnings:
                problem += f" ({warnings[os.fsdecode(path)]})"
            if problem:
                result.mismatches.append({"path": os.fsdecode(path), "problem": problem})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.time = time.time()
    result.seconds = time.monotonic() - started
    save(home, result)
    return result


def _compare(repo: Repository, restored: bytes, node: Node) -> str:
    try:
        fd = os.open(restored, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return "was not restored"
    except OSError as exc:
        return f"cannot be read back: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "was not restored as a regular file"
        if st.st_size != node.size:
            return f"restored with {st.st_size} bytes instead of {node.size}"
        if content_ids(fd, repo.keys) != node.content:
            return "restored content differs from what was backed up"
    finally:
        os.close(fd)
    return ""


def save(home: Path, result: DrillResult) -> None:
    write_private(home / DRILL_FILE, json.dumps({**asdict(result), "ok": result.ok}, indent=1).encode())


def last(home: Path) -> dict[str, Any] | None:
    """The last drill's record, or None if there was none (or it is unreadable)."""
    return read_record(home / DRILL_FILE)

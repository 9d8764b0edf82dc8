"""`keep drill`: prove that a restore works, on a sample, regularly.

The sample is both scattered and dense: `count` files picked uniformly at
random, plus whole directories picked at random until about DIR_FILES more
files are in. The whole sample is restored in one run of the ordinary
restorer (production fetch threads, descriptor cache and all) into a private
temporary directory; then every sampled file is read back, cut and hashed
exactly as a backup would, and must give the blob ids recorded for it at
backup time (and its size). Scattered files catch damaged objects anywhere in
the repository; whole directories have many files of similar size written
side by side by concurrent threads, which is where a restore that mixes up
files (one file's bytes in another) shows. The outcome is kept in
`$KEEP_HOME/drill.json` (shown by `keep stats` and the admin page); the
restored copies are removed.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keep.client.device.state import read_record, write_private
from keep.client.engine.explore import walk
from keep.client.engine.repository import Repository, SnapshotInfo
from keep.client.engine.restorer import Restorer, compare_file
from keep.protocol.tree import Node, NodeType

DRILL_FILE = "drill.json"
SAMPLE_FILES = 20
DIR_FILES = 2_000  # files added to the sample as whole directories
SAMPLE_BYTES = 1 << 30  # stop adding to the sample beyond this many bytes


@dataclass
class DrillResult:
    snapshot: str
    time: float  # epoch seconds the drill ended
    files: int = 0
    bytes: int = 0
    directories: int = 0  # restored whole
    mismatches: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches


def choose(
    files: list[tuple[bytes, Node]],
    count: int,
    max_bytes: int,
    dir_files: int = DIR_FILES,
    rng: random.Random | None = None,
) -> tuple[list[tuple[bytes, Node]], list[bytes]]:
    """(sampled files, whole directories among them): at most `count` files at
    random, then random directories (all their files) while fewer than
    `dir_files` were added that way; about `max_bytes` in all."""
    rng = rng or secrets.SystemRandom()
    picked: dict[bytes, Node] = {}
    total = 0
    for path, node in rng.sample(files, len(files)):
        if len(picked) >= count:
            break
        if picked and total + node.size > max_bytes:
            continue
        picked[path] = node
        total += node.size
    by_dir: dict[bytes, list[tuple[bytes, Node]]] = defaultdict(list)
    for path, node in files:
        by_dir[os.path.dirname(path)].append((path, node))
    directories: list[bytes] = []
    added = 0
    for directory in rng.sample(sorted(by_dir), len(by_dir)):
        if added >= dir_files:
            break
        members = by_dir[directory]
        size = sum(n.size for p, n in members if p not in picked)
        if len(members) < 2 or total + size > max_bytes:
            continue
        directories.append(directory)
        for path, node in members:
            if path not in picked:
                picked[path] = node
                added += 1
        total += size
    return sorted(picked.items()), directories


def drill(repo: Repository, info: SnapshotInfo, home: Path, count: int = SAMPLE_FILES) -> DrillResult:
    started = time.monotonic()
    files = [(p, n) for p, n in walk(repo, info.snapshot.tree) if n.type is NodeType.FILE]
    sample, directories = choose(files, count, SAMPLE_BYTES)
    result = DrillResult(info.id, 0.0, len(sample), sum(n.size for _, n in sample), len(directories))
    scratch = Path(tempfile.mkdtemp(prefix="drill-", dir=home))  # mode 0700, beside the state
    try:
        warnings: dict[str, str] = {}
        if sample:
            # A directory's own path restores every entry below it: its files
            # are all in the sample (subdirectories' files may come along too).
            restorer = Restorer(repo, os.fsencode(scratch), tuple(p for p, _ in sample))
            stats = restorer.run(info.snapshot.tree)
            warnings = {"/" + w.path.lstrip("/"): w.message for w in stats.warnings}
        for path, node in sample:
            problem = compare_file(
                repo.keys, os.fsencode(scratch), path.lstrip(b"/"), node.size, node.content
            )
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


def save(home: Path, result: DrillResult) -> None:
    write_private(home / DRILL_FILE, json.dumps({**asdict(result), "ok": result.ok}, indent=1).encode())


def last(home: Path) -> dict[str, Any] | None:
    """The last drill's record, or None if there was none (or it is unreadable)."""
    return read_record(home / DRILL_FILE)

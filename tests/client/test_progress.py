"""Progress on a terminal: files and bytes done of the total, rate, ETA and
the current file, redrawn while a single slow file is read; without a
terminal nothing but the summary."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from keep.client.engine.chunk_pipeline import INFLIGHT_MAX
from tests.client.conftest import Device, Terminal
from tests.client.tree_builder import describe


def slow_tree(tmp_path: Path) -> Path:
    """Small files, then one file that takes seconds at zstd level 19 and is
    larger than the bytes the backup lets in flight, so reading it has to
    wait for compression and the progress line moves at that pace (a file
    that fits in flight is read, and counted, in an instant)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"small-{i:03}.txt").write_text(f"file {i}\n" * 50)
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghijklmnop", k=rng.randint(2, 9))) for _ in range(4000)]
    text = b" ".join(rng.choice(words) for _ in range(2_200_000))  # ~14 MB of compressible text
    (src / "zz-big.txt").write_bytes(text * (INFLIGHT_MAX // len(text) + 2))
    return src


def frames(seen: bytes) -> list[str]:
    """Each redraw of the progress line, as text without the terminal codes."""
    text = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", seen).decode(errors="replace")
    return [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]


def test_backup_and_restore_progress_on_a_terminal(device: Device, tmp_path: Path) -> None:
    src = slow_tree(tmp_path)
    device.init()
    terminal = Terminal(device, "backup", str(src), "--compression", "19")
    code = terminal.finish(timeout=300)
    assert code == 0, terminal.seen
    drawn = [f for f in frames(terminal.seen) if f.startswith("backup")]
    assert len(drawn) >= 3, drawn  # redrawn while the big file is compressed
    with_total = [f for f in drawn if "/301 files" in f]
    assert with_total, drawn  # the scan's total
    assert any("zz-big.txt" in f for f in with_total)  # the current file
    assert any("ETA" in f and "%" in f for f in with_total)
    # The rate, in rich's decimal units: "512 bytes/s" while the big file has
    # yet to finish a chunk at level 19, "12.3 kB/s" or faster after.
    assert any(re.search(r"(\d+ bytes?|\d[\d,]*\.\d [kMGT]B)/s", f) for f in with_total), with_total
    assert b"snapshot " in terminal.seen  # then the summary

    target = tmp_path / "out"
    terminal = Terminal(device, "restore", "latest", "--target", str(target))
    assert terminal.finish(timeout=300) == 0, terminal.seen
    assert b"restored snapshot" in terminal.seen
    assert describe(target / str(src).lstrip("/")) == describe(src)


def test_without_a_terminal_only_the_summary(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(100_000))
    device.init()
    result = device.run("backup", str(src))
    assert result.stderr == ""
    assert result.stdout.startswith("snapshot ")
    result = device.run("restore", "latest", "--target", str(tmp_path / "out"))
    assert result.stderr == ""
    result = device.run("check", "--read-data")
    assert result.stderr == ""

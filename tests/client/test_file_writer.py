"""The helper processes that write a restore's one-blob files
(`keep.client.engine.file_writer`): what they write is what the snapshot holds, and
when anything goes wrong — a helper dies, the disk fills, the owner presses
Ctrl-C — the restore stops with one line, no temporary file is left, every
file is either the snapshot's or as it was, and no helper outlives it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keep.client.device.state import DeviceState
from keep.client.engine import file_writer, helper_process, restorer
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from keep.protocol.errors import ExitCode
from tests.client.conftest import KEEP, Device
from tests.client.test_restore_scale import make_small_files, restored
from tests.client.tmpfs import tmpfs
from tests.client.tree_builder import describe


def helpers_of(pid: int) -> list[int]:
    """PIDs of the file-writing helpers whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"keep.client.engine.file_writer" in cmdline:
            found.append(int(entry))
    return found


def no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".keep-restore-")]


def each_file_whole_or_absent(out: Path, src: Path) -> int:
    """Every file under `out` is exactly its source file; returns how many there are."""
    count = 0
    for path in out.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (src / path.relative_to(out)).read_bytes(), path
            count += 1
    return count


@pytest.fixture
def backed_up(device: Device, tmp_path: Path) -> Iterator[tuple[Repository, Path]]:
    """3,000 one-blob files, backed up; an open repository."""
    src = tmp_path / "src"
    make_small_files(src, 3_000, 300, seed=31)
    device.init()
    device.run("backup", str(src))
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, state.keys, device.home / "c2", state.suite)
        repo.load_index()
        yield repo, src


def test_the_helpers_write_every_byte_and_all_metadata(
    backed_up: tuple[Repository, Path], tmp_path: Path
) -> None:
    repo, src = backed_up
    target = tmp_path / "out"
    r = restorer.Restorer(repo, os.fsencode(target))
    (info,) = repo.snapshots()
    stats = r.run(info.snapshot.tree)
    assert isinstance(r._writer, file_writer.HelperWriters)  # 3,000 >= HELPERS_FROM
    assert stats.warnings == []
    assert stats.files_written == 3_000
    assert describe(restored(target, src)) == describe(src)
    assert no_temporaries(target)
    assert helpers_of(os.getpid()) == []


def test_a_helper_that_dies_stops_the_restore_and_leaves_nothing_half_done(
    backed_up: tuple[Repository, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One helper writes a single batch and exits (as if killed)."""
    repo, src = backed_up
    real_start = file_writer._start_helper
    started: list[int] = []

    def short_lived(target: bytes) -> subprocess.Popen[bytes]:
        if started:
            return real_start(target)
        code = (
            "import sys, keep.client.engine.file_writer as w, keep.client.engine.helper_process as h\n"
            "inp, out = sys.stdin.buffer, sys.stdout.buffer\n"
            "d = w._Directories(h.read_frame(inp))\n"
            "for job in h.read_frame(inp):\n"
            "    w.write_job(d, w.Job(*job))\n"
            "sys.exit(9)\n"  # before answering: the restorer cannot know what it wrote
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None
        helper_process.write_frame(proc.stdin, target)
        started.append(proc.pid)
        return proc

    monkeypatch.setattr(file_writer, "_start_helper", short_lived)
    target = tmp_path / "out"
    r = restorer.Restorer(repo, os.fsencode(target))
    (info,) = repo.snapshots()
    with pytest.raises(restorer.RestoreStoppedError) as stopped:
        r.run(info.snapshot.tree)
    assert "the file-writing helper process exited" in str(stopped.value)
    assert stopped.value.not_restored  # named, one by one
    out = restored(target, src)
    assert 0 < each_file_whole_or_absent(out, src) < 3_000
    assert no_temporaries(target)
    assert helpers_of(os.getpid()) == []


def test_a_full_disk_stops_the_helpers_with_one_line(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_small_files(src, 4_000, 400, seed=32)  # ~4,000 pages and more into 6 MiB
    device.init()
    device.run("backup", str(src))
    with tmpfs(tmp_path / "small", "6m") as target:
        result = device.run("restore", "latest", "--target", str(target), check=False)
        assert result.returncode == ExitCode.FATAL, result.stderr
        error = result.stderr.strip().splitlines()[-1]
        assert "the disk is full writing " in error
        assert "more bytes are needed" in error
        assert "Traceback" not in result.stderr
        assert 0 < each_file_whole_or_absent(restored(target, src), src) < 4_000
        assert no_temporaries(target)


def test_ctrl_c_stops_the_restore_and_its_helpers(device: Device, tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it, once the
    helpers are running and the first files are in place."""
    src = tmp_path / "src"
    make_small_files(src, 30_000, 500, seed=33)
    device.init()
    device.run("backup", str(src))
    target = tmp_path / "out"
    proc = subprocess.Popen(
        [KEEP, "restore", "latest", "--target", str(target)],
        env=device.environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out = restored(target, src)
    deadline = time.monotonic() + 120
    while not (helpers_of(proc.pid) and out.exists() and any(out.glob("*/f*.txt"))):
        assert proc.poll() is None, "the restore ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # Frozen at once, so that it cannot finish between the look above and
    # the interrupt (the helpers, in process groups of their own, go on).
    os.killpg(proc.pid, signal.SIGSTOP)
    assert proc.poll() is None, "the restore ended before it could be interrupted"
    helpers = helpers_of(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert b"interrupted" in stderr
    assert b"Traceback" not in stderr  # the helpers ignore SIGINT: no trace of theirs either
    assert 0 < each_file_whole_or_absent(out, src) < 30_000
    assert no_temporaries(target)
    for pid in helpers:
        assert not Path(f"/proc/{pid}").exists()
    device.run("restore", "latest", "--target", str(target))  # a second run completes the tree
    assert describe(out) == describe(src)


def test_a_helper_that_cannot_start_is_one_error_and_nothing_is_left(
    backed_up: tuple[Repository, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second helper fails to start (as with too many open files): the
    first one is ended, no thread is left waiting, nothing is written."""
    repo, _ = backed_up
    real_start = file_writer._start_helper
    calls: list[int] = []

    def second_fails(target: bytes) -> subprocess.Popen[bytes]:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(24, "Too many open files")
        return real_start(target)

    monkeypatch.setattr(file_writer, "_start_helper", second_fails)
    target = tmp_path / "out"
    r = restorer.Restorer(repo, os.fsencode(target))
    (info,) = repo.snapshots()
    with pytest.raises(restorer.RestoreStoppedError, match="Too many open files"):
        r.run(info.snapshot.tree)
    assert helpers_of(os.getpid()) == []
    assert not [t for t in threading.enumerate() if t.name == "keep-restore-feed"]
    assert not [p for p in target.rglob("*") if p.is_file()]


@pytest.mark.parametrize("helpers_from", [0, 10**9], ids=["helpers", "fetch-threads"])
@pytest.mark.parametrize("swap", ["symlink", "directory"])
def test_a_directory_swapped_mid_restore_is_refused(
    backed_up: tuple[Repository, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    helpers_from: int,
    swap: str,
) -> None:
    """A local process replaces a directory the walk made, before its files
    are written, with a symlink to elsewhere (refused: never followed) or
    with another directory (refused: not the directory the walk made).
    Nothing lands in either; the restore stops; no temporary file is left."""
    repo, src = backed_up
    monkeypatch.setattr(restorer, "HELPERS_FROM", helpers_from)
    target = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = restored(target, src) / "d0001"
    real_fetch = restorer.Restorer._fetch_planned
    swapped: list[bool] = []

    def swap_then_fetch(self: restorer.Restorer) -> None:
        if not swapped:  # before the first files are handed to the fetch threads
            swapped.append(True)
            victim.rename(victim.with_name("moved-away"))
            if swap == "symlink":
                victim.symlink_to(elsewhere)
            else:
                victim.mkdir()
        real_fetch(self)

    monkeypatch.setattr(restorer.Restorer, "_fetch_planned", swap_then_fetch)
    r = restorer.Restorer(repo, os.fsencode(target))
    (info,) = repo.snapshots()
    reason = "Not a directory" if swap == "symlink" else "replaced during the restore"
    with pytest.raises(restorer.RestoreStoppedError, match=reason):
        r.run(info.snapshot.tree)
    assert list(elsewhere.iterdir()) == []
    if swap == "directory":
        assert list(victim.iterdir()) == []
    assert no_temporaries(target)


def _job(out: Path, name: bytes, data: bytes, mode: int = 0o640) -> file_writer.Job:
    st = out.stat()
    return file_writer.Job(
        0,
        b"",
        (st.st_dev, st.st_ino),
        b".keep-restore-test-1",
        name,
        data,
        len(data),
        mode,
        None,
        (),
        1_234_567_890_123,
    )


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-file", "named-temporary"])
def test_a_file_gets_its_name_only_once_complete_and_replaces_an_old_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    """While a file is written nothing under its final name is new, and with
    an unnamed file not even a temporary name exists; once done the name holds
    exactly the data, mode and mtime; an existing file is replaced, not
    written into."""
    monkeypatch.setattr(file_writer, "_unnamed_files", unnamed)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_bytes(b"old content")
    old_inode = (out / "old").stat().st_ino
    during: list[list[str]] = []
    real_set_meta = file_writer.set_meta

    def looking(*args: Any) -> None:
        during.append(sorted(os.listdir(out)))
        real_set_meta(*args)

    monkeypatch.setattr(file_writer, "set_meta", looking)
    dirs = file_writer._Directories(os.fsencode(tmp_path / "out"))
    try:
        file_writer.write_job(dirs, _job(out, b"new", b"n" * 5000))
        file_writer.write_job(dirs, _job(out, b"old", b"replaced", 0o600))
    finally:
        dirs.close()
    temp = [".keep-restore-test-1"] if not unnamed else []
    assert during == [sorted(["old", *temp]), sorted(["old", "new", *temp])]
    assert sorted(os.listdir(out)) == ["new", "old"]
    assert (out / "new").read_bytes() == b"n" * 5000
    assert (out / "old").read_bytes() == b"replaced"
    assert (out / "old").stat().st_ino != old_inode
    assert [(out / n).stat().st_mtime_ns for n in ("new", "old")] == [1_234_567_890_123] * 2
    assert [(out / n).stat().st_mode & 0o7777 for n in ("new", "old")] == [0o640, 0o600]


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-file", "named-temporary"])
def test_a_write_that_fails_leaves_nothing_and_the_old_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    monkeypatch.setattr(file_writer, "_unnamed_files", unnamed)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_bytes(b"old content")

    def full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_writer, "pwrite_all", full)
    dirs = file_writer._Directories(os.fsencode(out))
    try:
        for name in (b"new", b"old"):
            with pytest.raises(OSError, match="No space"):
                file_writer.write_job(dirs, _job(out, name, b"data"))
    finally:
        dirs.close()
    assert os.listdir(out) == ["old"]
    assert (out / "old").read_bytes() == b"old content"


def test_without_unnamed_files_the_writer_falls_back_to_a_named_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that cannot make unnamed files (EOPNOTSUPP) is learnt
    once; the file is still written, through a temporary name."""
    monkeypatch.setattr(file_writer, "_unnamed_files", True)
    real_open = os.open
    refused: list[int] = []

    def no_tmpfile(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            refused.append(flags)
            raise OSError(95, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    out = tmp_path / "out"
    out.mkdir()
    dirs = file_writer._Directories(os.fsencode(out))
    try:
        for n in range(3):
            file_writer.write_job(dirs, _job(out, b"f%d" % n, b"x" * n))
    finally:
        dirs.close()
    assert len(refused) == 1
    assert sorted(os.listdir(out)) == ["f0", "f1", "f2"]
    assert [(out / f"f{n}").read_bytes() for n in range(3)] == [b"", b"x", b"xx"]


def test_data_runs_are_exactly_the_blocks_that_hold_a_nonzero_byte() -> None:
    """Against a plain reference, on blocks that are zero, or zero but for
    their first or last byte, or random, and tails of every kind: a block
    with one nonzero byte is never left as a hole."""

    def reference(data: bytes) -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        for start in range(0, len(data), file_writer.HOLE_BLOCK):
            end = min(start + file_writer.HOLE_BLOCK, len(data))
            if any(data[start:end]):
                if runs and runs[-1][1] == start:
                    runs[-1] = (runs[-1][0], end)
                else:
                    runs.append((start, end))
        return runs

    block = file_writer.HOLE_BLOCK
    rng = random.Random(20)
    kinds: list[Callable[[int], bytes]] = [
        bytes,
        lambda n: b"\x01" + bytes(n - 1),
        lambda n: bytes(n - 1) + b"\x80",
        rng.randbytes,
    ]
    assert file_writer.data_runs(b"") == []
    for _ in range(300):
        sizes = [block] * rng.randint(0, 6) + [rng.choice([block, rng.randint(1, block - 1)])]
        data = b"".join(rng.choice(kinds)(n) for n in sizes)
        assert file_writer.data_runs(data) == reference(data)

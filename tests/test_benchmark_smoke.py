"""The benchmark harnesses run end to end on tiny data (figures are not checked:
speed is measured in benchmarks/, never asserted in a unit test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import compare

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str) -> str:
    """The stdout of `python -m ARGS` run from the project root (must exit 0)."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    ).stdout


def refused(*args: str) -> str:
    """The error of a comparison refused for its arguments (exit status 2)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    return result.stderr


def test_protocol_benchmark_smoke() -> None:
    out = run_module("benchmarks.bench_protocol", "--smoke")
    assert "pipeline AES_256_GCM" in out
    assert "MB/s" in out


def test_mount_benchmark_smoke() -> None:
    """The mount-vs-restore harness runs end to end (a real FUSE mount) and
    compares every byte it times."""
    out = run_module("benchmarks.bench_mount", "--smoke")
    assert "| read through keep mount |" in out
    assert "every byte compared" in out


def test_compare_harness_smoke() -> None:
    """The side-by-side harness runs end to end for keep on a tiny corpus
    (restic and Borg runs belong to benchmarks/, not CI)."""
    out = run_module("benchmarks.compare", "--smoke", "--tools", "keep")
    assert "| first backup | keep |" in out
    assert "| full restore | keep |" in out
    assert "| small files: restore | keep |" in out
    assert "withdrawn" not in out
    assert "NOT VERIFIED" not in out
    assert "round 1, full restore: creating a file took" in out


def test_compare_restores_into_a_tmpfs_and_removes_each_once_verified(tmp_path: Path) -> None:
    """--restore-tmpfs: the same verified restores, written to memory; a
    directory on the disk is refused before anything runs."""
    from tests.client.tmpfs import tmpfs

    with tmpfs(tmp_path / "restores", "256m") as restores:
        out = run_module("benchmarks.compare", "--smoke", "--tools", "keep", "--restore-tmpfs", str(restores))
        assert "| full restore | keep |" in out
        assert "| small files: restore | keep |" in out
        assert "NOT VERIFIED" not in out
        assert f"restores go into {restores} (a tmpfs)" in out
        assert list(restores.iterdir()) == []
    assert f"{tmp_path} is not on a tmpfs" in refused("--restore-tmpfs", str(tmp_path))


def _copying_tool(work: Path, targets: list[Path], monkeypatch: pytest.MonkeyPatch) -> compare.Tool:
    """A tool that restores by copying the source with its metadata, its
    steps run without being timed."""

    class Copy(compare.Tool):
        name = "copy"

        def repo_dir(self) -> Path:
            return self.work / "repo"

        def restore(self, target: Path, source: Path) -> tuple[list[str], Path | None]:
            targets.append(target)
            into = target / str(source).lstrip("/")
            into.parent.mkdir(parents=True, exist_ok=True)
            return ["cp", "-a", str(source), str(into)], None

    def run(
        tool: compare.Tool, step: str, cmd: list[str], data_bytes: int, cwd: Path | None, reads: Path | None
    ) -> compare.Step:
        subprocess.run(cmd, check=True)
        return compare.Step(tool.name, step, 0.0, 0.0, 0.0, 0.0, 0.0, data_bytes / 1e6)

    monkeypatch.setattr(compare, "measure", run)
    return Copy(work)


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    (source / "d").mkdir(parents=True)
    (source / "d" / "f").write_bytes(b"restored bytes")
    return source


def test_a_restore_step_with_a_tmpfs_restores_there_verifies_and_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.client.tmpfs import tmpfs

    targets: list[Path] = []
    tool = _copying_tool(tmp_path / "work", targets, monkeypatch)
    with tmpfs(tmp_path / "restores", "16m") as restores:
        step = compare.restore_step(tool, "full restore", _source(tmp_path), 14, restores)
        assert step.verified
        assert targets[0].parent == restores
        assert list(restores.iterdir()) == []  # removed once verified
    assert not (tmp_path / "work").exists()  # nothing went to the tool's own directory


def test_a_restore_step_into_another_directory_keeps_the_restore_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--restore-dir: on a file system other than a tmpfs the verified
    restore stays (deleting it would slow the next one's file creation)."""
    targets: list[Path] = []
    tool = _copying_tool(tmp_path / "work", targets, monkeypatch)
    restores = tmp_path / "restores"
    restores.mkdir()
    step = compare.restore_step(tool, "full restore", _source(tmp_path), 14, restores)
    assert step.verified
    assert targets[0].parent == restores
    kept = targets[0] / str(tmp_path / "source").lstrip("/") / "d" / "f"
    assert kept.read_bytes() == b"restored bytes"
    assert not (tmp_path / "work").exists()


def _cached_bytes(path: Path) -> int:
    """How much of `path` is in the page cache (util-linux's fincore)."""
    out = subprocess.run(
        ["fincore", "-b", "-n", "-o", "RES", str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_a_step_starts_with_what_it_reads_in_the_page_cache(tmp_path: Path) -> None:
    """Borg drops the files it backs up from the page cache, and the tool
    after it read them from the disk (a 100,000-file backup: 9.4 s instead
    of 2.3 s). Each step reads its input first; a FIFO or a symlink in it is
    passed over, not waited on or followed."""

    class Nothing(compare.Tool):
        def repo_dir(self) -> Path:
            return self.work

    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    data = tree / "d" / "f"
    data.write_bytes(os.urandom(3 * compare.MiB + 5))
    os.mkfifo(tree / "fifo")
    (tree / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"not read")
    fd = os.open(data, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert _cached_bytes(data) == 0
    step = compare.measure(Nothing(tmp_path), "first backup", ["true"], 0, reads=tree)
    assert _cached_bytes(data) >= 3 * compare.MiB
    assert step.tool == ""


def test_restore_dir_and_restore_tmpfs_are_exclusive(tmp_path: Path) -> None:
    both = ["--restore-dir", str(tmp_path), "--restore-tmpfs", str(tmp_path)]
    assert "not allowed with argument" in refused(*both)


def test_the_comparison_waits_for_file_creation_to_be_fast_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a large deletion a journal-less ext4 creates files slowly for
    minutes: the run waits (within its limit) until a probe is fast again,
    and does not wait at all when told not to (the CI smoke run)."""
    probes = iter([700.0, 300.0, 20.0, 20.0])
    monkeypatch.setattr(compare, "create_us", lambda where: next(probes))
    monkeypatch.setattr(compare.time, "sleep", lambda seconds: None)
    assert compare.settle(Path("/unused"), 0) == 700.0
    assert compare.settle(Path("/unused"), 60) == 20.0


def test_the_comparison_waits_out_a_previous_runs_clean_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A run that starts within six minutes of the previous one's deletion
    waits for the rest of them; an old, missing or foreign stamp costs
    nothing, and a stamp from the future never more than the window."""
    slept: list[float] = []
    monkeypatch.setattr(compare.time, "sleep", slept.append)
    monkeypatch.setattr(compare.time, "time", lambda: 10_000.0)
    stamp = tmp_path / "cleaned"
    assert compare.quiet_after_cleanup(stamp, 360) == 0.0
    stamp.write_text("not a time")
    assert compare.quiet_after_cleanup(stamp, 360) == 0.0
    stamp.write_text("9000")
    assert compare.quiet_after_cleanup(stamp, 360) == 0.0
    stamp.write_text("9900")
    assert compare.quiet_after_cleanup(stamp, 360) == 260.0
    stamp.write_text("99999")
    assert compare.quiet_after_cleanup(stamp, 360) == 360.0
    assert slept == [260.0, 360.0]


def test_many_files_benchmark_smoke() -> None:
    """The memory-as-files-grow harness runs end to end for keep, its
    restores verified."""
    out = run_module("benchmarks.bench_many_files", "--files", "200,400", "--tools", "keep", "--restore")
    assert out.count(" verified") == 2
    assert "NOT VERIFIED" not in out
    assert "keep: first backup grows" in out


def test_the_harness_withdraws_restores_that_differ_in_any_byte_or_metadata(tmp_path: Path) -> None:
    from benchmarks.compare import Step, table
    from support.verify import verify_restore

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a").write_bytes(b"x" * 5000)
    (src / "b").write_bytes(b"same size")
    os.symlink("d/a", src / "link")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(src), str(copy)], check=True)
    assert verify_restore(src, copy) == []
    damage = [
        lambda: (copy / "b").write_bytes(b"SAME size"),  # same size, other bytes
        lambda: os.chmod(copy / "d" / "a", (copy / "d" / "a").stat().st_mode ^ 0o040),
        lambda: os.utime(copy / "d", ns=(1, 1)),
        lambda: (copy / "extra").write_bytes(b""),
        (copy / "link").unlink,
    ]
    for hurt in damage:
        subprocess.run(["rm", "-rf", str(copy)], check=True)
        subprocess.run(["cp", "-a", str(src), str(copy)], check=True)
        hurt()
        assert verify_restore(src, copy) != []
    row = table([Step("keep", "full restore", 1.0, 1, 0, 1, 1, 100, verified=False)])
    assert "withdrawn" in row
    assert "100" not in row.splitlines()[-1]


def test_prune_benchmark_smoke() -> None:
    """The prune harness (50 snapshots, forget half, prune) runs for keep on tiny data."""
    out = run_module("benchmarks.bench_prune", "--smoke", "--tools", "keep", "--patterns=oldest")
    assert "| oldest | keep |" in out
    assert '"snapshots_left": 3' in out


def test_scaleout_benchmark_smoke() -> None:
    """The scale-out harness (directory+SQLite vs S3+PostgreSQL, 1 and 2
    replicas, all real processes) runs on tiny data."""
    out = run_module("benchmarks.bench_scaleout", "--smoke")
    assert "| s3+postgresql | 2 |" in out


def test_load_benchmark_smoke() -> None:
    """The bounded load test runs (3 s) with zero errors and bounded server RSS
    (it exits non-zero otherwise)."""
    out = run_module("benchmarks.bench_load", "--smoke")
    assert "errors: 0" in out


def test_a_repeated_backup_counts_the_run_with_the_median_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    walls = iter([0.33, 0.19, 0.26, 0.5])
    commands: list[list[str]] = []

    def run(tool: compare.Tool, step: str, cmd: list[str], data_bytes: int, reads: Path) -> compare.Step:
        commands.append(cmd)
        assert reads == tmp_path
        return compare.Step(tool.name, step, next(walls), 0.0, 0.0, 0.0, 0.0, data_bytes / 1e6)

    class Counting(compare.Tool):
        name = "counting"

        def backup_cmd(self, path: Path) -> list[str]:
            return ["backup", str(len(commands)), str(path)]

    monkeypatch.setattr(compare, "measure", run)
    step = compare.backup(Counting(tmp_path), "unchanged re-backup", tmp_path, 1_000_000, runs=3)
    assert step.wall == 0.26
    assert [c[1] for c in commands] == ["0", "1", "2"]  # three backups, each its own command
    assert compare.backup(Counting(tmp_path), "first backup", tmp_path, 0).wall == 0.5  # once by default
    assert len(commands) == 4

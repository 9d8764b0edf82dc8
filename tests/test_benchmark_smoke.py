"""The benchmark harnesses run end to end on tiny data (figures are not checked:
speed is measured in benchmarks/, never asserted in a unit test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str) -> str:
    """The stdout of `python -m ARGS` run from the project root (must exit 0)."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    ).stdout


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
    assert "round 1, keep: creating a file took" in out


def test_the_comparison_waits_for_file_creation_to_be_fast_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a large deletion a journal-less ext4 creates files slowly for
    minutes: the run waits (within its limit) until a probe is fast again,
    and does not wait at all when told not to (the CI smoke run)."""
    from benchmarks import compare

    probes = iter([700.0, 300.0, 20.0, 20.0])
    monkeypatch.setattr(compare, "create_us", lambda where: next(probes))
    monkeypatch.setattr(compare.time, "sleep", lambda seconds: None)
    assert compare.settle(Path("/unused"), 0) == 700.0
    assert compare.settle(Path("/unused"), 60) == 20.0


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

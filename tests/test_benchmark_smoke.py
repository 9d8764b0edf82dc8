"""The benchmark harnesses run end to end on tiny data (figures are not checked:
speed is measured in benchmarks/, never asserted in a unit test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_compare_harness_smoke() -> None:
    """The side-by-side harness runs end to end for keep on a tiny corpus
    (restic and Borg runs belong to benchmarks/, not CI)."""
    out = run_module("benchmarks.compare", "--smoke", "--tools", "keep")
    assert "| first backup | keep |" in out
    assert "| full restore | keep |" in out


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

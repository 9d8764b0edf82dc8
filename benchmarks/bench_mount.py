"""Reading a large file through `keep mount` vs `keep restore` of it.

One file (half incompressible, half text, like the compare corpus's mix) is
backed up to a keep-server on 127.0.0.1. Each round, in rotated order:
`keep restore` of the snapshot (wall time by GNU time; the restored tree
compared with the source, every byte and every piece of metadata), and a
sequential read of the file through a fresh `keep mount` (1 MiB reads, timed
from the first to the last byte; the SHA-256 of what was read compared with
the source's). Page caches
are not dropped (both tools read the same, warm, server files); the mount's
own cache starts empty each round. A figure whose bytes did not match is
not reported.

    python -m benchmarks.bench_mount [--size-mib 1024] [--rounds 3]
    python -m benchmarks.bench_mount --smoke
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.compare import KEEP, Keep, run_measured
from benchmarks.corpus import random_bytes, text_bytes
from support.verify import verify_restore

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> str:
    """Half random, half text, written in 8 MiB pieces; its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        piece = 0
        while f.tell() < size:
            n = min(8 * MiB, size - f.tell())
            data = random_bytes(n, seed=100 + piece) if piece % 2 == 0 else text_bytes(n, seed=200 + piece)
            f.write(data)
            digest.update(data)
            piece += 1
    return digest.hexdigest()


def restore_round(tool: Keep, src: Path, target: Path) -> float:
    shutil.rmtree(target, ignore_errors=True)
    wall, _, _ = run_measured([KEEP, "restore", "latest", "--target", str(target)], tool.env())
    problems = verify_restore(src, target / str(src).lstrip("/"))
    if problems:  # every byte and every piece of metadata, or no figure
        raise SystemExit(f"restore: the restored tree differs from the source ({problems[0]}); no figure")
    return wall


def mount_round(tool: Keep, src: Path, mnt: Path, expected: str) -> float:
    mnt.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [KEEP, "mount", str(mnt)], env=tool.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"keep mount did not mount: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        path = mnt / "latest" / str(src).lstrip("/") / "big.bin"
        digest = hashlib.sha256()
        start = time.perf_counter()
        with path.open("rb", buffering=0) as f:
            while chunk := f.read(MiB):
                digest.update(chunk)
        seconds = time.perf_counter() - start
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        proc.wait(timeout=60)
    if digest.hexdigest() != expected:
        raise SystemExit("mount: the bytes read differ from the source; no figure")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="8 MiB, one round: the harness runs end to end")
    args = parser.parse_args()
    size, rounds = (8 * MiB, 1) if args.smoke else (args.size_mib * MiB, args.rounds)
    with tempfile.TemporaryDirectory(prefix="keep-bench-mount-") as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        expected = make_file(src / "big.bin", size)
        tool = Keep(work / "keep")
        tool.work.mkdir()
        with tool.running():
            tool.init()
            subprocess.run([KEEP, "backup", str(src)], env=tool.env(), check=True, capture_output=True)
            restores, reads = [], []
            for r in range(rounds):
                order = ["restore", "mount"] if r % 2 == 0 else ["mount", "restore"]
                for step in order:
                    if step == "restore":
                        restores.append(restore_round(tool, src, work / "restored"))
                    else:
                        reads.append(mount_round(tool, src, work / "mnt", expected))
        mb = size / 1e6
        restore_s, read_s = statistics.median(restores), statistics.median(reads)
        print(f"file: {size / MiB:.0f} MiB, rounds: {rounds} (order rotated), every byte compared")
        for what, seconds, each in (
            ("keep restore", restore_s, restores),
            ("read through keep mount", read_s, reads),
        ):
            rounds_text = ", ".join(f"{s:.2f}" for s in each)
            print(f"| {what} | {seconds:.2f} s | {mb / seconds:.0f} MB/s | rounds: {rounds_text} |")
        print(f"mount ÷ restore throughput: {restore_s / read_s:.2f}")


if __name__ == "__main__":
    main()

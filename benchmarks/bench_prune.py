"""Prune after forgetting half of 50 snapshots: keep vs `restic forget --prune`.

Both tools back up the same deterministic history (the compare corpus, then
49 evolutions of it: source files edited, a block of a media file rewritten,
log lines appended, a new file added and an older one removed), each through
a byte-counting proxy on 127.0.0.1 in front of its server. Then half of the
snapshots are forgotten (every other one, or the oldest half) and the
repository pruned in one command, measured:
wall time, client CPU, peak RSS (GNU time), bytes downloaded and uploaded
through the proxy, repository size before and after. A check of all data
follows (not measured) to show nothing was lost.

    python -m benchmarks.bench_prune [--scale 0.25] [--snapshots 50] [--tools keep,restic]
                                     [--patterns alternate,oldest]
    python -m benchmarks.bench_prune --smoke --tools keep
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.compare import KEEP, TOOLS, Tool, du_mib, make_corpus, run_measured
from benchmarks.corpus import WORDS, random_bytes, text_bytes
from support.byte_proxy import byte_proxy

MiB = 1024 * 1024


def evolve(root: Path, step: int) -> None:
    rng = random.Random(1000 + step)
    sources = sorted((root / "src").rglob("*.py"))
    for p in rng.sample(sources, min(5, len(sources))):
        with p.open("ab") as f:
            f.write(b" ".join(rng.choice(WORDS) for _ in range(40)) + b"\n")
    media = sorted((root / "media").glob("*.mp4"))
    victim = rng.choice(media)
    with victim.open("r+b") as f:
        size = victim.stat().st_size
        f.seek(rng.randrange(0, max(1, size - MiB)))
        f.write(random_bytes(MiB, seed=5000 + step))
    logs = sorted((root / "text").glob("*.txt"))
    with rng.choice(logs).open("ab") as f:
        f.write(text_bytes(256 * 1024, seed=6000 + step))
    (root / f"new{step}.bin").write_bytes(random_bytes(2 * MiB, seed=7000 + step))
    (root / f"new{step - 3}.bin").unlink(missing_ok=True)


def snapshot_ids(tool: Tool) -> list[str]:
    if tool.name == "keep":
        out = subprocess.run([KEEP, "--json", "snapshots"], env=tool.env(), capture_output=True, check=True)
        return [s["id"] for s in json.loads(out.stdout)]
    out = subprocess.run(["restic", "snapshots", "--json"], env=tool.env(), capture_output=True, check=True)
    return [s["id"] for s in sorted(json.loads(out.stdout), key=lambda s: s["time"])]


def prune_cmd(tool: Tool, ids: list[str]) -> list[str]:
    if tool.name == "keep":
        return [KEEP, "forget", *ids, "--prune", "--password-file", str(tool.work / "pw")]
    return ["restic", "forget", *ids, "--prune"]


def check_cmd(tool: Tool) -> list[str]:
    return [KEEP, "check", "--read-data"] if tool.name == "keep" else ["restic", "check", "--read-data"]


PATTERNS = {"alternate": lambda ids: ids[::2], "oldest": lambda ids: ids[: len(ids) // 2]}


def run(name: str, base: Path, scale: float, count: int, pattern: str) -> dict[str, float | str]:
    tool = TOOLS[name](base / f"{name}-{pattern}")
    tool.work.mkdir(parents=True)
    corpus = base / f"corpus-{name}-{pattern}"
    make_corpus(corpus, scale)  # deterministic: both tools see the same history
    with tool.running():
        port = int(re.findall(r":(\d+)", tool.url)[-1])
        with byte_proxy(port) as proxy:
            tool.url = tool.url.replace(f":{port}", f":{proxy.port}")
            tool.init()
            for step in range(count):
                if step:
                    evolve(corpus, step)
                subprocess.run(tool.backup_cmd(corpus), env=tool.env(), capture_output=True, check=True)
            ids = snapshot_ids(tool)
            assert len(ids) == count, ids
            before = du_mib(tool.repo_dir())
            proxy.reset()
            wall, cpu, rss = run_measured(prune_cmd(tool, PATTERNS[pattern](ids)), tool.env())
            down, up = proxy.down, proxy.up
            after = du_mib(tool.repo_dir())
            subprocess.run(check_cmd(tool), env=tool.env(), capture_output=True, check=True)
            left = len(snapshot_ids(tool))
    shutil.rmtree(corpus)
    return {
        "tool": name,
        "forgotten": pattern,
        "snapshots_left": left,
        "wall_s": wall,
        "cpu_s": cpu,
        "rss_mib": rss,
        "down_mib": down / MiB,
        "up_mib": up / MiB,
        "repo_before_mib": before,
        "repo_after_mib": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--snapshots", type=int, default=50)
    parser.add_argument("--tools", default="keep,restic")
    parser.add_argument("--patterns", default="alternate,oldest")
    parser.add_argument("--smoke", action="store_true", help="tiny corpus, 6 snapshots")
    args = parser.parse_args()
    scale, count = (0.02, 6) if args.smoke else (args.scale, args.snapshots)
    rows = []
    with tempfile.TemporaryDirectory(prefix="keep-prune-") as tmp:
        for pattern in args.patterns.split(","):
            for name in args.tools.split(","):
                rows.append(run(name, Path(tmp), scale, count, pattern))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\nforget {count // 2} of {count} snapshots + prune (scale {scale})\n")
    header = ["forgotten", "tool", "wall s", "client CPU s", "peak RSS MiB", "downloaded MiB", "uploaded MiB"]
    print("| " + " | ".join([*header, "repo MiB before → after"]) + " |")
    print("|---" * (len(header) + 1) + "|")
    for r in rows:
        cells = [str(r["forgotten"]), str(r["tool"]), f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}"]
        cells.append(f"{r['rss_mib']:.0f}")
        cells += [f"{r['down_mib']:.1f}", f"{r['up_mib']:.1f}"]
        cells.append(f"{r['repo_before_mib']:.0f} → {r['repo_after_mib']:.0f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

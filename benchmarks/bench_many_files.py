"""Memory and time as the number of files grows: first backup and unchanged
re-backup of compare.py's small-file tree (0.1–2 KB files, 100 per
directory), keep against keep-server on loopback beside restic with a local
repository, the tools' order rotated from round to round; peak RSS by GNU
time. With --restore, each tool also restores the tree and the restore is
verified (every byte and every entry's metadata) before its figure counts.

The per-file figure is the growth of the first backup's peak RSS between
the smaller and the larger tree, divided by the files added: what each new
file costs the backup once the fixed costs are paid.

    python -m benchmarks.bench_many_files [--files 100000,1000000] [--tools keep,restic-local]
        [--rounds 1] [--restore]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.compare import TOOLS, Step, compile_keep, make_small_files, measure, restore_step


def run(tool_name: str, work: Path, tree: Path, size: int, restore: bool) -> list[Step]:
    tool = TOOLS[tool_name](work)
    work.mkdir(parents=True)
    with tool.running():
        tool.init()
        steps = [
            measure(tool, "first backup", tool.backup_cmd(tree), size),
            measure(tool, "unchanged re-backup", tool.backup_cmd(tree), size),
        ]
        if restore:
            steps.append(restore_step(tool, "restore", tree, size))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", default="100000,1000000")
    parser.add_argument("--tools", default="keep,restic-local")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--restore", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.files.split(",")]
    tools = args.tools.split(",")
    compile_keep()
    results: dict[tuple[str, int, str], list[Step]] = {}
    with tempfile.TemporaryDirectory(prefix="keep-many-") as tmp:
        for count in counts:
            tree = Path(tmp) / f"tree-{count}"
            size = make_small_files(tree, count)
            for r in range(args.rounds):
                order = tools[r % len(tools) :] + tools[: r % len(tools)]
                for name in order:
                    for step in run(name, Path(tmp) / f"{name}-{count}-{r}", tree, size, args.restore):
                        results.setdefault((name, count, step.step), []).append(step)
                        verified = {None: "", True: " verified", False: " NOT VERIFIED"}[step.verified]
                        print(
                            f"{count:>9} {name:<13} {step.step:<20} {step.wall:7.2f} s "
                            f"{step.cpu:7.2f} CPU-s {step.rss_mib:7.0f} MiB{verified}",
                            flush=True,
                        )
    print("\nmedians: files, tool, step, wall s, CPU s, peak RSS MiB")
    for (name, count, label), steps in sorted(results.items()):
        wall = statistics.median(s.wall for s in steps)
        cpu = statistics.median(s.cpu for s in steps)
        rss = statistics.median(s.rss_mib for s in steps)
        print(f"{count:>9} {name:<13} {label:<20} {wall:7.2f} {cpu:7.2f} {rss:7.0f}")
    if len(counts) >= 2:
        low, high = min(counts), max(counts)
        for name in tools:
            a = statistics.median(s.rss_mib for s in results[(name, low, "first backup")])
            b = statistics.median(s.rss_mib for s in results[(name, high, "first backup")])
            per_file = (b - a) * 1024 * 1024 / (high - low)
            print(f"{name}: first backup grows {per_file:.0f} bytes of peak RSS per file")


if __name__ == "__main__":
    main()

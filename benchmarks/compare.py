"""Keep vs restic vs Borg, side by side in one run on the same generated corpus.

Scenarios: first backup, unchanged re-backup, backup after a small mutation
(bytes inserted near the start of a large file, small files touched, a new
file), full restore; then a tree of many small files (first backup,
unchanged re-backup, full restore). Keep talks to a real keep-server on
loopback; restic runs twice, once against its REST backend served by
`rclone serve restic` on loopback (so it, like keep, sends its data over HTTP)
and once against a local repository ("restic-local"); Borg writes a local
repository (it has no HTTP transport).

Every restore, of every tool and corpus, is verified: every file's bytes, its
type, mode, owner, size and mtime (directories' and symlinks' too, and
symlink targets) are compared with the source, and nothing extra may be
there. A restore that does not verify is reported as such and its
throughput is withdrawn, never printed.

Recorded per step: wall time, client CPU (user+sys), server CPU, client peak
RSS and repository size.

The whole sequence runs in several rounds (default 3), each tool in a fresh
repository every round. A round takes the steps one at a time, each for
every tool in turn before the next step, so the tools' figures for one step
are seconds apart, on a machine in the same state; the tools' order is
rotated from round to round, so that no tool always goes first. Each step
starts with what it reads (the tree it backs up, the repository it restores
from) in the page cache: Borg drops the files it backs up from the cache,
and the tool after it read them from the disk (`measure`). The report
gives every round's ratios and the per-step medians: on a shared VM one run
of one command can be off by a quarter. The unchanged re-backups, which
take a fraction of a second, run three times in a row and the median run
counts.

Nothing is deleted before the end (it needs ~2 GB per tool and round): on a
journal-less ext4 like this VM's, ext4 skips inodes freed in the last 60 s
(360 s while their inode-table block is dirty) when it allocates new ones,
checking each, so files created after a large deletion — a restore, a
tool's cache — were created ever more slowly (three restores in a row,
each after deleting the previous one: 2.8, 4.9, 7.0 s). The run waits at
its start (up to 7 minutes) until creating a file is fast again, measures
it before every step and says so if it was slow; it also waits until
six minutes have passed since a previous run deleted its files.
Each restore's files are dropped from the page cache once verified
(`evict`), so a later step does not pay for reclaiming the memory that
earlier tools' restores filled.

With --restore-tmpfs DIR the restores go into DIR, which must be on a tmpfs,
and each is removed once verified: the same restores without the disk's
file system in their write path, to tell a tool's own time from that of the
file system it writes into (the backups still read the corpus from disk).

    python -m benchmarks.compare [--scale 1.0] [--small-files 100000] [--tools keep,restic,borg] [--rounds 3]
    python -m benchmarks.compare --restore-tmpfs /mnt/r   # after: mount -t tmpfs -o size=4g tmpfs /mnt/r
    python -m benchmarks.compare --smoke --tools keep     # tiny data, CI

With --restore-dir DIR the restores go into new directories in DIR and are
kept (and dropped from the page cache) as on the disk: restores into another
file system. This VM's `/` is an ext4 without a journal; a Debian install's
ext4 has one, and does not skip freed inodes at all. As root:

    truncate -s 24G /var/tmp/restores.img && mkfs.ext4 -q -i 8192 /var/tmp/restores.img
    mkdir -p /mnt/restores && mount "$(losetup --direct-io=on -f --show /var/tmp/restores.img)" /mnt/restores
    python -m benchmarks.compare --restore-dir /mnt/restores
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.corpus import WORDS, random_bytes, text_bytes
from support.servers import free_port, keep_server
from support.verify import verify_restore

MiB = 1024 * 1024
KEEP = str(Path(sys.executable).with_name("keep"))
PASSWORD = "benchmark password"  # noqa: S105 — throw-away repositories
GNU_TIME = "/usr/bin/time"


@dataclass
class Step:
    tool: str
    step: str
    wall: float
    cpu: float
    server_cpu: float
    rss_mib: float
    repo_mib: float
    data_mb: float
    round: int = 1
    verified: bool | None = None  # restores only: False withdraws the figure
    # The client's system time, part of `cpu`: on this VM it moves with the
    # machine's memory history (first touches of guest memory), see RESULTS.md.
    sys_cpu: float = 0.0
    create_probe_us: float = 0.0  # creating an empty file just before the step (`create_us`)

    @property
    def mbs(self) -> float:
        return self.data_mb / self.wall if self.wall > 0 else 0.0

    @property
    def counts(self) -> bool:
        """Whether the figures may be reported (a restore must have verified)."""
        return self.verified is not False


# Corpus ------------------------------------------------------------------------------
def make_corpus(root: Path, scale: float) -> int:
    """Mixed corpus: small source files, text, media-like random files, and a
    large file with zero runs. Returns its size in bytes."""
    rng = random.Random(7)
    src = root / "src"
    n_small = int(6000 * scale)
    for i in range(n_small):
        d = src / f"pkg{i // 100}"
        d.mkdir(parents=True, exist_ok=True)
        lines = [
            b" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
            for _ in range(rng.randint(10, 300))
        ]
        (d / f"mod{i}.py").write_bytes(b"\n".join(lines) + b"\n")
    text = root / "text"
    text.mkdir()
    for i in range(max(1, int(12 * scale))):
        (text / f"log{i}.txt").write_bytes(text_bytes(int(24 * MiB), seed=100 + i))
    media = root / "media"
    media.mkdir()
    for i in range(max(1, int(30 * scale))):
        (media / f"video{i}.mp4").write_bytes(random_bytes(int(rng.randint(4, 20) * MiB), seed=200 + i))
    big = root / "disk.img"
    with big.open("wb") as f:
        for i in range(max(1, int(24 * scale))):
            f.write(random_bytes(4 * MiB, seed=300 + i))
            f.write(bytes(8 * MiB))  # zero run
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def mutate(root: Path) -> int:
    """Insert bytes near the start of the large file, touch some small files,
    add a new file. Returns bytes written."""
    big = root / "disk.img"
    data = big.read_bytes()
    big.write_bytes(data[:MiB] + b"inserted bytes!" * 7 + data[MiB:])
    written = len(data)
    for i, p in enumerate(sorted((root / "src").rglob("*.py"))[:50]):
        with p.open("ab") as f:
            f.write(b"# changed %d\n" % i)
    (root / "new.bin").write_bytes(random_bytes(10 * MiB, seed=999))
    return written + 10 * MiB


def make_small_files(root: Path, count: int) -> int:
    rng = random.Random(11)
    total = 0
    for i in range(count):
        d = root / f"d{i // 100:04}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        body = rng.randbytes(rng.randint(100, 2000))
        (d / f"f{i}.dat").write_bytes(body)
        total += len(body)
    return total


# Process measurement ---------------------------------------------------------------
def run_measured(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float, float]:
    """(wall s, user+sys CPU s, peak RSS MiB) of one command (`run_timed`)."""
    wall, user, system, rss = run_timed(cmd, env, cwd)
    return wall, user + system, rss


def run_timed(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[float, float, float, float]:
    """(wall s, user CPU s, system CPU s, peak RSS MiB) of one command,
    measured by GNU time: `ru_maxrss` seen by this (large) Python process
    would include its own RSS, which Linux carries across fork."""
    if not os.path.exists(GNU_TIME):
        return _run_wait4(cmd, env, cwd)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        timed = [GNU_TIME, "-f", "%e %U %S %M", "-o", report.name, *cmd]
        proc = subprocess.run(timed, env=env, cwd=cwd, capture_output=True, check=False)
        if proc.returncode not in (0, 3):
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        wall, user, system, rss_kib = report.read().split()[-4:]
    return float(wall), float(user), float(system), int(rss_kib) / 1024


def _run_wait4(cmd: list[str], env: dict[str, str], cwd: Path | None) -> tuple[float, float, float, float]:
    """Fallback without GNU time (smoke runs): its RSS is an upper bound."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise RuntimeError(
            f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        )
    return time.perf_counter() - start, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024


def proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Creating an empty file normally takes ~25 µs on this VM's ext4. That file
# system has no journal, and without one the kernel will not reuse an inode
# freed in the last 60 s (360 s while its inode-table block is dirty) and
# checks every such inode at each allocation: after a large deletion (a
# previous run's clean-up, a test suite's) a create took 761 µs for minutes,
# and restores of many files measured then measure that.
CREATE_SLOW_US = 60.0
SETTLE_MAX = 420.0  # seconds the run waits at its start for creation to be fast again


# A run deletes its ~1.4 million files as it ends, and a run started within
# minutes of that would restore into ext4's window for those freed inodes
# (3,000 deleted files cost a later 1 GB restore up to 3.5 s of system time,
# benchmarks/RESULTS.md), which `create_us` in a new directory may not see:
# the next run waits until the longest window (60 + 300 s) has passed.
CLEANED = Path(tempfile.gettempdir()) / "keep-compare.cleaned"
QUIET_AFTER_CLEANUP = 360.0


def quiet_after_cleanup(stamp: Path = CLEANED, quiet: float = QUIET_AFTER_CLEANUP) -> float:
    """Wait until `quiet` seconds have passed since the clean-up that
    `stamp` records (a previous run's, its end time); the seconds waited."""
    try:
        cleaned = float(stamp.read_text())
    except (OSError, ValueError):  # no run before, or not one of ours
        return 0.0
    left = min(cleaned + quiet - time.time(), quiet)
    if left <= 0:
        return 0.0
    time.sleep(left)
    return left


def create_us(where: Path, count: int = 500) -> float:
    """Microseconds to create one empty file, in a new directory under
    `where`. The files stay until the run ends: deleting them would set off
    what this measures."""
    probe = Path(tempfile.mkdtemp(prefix="create-probe-", dir=where))
    start = time.perf_counter()
    for n in range(count):
        (probe / str(n)).touch()
    return (time.perf_counter() - start) / count * 1e6


def settle(where: Path, wait_max: float) -> float:
    """Wait, at most `wait_max` seconds, until creating a file is fast again
    (`CREATE_SLOW_US`); the last measurement."""
    deadline = time.monotonic() + wait_max
    took = create_us(where)
    while took > CREATE_SLOW_US and time.monotonic() < deadline:
        time.sleep(15)
        took = create_us(where)
    return took


def du_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MiB


# Tools ---------------------------------------------------------------------------------
class Tool:
    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.server_pid: int | None = None
        self.url = ""  # set by running() for tools with a server

    @contextmanager
    def running(self) -> Iterator[None]:
        yield

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def repo_dir(self) -> Path:
        raise NotImplementedError

    def init(self) -> None:
        raise NotImplementedError

    def backup_cmd(self, path: Path) -> list[str]:
        raise NotImplementedError

    def restore(self, target: Path, source: Path) -> tuple[list[str], Path | None]:
        raise NotImplementedError


class Keep(Tool):
    name = "keep"

    @contextmanager
    def running(self) -> Iterator[None]:
        with keep_server(self.work / "server") as (url, proc):
            self.url, self.server_pid = url, proc.pid
            yield

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KEEP_HOME": str(self.work / "home"),
            "KEEP_CONFIG": str(self.work / "none.toml"),
        }

    def repo_dir(self) -> Path:
        return self.work / "server"

    def init(self) -> None:
        pw = self.work / "pw"
        pw.write_text(PASSWORD)
        subprocess.run(
            [
                KEEP,
                "init",
                "--server",
                self.url,
                "--account",
                "bench",
                "--password-file",
                str(pw),
                "--recovery-kit",
                str(self.work / "kit.txt"),
            ],
            env=self.env(),
            check=True,
            capture_output=True,
        )

    def backup_cmd(self, path: Path) -> list[str]:
        return [KEEP, "backup", str(path)]

    def restore(self, target: Path, source: Path) -> tuple[list[str], Path | None]:
        return [KEEP, "restore", "latest", "--target", str(target)], None


class Restic(Tool):
    """restic over its REST backend, served by `rclone serve restic` (a real
    Go REST server, from Debian) on loopback."""

    name = "restic"

    @contextmanager
    def running(self) -> Iterator[None]:
        port = free_port()
        (self.work / "repo").mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            ["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", str(self.work / "repo")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.server_pid = proc.pid
        self.url = f"rest:http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        try:
            yield
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_REPOSITORY": self.url,
            "RESTIC_CACHE_DIR": str(self.work / "cache"),
        }

    def repo_dir(self) -> Path:
        return self.work / "repo"

    def init(self) -> None:
        subprocess.run(["restic", "init"], env=self.env(), check=True, capture_output=True)

    def backup_cmd(self, path: Path) -> list[str]:
        return ["restic", "backup", "--quiet", str(path)]

    def restore(self, target: Path, source: Path) -> tuple[list[str], Path | None]:
        return ["restic", "restore", "latest", "--target", str(target)], None


class ResticLocal(Restic):
    """restic with a local repository: no HTTP at all."""

    name = "restic-local"

    @contextmanager
    def running(self) -> Iterator[None]:
        self.url = str(self.work / "repo")
        yield


class Borg(Tool):
    name = "borg"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_CACHE_DIR": str(self.work / "cache"),
            "BORG_CONFIG_DIR": str(self.work / "config"),
            "BORG_BASE_DIR": str(self.work),
        }

    def repo_dir(self) -> Path:
        return self.work / "repo"

    def init(self) -> None:
        subprocess.run(
            ["borg", "init", "--encryption=repokey-blake2", str(self.repo_dir())],
            env=self.env(),
            check=True,
            capture_output=True,
        )
        self.n = 0

    def backup_cmd(self, path: Path) -> list[str]:
        self.n += 1
        return ["borg", "create", "--compression", "zstd,3", f"{self.repo_dir()}::s{self.n}", str(path)]

    def restore(self, target: Path, source: Path) -> tuple[list[str], Path | None]:
        target.mkdir(parents=True, exist_ok=True)
        return ["borg", "extract", f"{self.repo_dir()}::s{self.n}"], target


TOOLS: dict[str, Callable[[Path], Tool]] = {
    "keep": Keep,
    "restic": Restic,
    "restic-local": ResticLocal,
    "borg": Borg,
}


def measure(
    tool: Tool,
    step: str,
    cmd: list[str],
    data_bytes: int,
    cwd: Path | None = None,
    reads: Path | None = None,
) -> Step:
    """Run and measure one step, whose command reads the files under `reads`
    (the tree it backs up, the repository it restores from): they are read
    into the page cache first, so every tool starts warm, whatever the one
    before did to the cache (Borg drops what it read from it)."""
    if reads is not None:
        read_all(reads)
    # Start every step with nothing dirty: otherwise the first tool pays for
    # writing back the freshly generated corpus (its fsyncs queue behind it)
    # and each tool for the previous one's repository.
    os.sync()
    s0 = proc_cpu(tool.server_pid)
    wall, user, system, rss = run_timed(cmd, tool.env(), cwd)
    return Step(
        tool.name,
        step,
        wall,
        user + system,
        proc_cpu(tool.server_pid) - s0,
        rss,
        du_mib(tool.repo_dir()),
        data_bytes / 1e6,
        sys_cpu=system,
    )


def read_all(root: Path) -> None:
    """Read every regular file under `root` (into the page cache)."""
    buffer = bytearray(MiB)

    def read(fd: int) -> None:
        while os.readv(fd, [buffer]) == len(buffer):
            pass

    each_file(root, read)


def each_file(root: Path, action: Callable[[int], object]) -> None:
    """Call `action` with a read-only descriptor of each file under `root`
    (symlinks are not followed; a FIFO does not block)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:  # a symlink, a FIFO without a writer
                continue
            try:
                action(fd)
            finally:
                os.close(fd)


def restore_step(tool: Tool, step: str, source: Path, data_bytes: int, into: Path | None = None) -> Step:
    """Measure a full restore of `source`'s latest backup, then verify every
    byte and piece of metadata; the step is marked unverified if anything
    differs (its throughput is then withdrawn). With `into` the restore goes
    into a new directory there; on a tmpfs (`tmpfs_mount`) it is removed once
    verified, anywhere else kept like one in the tool's own directory."""
    name = step.replace(" ", "-").replace(":", "")
    if into is None:
        target = tool.work / name
    else:
        target = Path(tempfile.mkdtemp(prefix=f"{tool.name}-{name}-", dir=into))
    in_memory = into is not None and tmpfs_mount(into)
    cmd, cwd = tool.restore(target, source)
    result = measure(tool, step, cmd, data_bytes, cwd, reads=tool.repo_dir())
    problems = verify_restore(source, target / str(source).lstrip("/"))
    result.verified = not problems
    for problem in problems:
        print(f"{tool.name}: {step}: NOT VERIFIED: {problem}", flush=True)
    if in_memory:
        shutil.rmtree(target)  # memory, not disk: nothing for ext4 to be slowed by
    else:
        evict(target)
    return result


def evict(root: Path) -> None:
    """Drop the pages of every file under `root` from the page cache, the
    files staying where they are (deleting them would slow ext4's file
    creation, `CREATE_SLOW_US`). Three rounds of four tools' restores held
    ~15 GB of it: once free memory ran out, whoever ran next paid for
    reclaiming pages in system time (keep's full restore: 1.0-1.1 s of it in
    the first round, 2.3-3.4 s in later ones)."""
    os.sync()  # only clean pages can be dropped
    each_file(root, lambda fd: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED))


def tmpfs_mount(path: Path) -> bool:
    """Whether `path` is on a tmpfs (the last mount in /proc/self/mounts
    that holds it decides)."""
    real, fstype, best = os.path.realpath(path), "", ""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, point, kind = line.split()[:3]
            point = point.replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, fstype = point, kind
    return fstype == "tmpfs"


def backup(tool: Tool, step: str, tree: Path, data_bytes: int, runs: int = 1) -> Step:
    """Measure a backup of `tree`, `runs` times in a row (an unchanged
    re-backup can be repeated: each run finds the same tree): the run with
    the median wall time counts. Keep's unchanged re-backup takes a fifth
    of a second, and single runs of it within one comparison took
    0.19-0.33 s."""
    done = [measure(tool, step, tool.backup_cmd(tree), data_bytes, reads=tree) for _ in range(runs)]
    return sorted(done, key=lambda s: s.wall)[len(done) // 2]


def run_round(
    number: int,
    order: list[str],
    base: Path,
    corpus: Path,
    corpus_bytes: int,
    small: Path | None,
    small_bytes: int,
    restore_into: Path | None = None,
) -> list[Step]:
    """One round: each step for every tool in `order`, one tool right after
    the other, before the next step. The tools of one step so run within
    seconds of each other, on a machine in the same state: on this VM a
    restore's system time moves with the memory history (RESULTS.md), and
    with each tool's steps run in one piece, the tools' restores were
    minutes apart."""
    tools = [TOOLS[name](base / f"round{number}" / name) for name in order]
    steps: list[Step] = []

    def each(step: str, run: Callable[[Tool], Step]) -> None:
        took = create_us(base)
        print(f"round {number}, {step}: creating a file took {took:.0f} µs", flush=True)
        for tool in tools:
            done = run(tool)
            done.round, done.create_probe_us = number, took
            steps.append(done)

    with contextlib.ExitStack() as running:
        for tool in tools:
            tool.work.mkdir(parents=True)
            running.enter_context(tool.running())
            tool.init()
        each("first backup", lambda t: backup(t, "first backup", corpus, corpus_bytes))
        each("unchanged re-backup", lambda t: backup(t, "unchanged re-backup", corpus, corpus_bytes, runs=3))
        mutated = mutate(corpus)
        try:
            each("backup after mutation", lambda t: backup(t, "backup after mutation", corpus, mutated))
            size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
            each("full restore", lambda t: restore_step(t, "full restore", corpus, size, restore_into))
        finally:
            undo_mutation(corpus)
        if small is not None:
            each(
                "small files: first backup",
                lambda t: backup(t, "small files: first backup", small, small_bytes),
            )
            each(
                "small files: unchanged re-backup",
                lambda t: backup(t, "small files: unchanged re-backup", small, small_bytes, runs=3),
            )
            each(
                "small files: restore",
                lambda t: restore_step(t, "small files: restore", small, small_bytes, restore_into),
            )
    return steps


def undo_mutation(root: Path) -> None:
    """Restore the corpus to its generated state for the next tool."""
    big = root / "disk.img"
    data = big.read_bytes()
    marker = b"inserted bytes!" * 7
    if data[MiB : MiB + len(marker)] == marker:
        big.write_bytes(data[:MiB] + data[MiB + len(marker) :])
    for p in sorted((root / "src").rglob("*.py"))[:50]:
        body = p.read_bytes()
        cut = body.rfind(b"# changed ")
        if cut >= 0:
            p.write_bytes(body[:cut])
    (root / "new.bin").unlink(missing_ok=True)


def table(steps: list[Step]) -> str:
    lines = [
        "| step | tool | wall s | MB/s | client CPU s (sys) | server CPU s "
        "| client peak RSS MiB | repo MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        if not s.counts:
            lines.append(f"| {s.step} | {s.tool} | withdrawn: the restore did not verify | | | | | |")
            continue
        lines.append(
            f"| {s.step} | {s.tool} | {s.wall:.2f} | {s.mbs:.0f} | {s.cpu:.2f} ({s.sys_cpu:.2f}) "
            f"| {s.server_cpu:.2f} | {s.rss_mib:.0f} | {s.repo_mib:.0f} |"
        )
    return "\n".join(lines)


def medians(steps: list[Step]) -> list[Step]:
    """One row per tool and step: the median of each figure over the rounds."""
    groups: dict[tuple[str, str], list[Step]] = {}
    for s in steps:
        groups.setdefault((s.tool, s.step), []).append(s)
    withdrawn = {key for key, group in groups.items() if not all(s.counts for s in group)}
    rows = []
    for (tool, step), group in groups.items():

        def median(field: str, group: list[Step] = group) -> float:
            return statistics.median(getattr(s, field) for s in group)

        rows.append(
            Step(
                tool,
                step,
                wall=median("wall"),
                cpu=median("cpu"),
                server_cpu=median("server_cpu"),
                rss_mib=median("rss_mib"),
                repo_mib=median("repo_mib"),
                data_mb=median("data_mb"),
                round=0,
                verified=None if (tool, step) not in withdrawn else False,
                sys_cpu=median("sys_cpu"),
            )
        )
    return rows


def ratios(steps: list[Step], other: str = "restic") -> str:
    """keep/`other` per step: each round's throughput ratio, then the median
    over rounds of every ratio (ratios are taken within a round, where both
    tools ran minutes apart on the same machine). Unverified restores take
    no part."""
    by = {(s.tool, s.step, s.round): s for s in steps if s.counts}
    rounds = sorted({s.round for s in steps})
    out = []
    for step in dict.fromkeys(s.step for s in steps):
        pairs = [
            (by[("keep", step, r)], by[(other, step, r)])
            for r in rounds
            if ("keep", step, r) in by and (other, step, r) in by
        ]
        if not pairs:
            continue
        throughput = [k.mbs / max(r.mbs, 1e-9) for k, r in pairs]
        rss = [k.rss_mib / max(r.rss_mib, 1e-9) for k, r in pairs]
        size = [k.repo_mib / max(r.repo_mib, 1e-9) for k, r in pairs]
        out.append(
            f"- {step}: keep/{other} throughput {statistics.median(throughput):.2f}x "
            f"(rounds: {', '.join(f'{t:.2f}' for t in throughput)}), "
            f"time {statistics.median(k.wall / r.wall for k, r in pairs):.2f}x, "
            f"RSS {statistics.median(rss):.2f}x (max {max(rss):.2f}), "
            f"repo size {statistics.median(size):.3f}x (max {max(size):.3f})"
        )
    return "\n".join(out)


def compile_keep() -> None:
    """Byte-compile keep's modules, as installing a wheel does: the editable
    install used here otherwise compiles every module on every start when
    PYTHONDONTWRITEBYTECODE is set (it is, on the project's machines)."""
    import keep.client
    import keep.protocol
    import keep.server

    dirs = [str(Path(p).parent) for p in (keep.client.__file__, keep.protocol.__file__, keep.server.__file__)]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], check=True, stdout=subprocess.DEVNULL)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--small-files", type=int, default=100_000)
    parser.add_argument("--tools", default="keep,restic,restic-local,borg")
    parser.add_argument("--rounds", type=int, default=3, help="repeat everything, rotating the tools' order")
    parser.add_argument("--smoke", action="store_true", help="tiny corpus, one round")
    parser.add_argument("--json", type=Path, help="also write the steps as JSON here")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--restore-tmpfs",
        type=Path,
        metavar="DIR",
        help="restore into DIR, which must be on a tmpfs, each restore removed once verified: "
        "restores without the disk's file system in their way",
    )
    where.add_argument(
        "--restore-dir",
        type=Path,
        metavar="DIR",
        help="restore into new directories in DIR (each kept, as on the disk): "
        "restores into another file system, such as an ext4 with a journal",
    )
    args = parser.parse_args()
    if args.restore_tmpfs is not None and not tmpfs_mount(args.restore_tmpfs):
        parser.error(f"{args.restore_tmpfs} is not on a tmpfs")
    args.restore_into = args.restore_tmpfs or args.restore_dir
    return args


def main() -> None:
    args = parse_args()
    scale, small_count = (0.02, 300) if args.smoke else (args.scale, args.small_files)
    compile_keep()
    if not args.smoke:
        print(f"waited {quiet_after_cleanup():.0f} s after the last run's deletion")
    with tempfile.TemporaryDirectory(prefix="keep-compare-") as tmp:
        base = Path(tmp)
        corpus = base / "corpus"
        corpus_bytes = make_corpus(corpus, scale)
        small = base / "small"
        small_bytes = make_small_files(small, small_count) if small_count else 0
        print(
            f"corpus {corpus_bytes / 1e6:.0f} MB; small-files tree {small_count} files, "
            f"{small_bytes / 1e6:.0f} MB; {os.cpu_count()} cores",
            flush=True,
        )
        if args.restore_into is not None:
            kind = " (a tmpfs), each removed once verified" if args.restore_tmpfs else ""
            print(f"restores go into {args.restore_into}{kind}", flush=True)
        waited = time.monotonic()
        took = settle(base, 0 if args.smoke else SETTLE_MAX)
        print(f"creating a file: {took:.0f} µs (waited {time.monotonic() - waited:.0f} s for it)", flush=True)
        creates: list[float] = []
        steps: list[Step] = []
        tools = args.tools.split(",")
        for number in range(1, (1 if args.smoke else args.rounds) + 1):
            shift = (number - 1) % len(tools)
            done = run_round(
                number,
                tools[shift:] + tools[:shift],
                base,
                corpus,
                corpus_bytes,
                small if small_count else None,
                small_bytes,
                args.restore_into,
            )
            creates += [s.create_probe_us for s in done]
            steps += done
            print(f"round {number}\n" + table(done), flush=True)
        print("\nmedians over rounds\n" + table(medians(steps)))
        for other in ("restic", "restic-local", "borg"):
            if other in tools:
                print("\n" + ratios(steps, other))
        slow = max(creates)
        if slow > CREATE_SLOW_US:
            print(
                f"\nFILE CREATION WAS SLOW ({slow:.0f} µs, above {CREATE_SLOW_US:.0f}): something deleted "
                "many files within minutes of a step; restores of many files are slowed by it"
            )
        unverified = [s for s in steps if not s.counts]
        if unverified:
            print(
                "\nNOT VERIFIED (figures withdrawn): "
                + ", ".join(f"{s.tool} {s.step} round {s.round}" for s in unverified)
            )
        if args.json:
            args.json.write_text(json.dumps([s.__dict__ for s in steps], indent=1))
    if not args.smoke:  # its files are gone: the next run waits from here
        CLEANED.write_text(f"{time.time():.0f}")


if __name__ == "__main__":
    main()

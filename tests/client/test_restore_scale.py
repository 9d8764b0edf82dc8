"""Restore at scale: every byte and every piece of metadata of trees large
enough to exercise the restorer's descriptor cache, its fetch threads and
ranges spread over many packs.

The regression test forces the race that once wrote one file's bytes into
another (a descriptor evicted and closed by one fetch thread while another
was about to write through it, the kernel handing its number to the next
file opened): a descriptor cache of two, four fetch threads, and a `pwrite`
that pauses before writing so that every other thread gets to open and
evict meanwhile."""

from __future__ import annotations

import _thread
import gc
import os
import random
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from keep.client.device.state import DeviceState
from keep.client.engine import drill, file_writer, packer, restore_plan, restorer
from keep.client.engine.archiver import Archiver, BackupOptions
from keep.client.engine.locations import Location
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from keep.protocol.errors import IntegrityError
from keep.protocol.index import Index
from keep.protocol.keys import DataKey
from keep.protocol.tree import Node, NodeType
from tests.client.conftest import Device
from tests.client.tmpfs import tmpfs
from tests.client.tree_builder import describe


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def make_small_files(root: Path, count: int, per_dir: int, seed: int) -> None:
    """`count` files of 1-4 KiB in directories of `per_dir`; every third file
    is exactly 2048 bytes (equal sizes are what made swapped bytes invisible
    to a size check), each with distinct content, mode and mtime."""
    rng = random.Random(seed)
    for n in range(count):
        d = root / f"d{n // per_dir:04}"
        if n % per_dir == 0:
            d.mkdir(parents=True)
        size = 2048 if n % 3 == 0 else rng.randint(1024, 4096)
        head = b"file %06d " % n
        path = d / f"f{n:06}.txt"
        path.write_bytes(head + rng.randbytes(size - len(head)))
        os.chmod(path, (0o600, 0o640, 0o644, 0o400)[n % 4])
        os.utime(path, ns=(1_600_000_000_000_000_000 + n * 1_000_003,) * 2)


def test_evicted_descriptors_never_receive_another_files_bytes(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 one-blob files and 60 files of several blobs each (written in
    parts by different threads through the shared descriptor cache)."""
    src = tmp_path / "src"
    make_small_files(src / "small", 3_000, 150, seed=17)
    rng = random.Random(23)
    for n in range(60):
        (src / "multi").mkdir(exist_ok=True)
        (src / "multi" / f"m{n:02}.bin").write_bytes(rng.randbytes(rng.randint(1_200_000, 3_000_000)))
    device.init()
    state = DeviceState.load(device.home)
    keys = state.keys
    monkeypatch.setattr(packer, "PACK_BLOBS_MAX", 40)  # ~75 packs: many ranges, all threads busy
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, keys, device.home / "c2", state.suite)
        Archiver(repo, BackupOptions(host="test")).run([os.fsencode(src)], None)

    monkeypatch.setattr(restorer, "OPEN_FILES_MAX", 2)
    monkeypatch.setattr(restore_plan, "RANGE_MAX", 64 * 1024)  # about one blob per range
    real_pwrite = os.pwrite

    def slow_pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        time.sleep(0.0005)  # every other thread opens (and once evicted) meanwhile
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", slow_pwrite)
    target = tmp_path / "out"
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, keys, device.home / "c2", state.suite)
        repo.load_index()
        (info,) = repo.snapshots()
        # Four threads: with the production two, the old cache's race shows
        # too rarely to be caught every run (checked against that cache).
        r = restorer.Restorer(repo, os.fsencode(target), threads=4)
        stats = r.run(info.snapshot.tree)
    assert stats.warnings == []
    assert sum(not f.single for f in r._files) >= 50  # the shared cache was really used
    assert describe(restored(target, src)) == describe(src)


def test_twenty_thousand_files_restore_byte_for_byte_and_verify(device: Device, tmp_path: Path) -> None:
    """The real CLI at production settings: 20,000 small files (a third of
    them exactly 2048 bytes), medium files, hardlinks, symlinks, xattrs and
    large files whose chunks land in several packs; `restore --verify` reads
    every file back, and the test compares every byte and piece of metadata."""
    src = tmp_path / "src"
    make_small_files(src / "small", 20_000, 200, seed=5)
    rng = random.Random(9)
    medium = src / "medium"
    medium.mkdir()
    for n in range(40):
        (medium / f"m{n:02}.bin").write_bytes(rng.randbytes(rng.randint(100_000, 1_500_000)))
    big = src / "big"
    big.mkdir()
    for n in range(3):  # 3 x 24 MiB of incompressible data: several 16 MiB packs
        (big / f"big{n}.bin").write_bytes(rng.randbytes(24 << 20))
    with open(big / "sparse.img", "wb") as f:
        f.truncate(40 << 20)
        f.seek(30 << 20)
        f.write(rng.randbytes(1 << 20))
    os.link(big / "big0.bin", big / "big0-again.bin")
    os.link(src / "small/d0000/f000000.txt", src / "small/d0099/hardlink.txt")
    os.symlink("../big/big1.bin", medium / "link-to-big1")
    os.setxattr(medium / "m00.bin", "user.keep", b"x" * 300)
    (medium / "empty").write_bytes(b"")  # stored as one empty blob: verify must agree
    device.init()
    device.json("backup", str(src))
    target = tmp_path / "out"
    result = device.json("restore", "latest", "--target", str(target), "--verify")
    assert result["warnings"] == []
    assert result["mismatches"] == []
    assert result["verified"] == 20_000 + 40 + 1 + 3 + 1 + 2
    assert describe(restored(target, src)) == describe(src)
    assert not list(restored(target, src).rglob(".keep-restore-*"))


def _corrupt_every(n: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every n-th write of the restorer land with one byte flipped (a
    restore defect that damages a few files among thousands); returns the
    list that counts the writes. The fetch threads write every file here
    (no helper processes, which this patch would not reach)."""
    monkeypatch.setattr(restorer, "HELPERS_FROM", 10**9)
    real = file_writer.pwrite_all
    calls: list[int] = []

    def damaging(fd: int, data: memoryview, offset: int) -> None:
        calls.append(offset)
        if len(calls) % n == 0:
            data = memoryview(bytes([data[0] ^ 0xFF]) + bytes(data[1:]))
        real(fd, data, offset)

    monkeypatch.setattr(file_writer, "pwrite_all", damaging)
    return calls


def _backed_up_repo(device: Device, src: Path) -> tuple[Remote, Repository]:
    device.init()
    device.run("backup", str(src))
    state = DeviceState.load(device.home)
    remote = Remote(state.server_url, state.device_token)
    repo = Repository(remote, state.keys, device.home / "c2", state.suite)
    repo.load_index()
    return remote, repo


def _at_walk_end(monkeypatch: pytest.MonkeyPatch, look: Callable[[], None]) -> None:
    """Call `look` whenever a restore has walked its trees, before it
    fetches anything (what it raises stops the restore there)."""
    real = restorer.Restorer._fetch_planned

    def watched(self: restorer.Restorer) -> None:
        look()
        real(self)

    monkeypatch.setattr(restorer.Restorer, "_fetch_planned", watched)


def test_what_the_walk_keeps_of_each_file_is_bounded(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore holds what it walked of every file until its end, so that
    is its memory per file: measured as the walk ends (every tree read and
    walked, nothing fetched yet), over 10,000 small files. Holding each
    file's whole node cost ~610 bytes a file, what writing needs ~410; the
    temporary names held to the end added ~60 more."""
    src = tmp_path / "src"
    make_small_files(src, 10_000, 500, seed=4)
    remote, repo = _backed_up_repo(device, src)
    walked: list[int] = []
    _at_walk_end(monkeypatch, lambda: walked.append(tracemalloc.get_traced_memory()[0]))
    with remote:
        (info,) = repo.snapshots()
        repo.read_tree_bytes(info.snapshot.tree)
        r = restorer.Restorer(repo, os.fsencode(tmp_path / "out"))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            r.run(info.snapshot.tree)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    per_file = (walked[0] - before) / 10_000
    assert per_file < 480, per_file
    assert (after - before) / 10_000 < per_file + 40  # nothing per file is added while writing
    assert describe(restored(tmp_path / "out", src)) == describe(src)


def test_verify_names_exactly_the_files_that_came_out_wrong(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    make_small_files(src, 1_000, 100, seed=3)
    remote, repo = _backed_up_repo(device, src)
    with remote:
        _corrupt_every(250, monkeypatch)
        target = tmp_path / "out"
        (info,) = repo.snapshots()
        r = restorer.Restorer(repo, os.fsencode(target))
        r.run(info.snapshot.tree)
        found = {w.path for w in r.verify()}
    out = restored(target, src)
    wrong = {
        str(p.relative_to(target))
        for p in out.rglob("*.txt")
        if p.read_bytes() != (src / p.relative_to(out)).read_bytes()
    }
    assert len(wrong) == 4
    assert found == wrong


def test_drill_restores_whole_directories_and_catches_a_few_damaged_files(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    make_small_files(src, 6_000, 300, seed=4)
    remote, repo = _backed_up_repo(device, src)
    with remote:
        (info,) = repo.snapshots()
        clean = drill.drill(repo, info, device.home)
        assert clean.ok
        assert clean.directories >= 1
        assert clean.files >= drill.DIR_FILES
        calls = _corrupt_every(400, monkeypatch)  # 0.25 % of the files written
        damaged = drill.drill(repo, info, device.home)
    assert len(calls) >= drill.DIR_FILES
    assert not damaged.ok
    assert len(damaged.mismatches) == len(calls) // 400
    assert {m["problem"] for m in damaged.mismatches} == {"restored content differs from what was backed up"}


def test_the_drill_sample_holds_random_files_and_whole_directories() -> None:
    files = [(b"/d%d/f%d" % (n // 100, n), Node(b"f%d" % n, NodeType.FILE, size=10)) for n in range(10_000)]
    sample, directories = drill.choose(files, 20, 1 << 30, dir_files=500, rng=random.Random(1))
    paths = {p for p, _ in sample}
    assert 5 <= len(directories) <= 6
    for d in directories:
        assert {p for p, _ in files if p.startswith(d + b"/")} <= paths
    assert len(paths) >= 500 + 20 - 100  # sampled files may fall in the chosen directories
    small, _ = drill.choose(files, 20, 25 * 10, dir_files=500, rng=random.Random(1))
    assert len(small) <= 25  # the byte budget holds


def test_a_new_machine_reads_trees_ahead_and_reads_a_failed_one_again(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a new machine (an empty tree cache) each directory's tree is a
    round trip; the restorer has the trees below a directory read ahead in
    the background. A read-ahead is checked like any read, and one that fails
    — here every one, through a remote that inverts what the read-ahead
    threads receive — is read again when the walk needs it: the restore is
    still exact, byte for byte."""
    src = tmp_path / "src"
    make_small_files(src, 3_000, 10, seed=6)  # 300 directories
    remote, repo = _backed_up_repo(device, src)
    real = Remote.get_range
    by_thread: list[str] = []
    invert = False

    def watched(self: Remote, kind: str, object_id: str, start: int, end: int) -> bytes:
        data = real(self, kind, object_id, start, end)
        name = threading.current_thread().name
        by_thread.append(name)
        if invert and name.startswith("keep-trees"):
            return (int.from_bytes(data) ^ ((1 << 8 * len(data)) - 1)).to_bytes(len(data))
        return data

    monkeypatch.setattr(Remote, "get_range", watched)
    with remote:
        (info,) = repo.snapshots()
        restorer.Restorer(repo, os.fsencode(tmp_path / "ahead")).run(info.snapshot.tree)
        assert sum(n.startswith("keep-trees") for n in by_thread) >= 300
        assert describe(restored(tmp_path / "ahead", src)) == describe(src)

        fresh = Repository(remote, repo.keys, device.home / "c3", repo.suite)
        fresh.load_index()
        by_thread.clear()
        invert = True
        restorer.Restorer(fresh, os.fsencode(tmp_path / "again")).run(info.snapshot.tree)
        ahead = sum(n.startswith("keep-trees") for n in by_thread)
        assert ahead >= 300
        assert len(by_thread) - ahead >= 300  # each was read again by the walk
        assert describe(restored(tmp_path / "again", src)) == describe(src)
        # Once the walk is over nothing more is read ahead (nor, after a
        # failed walk, kept running: the same `finally`).
        assert fresh._prefetch_pool is None
        assert not fresh._prefetched


def test_a_restore_pauses_the_garbage_collector_and_always_restarts_it(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector is off while a restore builds its per-file state (it
    would walk all of it again at every full collection) and on again after,
    whether the restore ends well or is stopped."""
    src = tmp_path / "src"
    make_small_files(src, 50, 10, seed=6)
    remote, repo = _backed_up_repo(device, src)
    seen: list[bool] = []

    def look() -> None:
        seen.append(gc.isenabled())
        if len(seen) == 2:
            raise OSError(28, "No space left on device")

    _at_walk_end(monkeypatch, look)
    with remote:
        (info,) = repo.snapshots()
        assert gc.isenabled()
        restorer.Restorer(repo, os.fsencode(tmp_path / "out")).run(info.snapshot.tree)
        assert gc.isenabled()
        with pytest.raises(OSError, match="No space"):
            restorer.Restorer(repo, os.fsencode(tmp_path / "out2")).run(info.snapshot.tree)
        assert gc.isenabled()
    assert seen == [False, False]
    assert describe(restored(tmp_path / "out", src)) == describe(src)


def test_loading_the_index_pauses_the_collector_and_always_restarts_it(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the index builds an object per pack and per blob id, kept to
    the end: the collector is off meanwhile and on again after, also when
    the load fails."""
    src = tmp_path / "src"
    make_small_files(src, 50, 10, seed=7)
    remote, repo = _backed_up_repo(device, src)
    seen: list[bool] = []
    real = Index.open

    def watched(data_key: DataKey, data: bytes) -> Index:
        seen.append(gc.isenabled())
        if len(seen) == 2:
            raise OSError(5, "Input/output error")
        return real(data_key, data)

    monkeypatch.setattr(Index, "open", watched)
    with remote:
        assert gc.isenabled()
        repo.load_index()
        assert gc.isenabled()
        with pytest.raises(OSError, match="Input/output"):
            repo.load_index()
        assert gc.isenabled()
    assert seen == [False, False]


def _tree_for_batches(src: Path) -> None:
    """3,000 small files in 30 directories, files of several blobs, the same
    content in the first and the last directory (a blob two batches share)
    and a hardlink from the last directory to the first."""
    make_small_files(src / "small", 3_000, 100, seed=8)
    rng = random.Random(12)
    for n in range(6):
        (src / "small" / f"d{n * 5:04}" / "multi.bin").write_bytes(
            rng.randbytes(rng.randint(1_500_000, 2_500_000))
        )
    shared = rng.randbytes(3000)
    (src / "small/d0000/shared.bin").write_bytes(shared)
    (src / "small/d0029/shared-too.bin").write_bytes(shared)
    os.link(src / "small/d0000/f000001.txt", src / "small/d0029/linked.txt")


def _in_batches_of_100(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers_from: int
) -> tuple[Path, Remote, Repository, list[tuple[int, int]]]:
    """The batch tree, backed up; the restorer set to plan 100 files at a
    time; and a list that gets (first file, files written so far) as each
    batch is planned."""
    src = tmp_path / "src"
    _tree_for_batches(src)
    remote, repo = _backed_up_repo(device, src)
    monkeypatch.setattr(restorer, "PLAN_BATCH", 100)
    monkeypatch.setattr(restorer, "RANGES_AHEAD", 1)
    monkeypatch.setattr(restorer, "HELPERS_FROM", helpers_from)
    batches: list[tuple[int, int]] = []
    real = restorer.Restorer._fetch_batch

    def counting(self: restorer.Restorer, content: list[tuple[bytes, ...]], first: int) -> None:
        batches.append((first, self.stats.files_written))
        real(self, content, first)

    monkeypatch.setattr(restorer.Restorer, "_fetch_batch", counting)
    return src, remote, repo, batches


@pytest.mark.parametrize(
    "helpers_from", [50, 1_000, 10**9], ids=["helpers", "helpers-from-the-tenth-batch", "fetch-threads-write"]
)
def test_files_planned_in_batches_come_out_whole(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers_from: int
) -> None:
    """31 batches of 100 files: the fetch threads write the first while later
    ones are planned, a blob two batches share is fetched for each, and
    helpers take over the one-blob files once enough are planned."""
    src, remote, repo, batches = _in_batches_of_100(device, tmp_path, monkeypatch, helpers_from)
    target = tmp_path / "out"
    with remote:
        (info,) = repo.snapshots()
        r = restorer.Restorer(repo, os.fsencode(target))
        stats = r.run(info.snapshot.tree)
        assert r.verify() == []
    assert isinstance(r._writer, file_writer.HelperWriters) == (helpers_from < 10**9)
    assert [first for first, _ in batches] == list(range(0, 3_100, 100))
    assert batches[-1][1] > 0  # files were in place before the last batch was planned
    assert stats.warnings == []
    assert describe(restored(target, src)) == describe(src)
    assert not list(target.rglob(".keep-restore-*"))
    # A file in place holds no temporary name (100,000 of them were ~6 MiB of the peak).
    assert [f.path for f in r._files if f.temp is not None] == []


@pytest.mark.parametrize("helpers_from", [50, 10**9], ids=["helpers", "fetch-threads-write"])
def test_a_failed_write_stops_the_planning_and_leaves_every_file_whole_or_absent(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers_from: int
) -> None:
    """The disk fills a few batches in: the restore stops with one line, no
    further batch is planned, no temporary file is left."""
    src, remote, repo, batches = _in_batches_of_100(device, tmp_path, monkeypatch, helpers_from)
    target = tmp_path / "out"
    with remote, tmpfs(tmp_path / "out", "2m"):  # full a few batches in
        (info,) = repo.snapshots()
        with pytest.raises(restorer.RestoreStoppedError, match="the disk is full") as stopped:
            restorer.Restorer(repo, os.fsencode(target)).run(info.snapshot.tree)
        assert "\n" not in str(stopped.value)
        assert len(batches) < 25  # of the 31
        out = restored(target, src)
        assert not list(target.rglob(".keep-restore-*"))
        whole = 0
        for path in out.rglob("*"):
            if path.is_file():
                assert path.read_bytes() == (src / path.relative_to(out)).read_bytes(), path
                whole += 1
        assert whole > 0


def test_ctrl_c_while_the_last_ranges_are_fetched_drops_those_not_started(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt that reaches the restorer while it waits for the fetch
    threads stops them: ranges not started are dropped, not fetched first."""
    src = tmp_path / "src"
    make_small_files(src, 600, 100, seed=14)
    remote, repo = _backed_up_repo(device, src)
    monkeypatch.setattr(restore_plan, "RANGE_MAX", 64 * 1024)  # one range per few files: dozens of them
    monkeypatch.setattr(restorer, "RANGES_AHEAD", 1_000)  # all queued before the last wait
    started: list[int] = []
    real = restorer.Restorer._fetch_range

    def slow(self: restorer.Restorer, rng: restore_plan.RangeFetch) -> None:
        if not self._stop.is_set():
            started.append(1)
            if len(started) == 4:
                _thread.interrupt_main()  # Ctrl-C, delivered to the waiting main thread
            time.sleep(0.05)
        real(self, rng)

    monkeypatch.setattr(restorer.Restorer, "_fetch_range", slow)
    target = tmp_path / "out"
    with remote:
        (info,) = repo.snapshots()
        r = restorer.Restorer(repo, os.fsencode(target))
        with pytest.raises(KeyboardInterrupt):
            r.run(info.snapshot.tree)
        ranges = len(restore_plan.plan([f.content for f in r._files], repo.place, repo.pack_sizes))
    assert ranges >= 20
    assert len(started) < ranges // 2
    assert not list(target.rglob(".keep-restore-*"))
    out = restored(target, src)
    for path in out.rglob("*"):  # what was written is whole; the rest is absent
        if path.is_file():
            assert path.read_bytes() == (src / path.relative_to(out)).read_bytes(), path


def test_a_range_is_opened_forwards_and_ends_where_it_cannot_be_read_on(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range is read forwards, one blob at a time; an index entry that
    places a blob where the range has already passed (overlapping another:
    an entry planted with a device credential can) is read with a request
    of its own, and every blob still opens to its bytes. A failure to read
    the range on is the range's, not a blob's: raised once."""
    src = tmp_path / "src"
    src.mkdir()
    files = [src / f"f{n}" for n in range(3)]
    for f in files:
        f.write_bytes(os.urandom(100_000))
    remote, repo = _backed_up_repo(device, src)
    with remote:
        places: dict[Path, Location] = {}
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                (bid,) = restorer.content_ids(fd, repo.keys)
            finally:
                os.close(fd)
            loc = repo.locate(bid)
            assert loc is not None
            places[f] = loc
        first, second = sorted(files[:2], key=lambda f: places[f].entry.offset)
        a, b = places[first], places[second]
        assert a.pack_id == b.pack_id
        start, end = a.entry.offset, b.entry.offset + b.entry.length
        with remote.range_reader("pack", a.pack_id, start, end) as reader:
            opened = [plain for _, plain in repo.open_range(reader, [a, b, a])]
        # A range that cannot be read on (here: the server has fewer bytes
        # when asked again) ends there: raised once, not one failed request
        # per blob left.
        reads: list[int] = []
        reader = remote.range_reader("pack", a.pack_id, start, end)
        real_read = reader.read

        def short_on_resume(n: int) -> bytes:
            reads.append(n)
            if len(reads) > 1:
                raise IntegrityError("pack: the server returned a short range")
            return real_read(n)

        monkeypatch.setattr(reader, "read", short_on_resume)
        with reader:
            blobs = repo.open_range(reader, [a, b, a])
            assert next(blobs)[1] == first.read_bytes()
            with pytest.raises(IntegrityError, match="short range"):
                next(blobs)
        assert len(reads) == 2
    assert opened == [first.read_bytes(), second.read_bytes(), first.read_bytes()]


def test_the_fetch_threads_never_open_two_large_blobs_at_once(
    device: Device, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk-image-like files (4 MiB of data, then 8 MiB of zeros: chunks cut
    at the 8 MiB maximum) restored with the production thread count: while
    one thread holds such a blob (sealed bytes, payload, plaintext) the
    other waits rather than open a second, so the two never hold more than
    `HOLD_MAX` together; ordinary blobs still open side by side. Each blob
    is held open a while, so that without the limit the threads would
    overlap; the files come back exact."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(3)
    for n in range(4):
        (src / f"disk{n}.img").write_bytes(rng.randbytes(4 << 20) + bytes(8 << 20))
    for n in range(40):
        (src / f"small{n}").write_bytes(rng.randbytes(300_000))
    remote, repo = _backed_up_repo(device, src)
    real = Repository.open_located
    lock = threading.Lock()
    opening: list[int] = []  # plaintext sizes of the blobs being opened now
    together: list[list[int]] = []

    def watched(self: Repository, loc: Location, sealed: bytes | memoryview, cipher: object = None) -> bytes:
        with lock:
            opening.append(loc.entry.raw_length)
            together.append(list(opening))
        try:
            time.sleep(0.05 if loc.entry.raw_length > restorer.HOLD_MAX // 4 else 0.005)
            return real(self, loc, sealed, cipher)  # type: ignore[arg-type]
        finally:
            with lock:
                opening.remove(loc.entry.raw_length)

    monkeypatch.setattr(Repository, "open_located", watched)
    with remote:
        (info,) = repo.snapshots()
        restorer.Restorer(repo, os.fsencode(tmp_path / "out")).run(info.snapshot.tree)
    assert describe(restored(tmp_path / "out", src)) == describe(src)
    large = restorer.HOLD_MAX // 4
    assert all(sum(raw > large for raw in moment) <= 1 for moment in together)
    assert any(len(moment) > 1 for moment in together)  # two threads did open blobs side by side

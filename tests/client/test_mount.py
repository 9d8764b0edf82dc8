"""`keep mount` for real: /dev/fuse, Debian's libfuse3 and fusermount3, the
real `keep` against a real keep-server. The mounted snapshots are compared
with their sources through the mount (every byte and every piece of
metadata restore keeps), a damaged pack is an I/O error and never wrong
bytes, and `keep umount` and Ctrl-C both end the mount cleanly."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keep.protocol.blob import BlobType
from tests.client.conftest import KEEP, Device, device_repository
from tests.client.test_explore import (
    DEPTH,
    deep_recursion,  # noqa: F401 (autouse: 1,000 levels)
)
from tests.client.test_maintenance import object_path
from tests.client.tree_builder import describe, make_deep_tree, make_rich_tree

MiB = 1 << 20


def wait_until(condition: object, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if proc.poll() is not None:
            raise AssertionError(f"keep mount ended: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "the mount did not appear"
        time.sleep(0.05)


@contextmanager
def mounted(device: Device, mountpoint: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    mountpoint.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [KEEP, "mount", str(mountpoint), *args],
        env=device.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: os.path.ismount(mountpoint), proc)
        yield proc
    finally:
        if proc.poll() is None:
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
            proc.wait(timeout=30)


def deep_tree(root: Path) -> None:
    """1,000 nested directories and 200 files of equal size with different bytes."""
    make_deep_tree(root, DEPTH)
    same = root / "same-size"
    same.mkdir()
    for i in range(200):
        (same / f"f{i:03}").write_bytes(i.to_bytes(2, "big") * 2048)


def test_every_snapshot_is_its_source_through_the_mount(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    deep_tree(src)
    device.init()
    device.run("backup", str(src), "--tag", "first")
    first = describe(src)
    (src / "docs" / "readme.txt").write_text("changed\n")
    os.utime(src / "docs" / "readme.txt", ns=(1_700_000_000_000_000_000,) * 2)
    device.run("backup", str(src))
    second = describe(src)
    snaps = device.json("snapshots")
    mnt = tmp_path / "mnt"
    with mounted(device, mnt) as proc:
        by_time = sorted(os.listdir(mnt / "snapshots"))
        assert len(by_time) == 2
        inside = str(src).lstrip("/")
        assert describe(mnt / "snapshots" / by_time[0] / inside) == first
        assert describe(mnt / "snapshots" / by_time[1] / inside) == second
        assert os.readlink(mnt / "latest") == f"snapshots/{by_time[1]}"
        assert describe(mnt / "latest" / inside) == second
        assert describe(mnt / "ids" / snaps[0]["id"][:12] / inside) == first
        host = os.listdir(mnt / "hosts")
        assert host == [snaps[0]["host"]]
        assert os.readlink(mnt / "hosts" / host[0] / "latest") == by_time[1]
        # Sizes and sparse files: the 12 MiB file with an 8 MiB hole reads back whole.
        sparse = mnt / "latest" / inside / "sparse.img"
        assert sparse.stat().st_size == 12 * MiB
        assert sparse.read_bytes() == (src / "sparse.img").read_bytes()
        # Hard links are one inode in the mount too.
        a, b = (os.stat(mnt / "latest" / inside / n) for n in ("hard-a", "hard-b"))
        assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
        # Read-only.
        with pytest.raises(OSError, match="Read-only file system"):
            (mnt / "latest" / inside / "new.txt").write_text("no")
        with pytest.raises(OSError, match="Read-only file system"):
            (mnt / "latest" / inside / "docs" / "readme.txt").write_text("no")
        # `keep umount` ends it: the mount process exits 0.
        out = subprocess.run([KEEP, "umount", str(mnt)], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert proc.wait(timeout=30) == 0
        assert "unmounted" in proc.stderr.read()  # type: ignore[union-attr]
    assert not os.path.ismount(mnt)
    assert os.listdir(mnt) == []


def test_a_damaged_blob_is_an_io_error_never_wrong_bytes(
    device: Device, server_data: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(6 * MiB))
    (src / "small.txt").write_text("fine\n")
    device.init()
    device.run("backup", str(src))
    remote, repo = device_repository(device, tmp_path / "cache")
    with remote:
        repo.load_index()
        data_packs = sorted(
            p for p, pack in repo.packs.items() if any(e.blob_type is BlobType.DATA for e in pack.entries)
        )
    path = object_path(server_data, "pack", data_packs[0])
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    mnt = tmp_path / "mnt"
    with mounted(device, mnt) as proc:
        inside = mnt / "latest" / str(src).lstrip("/")
        files = {p.name: p for p in inside.iterdir()}
        errors: list[int | None] = []
        for name, original in (("big.bin", src / "big.bin"), ("small.txt", src / "small.txt")):
            try:
                data = files[name].read_bytes()
            except OSError as exc:
                errors.append(exc.errno)
            else:
                assert data == original.read_bytes()  # whatever is returned is right
        assert errors  # the damaged pack held at least one of them
        assert set(errors) == {errno.EIO}
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C ends the mount too
        code = proc.wait(timeout=30)
        err = proc.stderr.read()  # type: ignore[union-attr]
        assert code == 0, err
        assert "the read failed (EIO)" in err
        assert "Traceback" not in err
        assert "unmounted" in err
    assert not os.path.ismount(mnt)


def test_mount_refuses_a_busy_mountpoint_and_says_which_extra(device: Device, tmp_path: Path) -> None:
    device.init()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    out = device.run("mount", str(busy), check=False)
    assert (out.returncode, out.stderr.strip()) == (
        2,
        f"keep: {busy} is not empty: mount on an empty directory",
    )


def test_the_blob_cache_under_eviction_and_racing_readers(device: Device, tmp_path: Path) -> None:
    """A cache too small for one blob (every insert evicts) and eight threads
    asking for the same blobs in different orders while ranges are fetched
    ahead: every reader gets every blob's verified bytes, and no request
    waits forever on a fetch that another thread started."""
    import random
    import threading

    from keep.client.engine.mount import _Blobs

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}.bin").write_bytes(os.urandom(3 * MiB))
    device.init()
    device.run("backup", str(src))
    remote, repo = device_repository(device, tmp_path / "cache")
    with remote:
        repo.load_index()
        wanted = sorted(b for b, loc in repo.index.items() if loc.entry.blob_type is BlobType.DATA)
        truth = {b: repo.read_blob(b) for b in wanted}
        assert len(wanted) >= 8
        blobs = _Blobs(repo, budget=1)
        wrong: list[bytes] = []

        def reader(seed: int) -> None:
            order = list(wanted)
            random.Random(seed).shuffle(order)
            for i, blob in enumerate(order):
                if i % 3 == 0:
                    blobs.prefetch(order[i : i + 4])
                if blobs.get(blob) != truth[blob]:
                    wrong.append(blob)

        threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        blobs.close()
        assert wrong == []

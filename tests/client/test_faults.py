"""Faults with real parts: the server's disk fills up (a real tmpfs), the
server dies mid-upload, an object rots on the server's disk. Each time the
client says clearly what happened, nothing already stored is damaged, and the
next run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keep.client.device.state import DeviceState
from keep.client.remote import Remote
from support.servers import free_port, keep_server
from tests.client.conftest import KEEP, Device
from tests.client.tmpfs import tmpfs
from tests.client.tree_builder import describe

MiB = 1024 * 1024


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def random_tree(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    for i in range(files):
        (root / f"f{i}.bin").write_bytes(os.urandom(size))
    return root


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs for the server's data dir."""
    with tmpfs(tmp_path / "disk", "48m") as mount:
        yield mount


def test_server_disk_full_is_a_clear_error_and_recoverable(small_disk: Path, tmp_path: Path) -> None:
    with keep_server(small_disk / "data") as (url, _):
        dev = Device(url, tmp_path / "home", "full", tmp_path / "pw")
        dev.password_file.write_text("disk full drill")
        dev.init()
        first = random_tree(tmp_path / "first", 2, 4 * MiB)
        dev.run("backup", str(first))
        big = random_tree(tmp_path / "big", 12, 6 * MiB)
        result = dev.run("backup", str(big), check=False)
        assert result.returncode == 16, result.stderr
        assert "out of storage space" in result.stderr
        assert "Traceback" not in result.stderr
        # what was stored before is intact
        target = tmp_path / "r1"
        dev.run("restore", "latest", "--target", str(target))
        assert describe(restored(target, first)) == describe(first)
        # space is freed (the tmpfs grows); the same backup now succeeds
        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
        dev.run("backup", str(big))
        target = tmp_path / "r2"
        dev.run("restore", "latest", "--target", str(target))
        assert describe(restored(target, big)) == describe(big)


def test_server_killed_mid_upload_then_backup_completes(tmp_path: Path) -> None:
    src = random_tree(tmp_path / "src", 16, 6 * MiB)
    port = free_port()
    data = tmp_path / "server"
    dev = Device(f"http://127.0.0.1:{port}", tmp_path / "home", "crashy", tmp_path / "pw")
    dev.password_file.write_text("server crash drill")
    env = {**os.environ, "KEEP_HOME": str(dev.home), "KEEP_CONFIG": str(dev.home / "none.toml")}
    with keep_server(data, port=port) as (_, server):
        dev.init()
        backup = subprocess.Popen(
            [KEEP, "backup", str(src)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and backup.poll() is None:
            stored = sum(p.stat().st_size for p in (data / "objects").rglob("*") if p.is_file())
            if stored > 16 * MiB:
                break
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        _, err = backup.communicate(timeout=120)
    assert backup.returncode == 12, err
    assert "cannot reach the server" in err
    assert "Traceback" not in err
    with keep_server(data, port=port):
        summary = dev.json("backup", str(src))
        assert summary["warnings"] == []
        target = tmp_path / "restore"
        dev.run("restore", "latest", "--target", str(target))
        assert describe(restored(target, src)) == describe(src)


def test_corrupted_pack_is_detected_and_never_written(
    device: Device, tmp_path: Path, server_data: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 * MiB))
    (src / "b.txt").write_text("small file in the tree pack's neighbour\n")
    device.init()
    device.run("backup", str(src))
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        account_id = remote.request_json("GET", "/v1/account")["id"]
    packs = [p for p in (server_data / "objects" / account_id / "pack").rglob("*") if p.is_file()]
    biggest = max(packs, key=lambda p: p.stat().st_size)  # the data pack holding a.bin
    raw = bytearray(biggest.read_bytes())
    raw[200] ^= 0x40  # bit rot inside the first blob frame
    biggest.write_bytes(bytes(raw))
    target = tmp_path / "restore"
    result = device.run("restore", "latest", "--target", str(target), check=False)
    assert result.returncode == 15, result.stderr
    assert "failed verification" in result.stderr
    out = restored(target, src)
    assert not (out / "a.bin").exists(), "a file with unverified data must not be left behind"
    assert (out / "b.txt").read_text() == "small file in the tree pack's neighbour\n"

"""Two keep-server replicas sharing one PostgreSQL and one S3 bucket (all real
processes on 127.0.0.1): concurrent backups through different replicas, a
prune through one while a backup runs through the other, and a replica killed
mid-upload with the backup retried through the other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keep.client.device.state import DeviceState
from keep.client.remote import Remote
from support.servers import keep_server
from tests.client.conftest import KEEP, Device
from tests.client.test_faults import random_tree, restored
from tests.client.test_maintenance import PAUSE_TREE_FILES, owner, paused_backup
from tests.client.tree_builder import describe

MiB = 1024 * 1024


@pytest.fixture
def replicas(fresh_database: str, fresh_bucket: str, tmp_path: Path) -> Iterator[list[tuple[str, int]]]:
    shared = ("--metadata", fresh_database, "--objects", fresh_bucket)
    with (
        keep_server(tmp_path / "replica1", *shared) as (url1, proc1),
        keep_server(tmp_path / "replica2", *shared) as (url2, proc2),
    ):
        yield [(url1, proc1.pid), (url2, proc2.pid)]


def two_devices(replicas: list[tuple[str, int]], tmp_path: Path) -> tuple[Device, Device]:
    pw = tmp_path / "pw"
    pw.write_text("replicated passphrase\n")
    a = Device(replicas[0][0], tmp_path / "a", "shared", pw)
    a.init()
    b = Device(replicas[1][0], tmp_path / "b", "shared", pw)
    b.run("login", "--server", b.server, "--account", b.account, "--password-file", str(pw))
    return a, b


def backup_process(device: Device, path: Path) -> subprocess.Popen[str]:
    env = device.environ()
    return subprocess.Popen([KEEP, "--json", "backup", str(path)], env=env, stdout=subprocess.PIPE, text=True)


def same(device: Device, snapshot: str, source: Path, target: Path) -> None:
    device.run("restore", snapshot, "--target", str(target))
    assert describe(restored(target, source)) == describe(source)


def test_concurrent_backups_through_two_replicas(replicas: list[tuple[str, int]], tmp_path: Path) -> None:
    a, b = two_devices(replicas, tmp_path)
    src_a = random_tree(tmp_path / "src_a", 6, 3 * MiB)
    src_b = random_tree(tmp_path / "src_b", 6, 3 * MiB)
    procs = [backup_process(a, src_a), backup_process(b, src_b)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    snap_a, snap_b = (json.loads(o)["snapshot"] for o in outs)
    same(b, snap_a, src_a, tmp_path / "ra")  # each restores the other's, through its own replica
    same(a, snap_b, src_b, tmp_path / "rb")
    assert b.json("check", "--read-data")["ok"]


def test_prune_through_one_replica_while_backing_up_through_the_other(
    replicas: list[tuple[str, int]], tmp_path: Path
) -> None:
    a, b = two_devices(replicas, tmp_path)
    old = random_tree(tmp_path / "a_old", 3, 2 * MiB)
    a.json("backup", "--tag", "doomed", str(old))
    keeper = random_tree(tmp_path / "keeper", 1, 1000)
    a.json("backup", "--tag", "keep", str(keeper))
    owner(a, "forget", "--keep-tag", "keep")
    new = random_tree(tmp_path / "b_new", PAUSE_TREE_FILES, 2 * MiB)
    with paused_backup(b, old, new) as backup:
        pruned = owner(a, "prune")
    out, _ = backup.communicate(timeout=300)
    assert backup.returncode == 0
    assert pruned["packs_waiting"] >= 1
    snapshot = json.loads(out)["snapshot"]
    owner(a, "prune")  # phase two, after the backup ended
    target = tmp_path / "restore"
    a.run("restore", snapshot, "--target", str(target))
    assert describe(restored(target, old)) == describe(old)
    assert describe(restored(target, new)) == describe(new)
    assert a.json("check", "--read-data")["ok"]


def test_replica_killed_mid_upload_then_retried_through_the_other(
    replicas: list[tuple[str, int]], tmp_path: Path
) -> None:
    a, b = two_devices(replicas, tmp_path)
    src = random_tree(tmp_path / "src", 24, 3 * MiB)
    backup = backup_process(b, src)
    state = DeviceState.load(b.home)
    with Remote(replicas[0][0], state.device_token) as remote:
        deadline = time.monotonic() + 60
        while not remote.list_objects("pack"):
            assert time.monotonic() < deadline
            assert backup.poll() is None
            time.sleep(0.01)
    os.kill(replicas[1][1], signal.SIGKILL)  # the replica b talks to dies mid-backup
    backup.communicate(timeout=300)
    assert backup.returncode == 12  # server unreachable: a clear error
    # The load balancer now sends b to the surviving replica.
    raw = json.loads((b.home / "device.json").read_text())
    raw["server_url"] = replicas[0][0]
    (b.home / "device.json").write_text(json.dumps(raw))
    result = b.json("backup", str(src))
    assert result["bytes_added"] < 66 * MiB  # packs stored before the kill were not sent again
    assert len(a.json("snapshots")) == 1  # the interrupted backup left no snapshot
    assert a.json("check", "--read-data")["ok"]
    same(a, result["snapshot"], src, tmp_path / "restore")

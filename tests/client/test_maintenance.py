"""forget, prune, check, drill and scrub, end to end against the real server.

The concurrency test pauses a real backup (SIGSTOP) after it has loaded the
index and deduplicated against data that prune then condemns, so the
two-phase path is exercised deterministically, not by luck of timing."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keep.client.device.account import owner_login
from keep.client.device.state import DeviceState
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from keep.protocol.blob import BlobType
from keep.protocol.errors import PermissionDeniedError
from tests.client.conftest import KEEP, Device
from tests.client.test_faults import random_tree, restored
from tests.client.tree_builder import describe

MiB = 1024 * 1024
NS = 1_000_000_000


def owner(device: Device, *args: str) -> Any:
    return device.json(*args, "--password-file", str(device.password_file))


def usage(device: Device) -> int:
    return int(device.json("stats")["stored_bytes"])


def same_tree(device: Device, snapshot: str, source: Path, target: Path) -> None:
    device.run("restore", snapshot, "--target", str(target))
    assert describe(restored(target, source)) == describe(source)


def object_path(server_data: Path, kind: str, object_id: str) -> Path:
    (path,) = (server_data / "objects").glob(f"*/{kind}/{object_id[:2]}/{object_id}")
    return path


PAUSE_TREE_FILES = 48  # x 2 MiB: see paused_backup


@contextlib.contextmanager
def paused_backup(device: Device, *paths: Path) -> Iterator[subprocess.Popen[str]]:
    """Start `keep backup` of `paths`; once it has uploaded its first pack (so
    it has loaded the index and deduplicated what came before), SIGSTOP it for
    the duration of the block, then let it go on. Yields the process.

    Blobs are spread over OPEN_PACKS packs of PACK_TARGET bytes, so the first
    pack closes only after ~4 x 16 MiB: give well over that (PAUSE_TREE_FILES
    files of 2 MiB), or it lands at the very end and the backup may finish
    before it can be paused."""
    state = DeviceState.load(device.home)
    env = device.environ()
    backup = subprocess.Popen(
        [KEEP, "--json", "backup", *map(str, paths)], env=env, stdout=subprocess.PIPE, text=True
    )
    with Remote(state.server_url, state.device_token) as remote:
        packs = len(remote.list_objects("pack"))
        deadline = time.monotonic() + 60
        while len(remote.list_objects("pack")) == packs and backup.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    assert backup.poll() is None, "the backup ended before it could be paused"
    os.kill(backup.pid, signal.SIGSTOP)
    try:
        yield backup
    finally:
        os.kill(backup.pid, signal.SIGCONT)


def test_forget_prune_frees_space_and_keeps_the_rest(device: Device, tmp_path: Path) -> None:
    device.init()
    src = random_tree(tmp_path / "src", 4, 3 * MiB)
    first = device.json("backup", str(src))["snapshot"]
    (src / "f0.bin").write_bytes(os.urandom(3 * MiB))
    (src / "f1.bin").unlink()
    device.json("backup", str(src))
    (src / "f2.bin").write_bytes(os.urandom(3 * MiB))
    last = device.json("backup", str(src))["snapshot"]
    before = usage(device)

    plan = device.json("forget", "--keep-last", "1", "--dry-run")
    assert len(plan["forget"]) == 2
    assert first in plan["forget"]
    assert len(device.json("snapshots")) == 3  # a dry run changes nothing

    report = owner(device, "forget", "--keep-last", "1", "--prune", "--repack-below", "0.9")
    assert [k["id"] for k in report["keep"]] == [last]
    assert report["prune"]["packs_deleted"] >= 1
    assert report["prune"]["packs_waiting"] == 0
    assert [s["id"] for s in device.json("snapshots")] == [last]
    assert usage(device) < before - 6 * MiB  # two replaced and one deleted file's data are gone
    same_tree(device, last, src, tmp_path / "restore")
    assert device.json("check", "--read-data")["ok"]
    again = owner(device, "prune")  # nothing left to do
    assert again["packs_deleted"] == 0
    assert again["bytes_uploaded"] == 0


def test_device_credential_cannot_forget_or_prune(device: Device, tmp_path: Path) -> None:
    device.init()
    src = random_tree(tmp_path / "src", 1, 1000)
    device.json("backup", str(src))
    (src / "f0.bin").write_bytes(b"changed")
    device.json("backup", str(src))
    for args in (("forget", "--keep-last", "1"), ("prune",)):
        result = device.run(*args, check=False)  # no password available: only the device credential
        assert result.returncode == 2, result.stderr  # says how to give the owner's credential
        assert "--password-file" in result.stderr
    assert len(device.json("snapshots")) == 2
    # Asked directly, the server refuses the device credential's deletes.
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        snapshot = remote.list_objects("snapshot")[0].id
        with pytest.raises(PermissionDeniedError, match="append-only"):
            remote.delete_object("snapshot", snapshot)
    assert len(device.json("snapshots")) == 2


def test_prune_beside_a_running_backup_loses_nothing(device: Device, tmp_path: Path) -> None:
    device.init()
    old = random_tree(tmp_path / "a_old", 3, 2 * MiB)
    device.json("backup", "--tag", "doomed", str(old))
    keeper = random_tree(tmp_path / "keeper", 1, 1000)
    device.json("backup", "--tag", "keep", str(keeper))
    owner(device, "forget", "--keep-tag", "keep")  # a_old's data is now unreferenced

    # A backup of a_old (deduplicated against the forgotten data) plus new data,
    # paused once it has loaded the index and uploaded a pack.
    new = random_tree(tmp_path / "b_new", PAUSE_TREE_FILES, 2 * MiB)
    with paused_backup(device, old, new) as backup:
        first = owner(device, "prune")
    out, _ = backup.communicate(timeout=120)
    assert backup.returncode == 0
    snapshot = json.loads(out)["snapshot"]
    # The forgotten packs were condemned, not deleted: the backup was running.
    assert first["packs_condemned"] >= 1
    assert first["packs_waiting"] >= 1

    target = tmp_path / "restore1"
    device.run("restore", snapshot, "--target", str(target))  # reads condemned packs
    assert describe(restored(target, old)) == describe(old)
    assert describe(restored(target, new)) == describe(new)

    second = owner(device, "prune")  # the backup ended: phase two
    assert second["packs_resurrected"] >= 1
    assert second["packs_waiting"] == 0
    target = tmp_path / "restore2"
    device.run("restore", snapshot, "--target", str(target))
    assert describe(restored(target, old)) == describe(old)
    assert describe(restored(target, new)) == describe(new)
    assert device.json("check", "--read-data")["ok"]


def test_planted_snapshot_holds_its_group_back(device: Device, tmp_path: Path) -> None:
    device.init()
    src = random_tree(tmp_path / "src", 1, 1000)
    real = [device.json("backup", str(src))["snapshot"] for _ in range(2)]
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, state.keys, device.home / "c2", state.suite)
        (info,) = [s for s in repo.snapshots() if s.id == real[-1]]
        future = info.snapshot.time_ns + 400 * 86400 * NS  # a credential planting "newer" history
        repo.save_snapshot(dataclasses.replace(info.snapshot, time_ns=future))
    result = device.run(
        "--json", "forget", "--keep-last", "1", "--password-file", str(device.password_file), check=False
    )
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["forget"] == []
    assert len(report["suspicious"]) == 1
    assert {s["id"] for s in device.json("snapshots")} >= set(real)


def test_check_names_files_hit_by_a_deleted_or_corrupted_pack_or_lost_index(
    device: Device, server_data: Path, tmp_path: Path
) -> None:
    device.init()
    one = random_tree(tmp_path / "one", 1, 2 * MiB)
    device.json("backup", str(one))
    two = random_tree(tmp_path / "two", 1, 2 * MiB)
    device.json("backup", str(two))
    assert device.json("check", "--read-data")["ok"]
    state = DeviceState.load(device.home)
    with Remote(state.server_url, state.device_token) as remote:
        repo = Repository(remote, state.keys, device.home / "c2", state.suite)
        repo.load_index()
        packs = {loc.pack_id for loc in repo.index.values()}
        data_pack = {p for p in packs if any(e.blob_type is BlobType.DATA for e in repo.packs[p].entries)}
    victim = sorted(data_pack)[0]

    # A corrupted pack: structure looks fine, --read-data finds it and names the file.
    path = object_path(server_data, "pack", victim)
    saved = path.read_bytes()
    damaged = bytearray(saved)
    damaged[len(saved) // 3] ^= 0x40
    path.write_bytes(bytes(damaged))
    assert device.json("check")["ok"]
    result = device.run("--json", "check", "--read-data", check=False)
    assert result.returncode == 15
    report = json.loads(result.stdout)
    assert any(victim[:12] in e for e in report["errors"])
    affected = {a["path"] for a in report["affected"]}
    assert affected
    assert all(p.endswith("f0.bin") for p in affected)

    # A scrub on the server, without keys, finds the same flipped byte.
    scrub = subprocess.run(
        [str(Path(KEEP).with_name("keep-server")), "scrub", "--data-dir", str(server_data), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert scrub.returncode == 15, scrub.stderr
    damaged_objects = [d for acct in json.loads(scrub.stdout) for d in acct["damaged"]]
    assert ["pack", victim, "content does not hash to its name"] in damaged_objects

    # A drill that samples the damaged file reports a mismatch and records it.
    hit = report["affected"][0]["snapshot"]
    drill = device.run("--json", "drill", hit, "--files", "10", check=False)
    assert drill.returncode == 15
    assert json.loads(drill.stdout)["mismatches"]
    assert device.json("stats")["last_verified_restore"]["ok"] is False

    # A pack body lost from the server's disk: scrub reports it as missing.
    path.unlink()
    scrub = subprocess.run(
        [str(Path(KEEP).with_name("keep-server")), "scrub", "--data-dir", str(server_data), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert scrub.returncode == 15
    assert ["pack", victim] in [m for acct in json.loads(scrub.stdout) for m in acct["missing"]]
    path.write_bytes(saved)

    # A deleted pack: plain check finds it; putting it back heals everything.
    password = device.password_file.read_text().strip().encode()
    with Remote(state.server_url) as remote:
        remote.token, _ = owner_login(remote, state.account, password)
        remote.delete_object("pack", victim)
        result = device.run("--json", "check", check=False)
        assert result.returncode == 15
        report = json.loads(result.stdout)
        assert any("missing" in e for e in report["errors"])
        assert {a["path"] for a in report["affected"]} == affected
        remote.put_object("pack", saved)
    assert device.json("check", "--read-data")["ok"]
    assert device.json("drill", hit, "--files", "10")["ok"]
    assert device.json("stats")["last_verified_restore"]["ok"] is True

    # Lost indexes: their blobs are in no index any more.
    with Remote(state.server_url) as remote:
        remote.token, _ = owner_login(
            remote, state.account, device.password_file.read_text().strip().encode()
        )
        for info in remote.list_objects("index"):
            remote.delete_object("index", info.id)
    result = device.run("--json", "check", check=False)
    assert result.returncode == 15
    report = json.loads(result.stdout)
    assert report["affected_count"] >= 2
    assert any("no index" in a["problem"] for a in report["affected"])


def test_prune_deletes_a_crashed_backups_packs_without_leaving_them_indexed(
    device: Device, tmp_path: Path
) -> None:
    """Packs of a killed backup are orphans; prune condemns and (nobody else
    holding a lease) deletes them at once. No index object may still name
    them afterwards, or the next backup would deduplicate against nothing."""
    device.init()
    small = random_tree(tmp_path / "small", 1, 1000)
    device.json("backup", str(small))
    big = random_tree(tmp_path / "big", PAUSE_TREE_FILES, 2 * MiB)
    with paused_backup(device, big) as backup:
        backup.kill()
    backup.wait()
    state = DeviceState.load(device.home)
    with Remote(state.server_url) as remote:
        remote.token, _ = owner_login(
            remote, state.account, device.password_file.read_text().strip().encode()
        )
        for lease in remote.request_json("GET", "/v1/locks")["locks"]:  # the dead backup's lease
            remote.request_json("DELETE", f"/v1/locks/{lease['id']}", ok=(204,))
    report = owner(device, "prune")
    assert report["packs_deleted"] >= 1
    assert report["packs_waiting"] == 0
    shutil.rmtree(device.home / "cache", ignore_errors=True)
    assert device.json("check")["ok"]
    snapshot = device.json("backup", str(big))["snapshot"]
    same_tree(device, snapshot, big, tmp_path / "restore")

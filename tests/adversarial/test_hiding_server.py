"""A server (or a man in the middle) that hides the device's own latest
backup: every command that lists snapshots refuses with exit 15, because
the device remembers every snapshot it wrote, not only those it listed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from keep.client.device.account import owner_login
from keep.client.device.state import DeviceState
from keep.client.remote import Remote
from keep.protocol.envelope import ObjectKind
from keep.protocol.sealed_record import seal_record
from tests.client.conftest import Device
from tests.client.test_faults import random_tree
from tests.reliability.test_hostile_proxy import set_up


@pytest.mark.parametrize("forget_cache", [False, True])
def test_the_latest_backup_cannot_be_hidden(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path, forget_cache: bool
) -> None:
    dev, src, first = set_up(tamper, device, tmp_path)
    (src / "f0.bin").write_bytes(b"a newer version")
    latest = dev.json("backup", str(src))["snapshot"]  # never listed by this machine
    if forget_cache:  # the cache is a cache: what the device wrote is remembered elsewhere
        for p in (dev.home / "cache").rglob("*"):
            if p.is_file():
                p.unlink()
    tamper[1]["hide_snapshot"] = latest
    for command in (
        ("snapshots",),
        ("restore", "latest", "--target", str(tmp_path / "r")),
        ("backup", str(src)),
        ("check",),
    ):
        result = dev.run(*command, check=False)
        assert result.returncode == 15, (command, result.stdout, result.stderr)
        assert latest[:12] in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("f0.bin"))
    tamper[1].clear()
    assert [s["id"] for s in dev.json("snapshots")] == [first, latest]


def _v2_forget(device: Device, snapshot_id: str) -> None:
    """What a client before owner signatures wrote for `keep forget` (an
    unsigned version 2 index object), then the deletion, as the owner."""
    state = DeviceState.load(device.home)
    record = [2, [], [], [], [bytes.fromhex(snapshot_id)]]
    data = seal_record(state.keys.data, ObjectKind.INDEX, state.suite, os.urandom(32), record)
    password = device.password_file.read_text().strip().encode()
    with Remote(state.server_url, state.device_token) as remote:
        remote.put_object("index", data)
        session, _ = owner_login(remote, state.account, password)
        remote.request_json("DELETE", f"/v1/objects/snapshot/{snapshot_id}", token=session, ok=(204,))


def test_unsigned_forgets_from_before_signatures_count_once_at_migration(
    device: Device, tmp_path: Path
) -> None:
    """A machine upgraded from a version that kept no seen-snapshots record
    starts from its old cache and accepts what version 2 index objects said
    was forgotten, as the old code did; after that, only owner-signed forget
    lists excuse a missing snapshot."""
    src = random_tree(tmp_path / "src", 2, 1 << 16)
    device.init()
    first = device.json("backup", str(src))["snapshot"]
    (src / "f0.bin").write_bytes(b"newer")
    second = device.json("backup", str(src))["snapshot"]
    device.json("snapshots")
    (device.home / "seen-snapshots").unlink()  # as an older client left the machine
    _v2_forget(device, first)
    assert [s["id"] for s in device.json("snapshots")] == [second]
    assert (device.home / "seen-snapshots").exists()
    _v2_forget(device, second)  # now an unsigned forget no longer excuses anything
    result = device.run("snapshots", check=False)
    assert result.returncode == 15
    assert second[:12] in result.stderr

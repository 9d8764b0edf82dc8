"""A lock in the way says who holds it, since and until when; `keep unlock`
removes the lease of a holder that is gone and keeps a live one; prune
removes the LOCK objects that no lease names."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from keep.client.device.account import owner_login
from keep.client.device.state import DeviceState
from keep.client.engine.lease import Lease, held_locks
from keep.client.engine.prune import Pruner
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from support.servers import keep_server
from tests.client.conftest import KEEP, Device
from tests.client.tree_builder import describe


def repository(device: Device, owner: bool = False) -> Repository:
    """This device's repository through the Python API; as the owner (session
    and signing key) if `owner`."""
    state = DeviceState.load(device.home)
    remote = Remote(state.server_url, state.device_token)
    repo = Repository(remote, state.keys, device.home / "cache", state.suite)
    if owner:
        password = device.password_file.read_text().strip().encode()
        remote.token, master = owner_login(remote, state.account, password)
        repo.owner_key = master.owner_key()
    return repo


def killed_backup(device: Device, src: Path) -> int:
    """Start `keep backup`, SIGKILL it once its lease is on the server; its pid."""
    env = device.environ()
    proc = subprocess.Popen(
        [KEEP, "backup", str(src)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    repo = repository(device)
    deadline = time.monotonic() + 60
    while not repo.remote.request_json("GET", "/v1/locks")["locks"]:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the backup never took its lease"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.pid


def big_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(48 << 20))
    return src


def test_a_killed_backup_is_named_and_keep_unlock_clears_it(device: Device, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    (small / "a.txt").write_text("kept\n")
    device.init()
    device.run("backup", str(small))
    device.run("backup", str(small))  # so that forget has one to remove
    pid = killed_backup(device, big_source(tmp_path))

    forget = ("forget", "--keep-last", "1", "--password-file", str(device.password_file))
    result = device.run(*forget, check=False)
    assert result.returncode == 14, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert f"backup by {getpass.getuser()}@{socket.gethostname()} (pid {pid})" in message
    assert "since 20" in message
    assert "until 20" in message
    assert "keep unlock" in message

    unlocked = device.json("unlock")  # this device's own lease: no password needed
    (removed,) = unlocked["removed"]
    assert removed["holder"]["pid"] == pid
    assert removed["stale"] == f"process {pid} no longer runs on this host"
    assert unlocked["kept"] == []
    device.run(*forget)
    target = tmp_path / "out"
    device.run("restore", "latest", "--target", str(target), "--verify")
    assert describe(target / str(small).lstrip("/")) == describe(small)


def test_unlock_keeps_a_live_holder_unless_forced(device: Device, tmp_path: Path) -> None:
    device.init()
    other = repository(device)
    with Lease(other, purpose="restore"):  # alive: this test process holds and renews it
        assert device.json("unlock") == {"removed": [], "kept": device.json("unlock")["kept"]}
        (kept,) = device.json("unlock")["kept"]
        assert kept["holder"]["purpose"] == "restore"
        assert kept["holder"]["pid"] == os.getpid()
        assert kept["stale"] is None
        result = device.run("unlock", "--force", check=False)  # still this device's lease
        assert result.returncode == 0
        assert held_locks(other) == []


def test_unlock_of_another_devices_lease_needs_the_owner(device: Device, tmp_path: Path) -> None:
    device.init()
    owner = repository(device, owner=True)
    lease = Lease(owner, "exclusive", purpose="forget")
    lease.__enter__()
    lease._stop.set()  # a holder that stopped renewing: stale after STALE_AFTER
    result = device.run("unlock", "--force", check=False)
    assert result.returncode == 2
    assert "--password-file" in result.stderr
    assert len(held_locks(owner)) == 1
    device.run("unlock", "--force", "--password-file", str(device.password_file))
    assert held_locks(owner) == []


def test_prune_deletes_lock_objects_no_lease_names(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    device.init()
    for _ in range(3):
        device.run("backup", str(src))
    owner = repository(device, owner=True)
    assert len(owner.remote.list_objects("lock")) == 3  # one per backup: devices cannot delete
    with Lease(owner, "prune") as lease:
        Pruner(owner, lease).run()  # they are younger than the longest lease: kept
        assert len(owner.remote.list_objects("lock")) == 4
        lease.created += 3601  # an hour on
        result = Pruner(owner, lease).run()
    assert result.locks_deleted == 3  # this prune's own is still named by its lease
    assert len(owner.remote.list_objects("lock")) == 1


def test_a_full_account_still_restores(tmp_path: Path) -> None:
    """The account is exactly full: a backup stops with exit 16, and restore
    and check still work — their lease goes without its LOCK object when the
    server refuses one more byte."""
    data = tmp_path / "data"
    with keep_server(data) as (url, _):
        device = Device(url, tmp_path / "home", "full", tmp_path / "pw")
        device.password_file.write_text("correct horse battery staple\n")
        device.init()
        small = tmp_path / "small"
        small.mkdir()
        (small / "a.bin").write_bytes(os.urandom(2 << 20))
        device.run("backup", str(small))
        used = device.json("stats")["stored_bytes"]
        with sqlite3.connect(data / "keep.db") as db:  # the operator sets the quota to what is stored
            db.execute("UPDATE accounts SET quota = ?", (used,))
        assert device.run("backup", str(small), "--tag", "again", check=False).returncode == 16
        target = tmp_path / "out"
        device.run("restore", "latest", "--target", str(target), "--verify")
        assert describe(target / str(small).lstrip("/")) == describe(small)
        device.run("check")
        assert device.json("stats")["stored_bytes"] == used

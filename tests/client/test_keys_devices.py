"""The owner's worst day: device loss, forgotten password, changed password,
revoked devices — end to end with separate state dirs standing for machines."""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

from keep.client.device.recovery_kit import recovery_key_from_kit
from keep.client.device.state import DeviceState
from keep.protocol.recovery import decode_recovery_key
from support.servers import keep_server
from tests.client.conftest import KEEP, Device, Terminal
from tests.client.tree_builder import describe, make_rich_tree


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def login(new: Device, old: Device, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return new.run("login", "--server", old.server, "--account", old.account, *extra, check=check)


def test_device_lost_restore_on_a_new_machine_with_the_password(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    for p in sorted(device.home.rglob("*"), reverse=True):  # the device is gone
        p.unlink() if not p.is_dir() else p.rmdir()
    machine_b = Device(device.server, tmp_path / "machine-b", device.account, device.password_file)
    login(machine_b, device, "--password-file", str(device.password_file))
    target = tmp_path / "restore"
    machine_b.run("restore", "latest", "--target", str(target))
    assert describe(restored(target, src)) == describe(src)


def test_password_change_old_fails_new_and_kit_work(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    device.init()
    device.run("backup", str(src))
    new_pw = tmp_path / "new-password"
    new_pw.write_text("a brand new passphrase")
    device.run(
        "key", "passwd", "--password-file", str(device.password_file), "--new-password-file", str(new_pw)
    )
    device.run("key", "verify", "--password-file", str(new_pw))
    old = device.run("key", "verify", "--password-file", str(device.password_file), check=False)
    assert old.returncode == 10
    # the device token still works without any password
    device.run("snapshots")
    other = Device(device.server, tmp_path / "b", device.account, new_pw)
    assert login(other, device, "--password-file", str(device.password_file), check=False).returncode == 10
    login(other, device, "--password-file", str(new_pw))
    kit = Device(device.server, tmp_path / "c", device.account, new_pw)
    login(kit, device, "--recovery-kit", str(tmp_path / "kit.txt"))
    kit.run("snapshots")


def test_forgotten_password_restore_with_kit_only(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    machine_b = Device(device.server, tmp_path / "machine-b", device.account, tmp_path / "unknown")
    login(machine_b, device, "--recovery-kit", str(tmp_path / "kit.txt"))
    target = tmp_path / "restore"
    machine_b.run("restore", "latest", "--target", str(target))
    assert describe(restored(target, src)) == describe(src)


def test_new_recovery_kit_invalidates_the_old_one(device: Device, tmp_path: Path) -> None:
    device.init()
    new_kit = tmp_path / "kit2.txt"
    device.run("key", "recovery-kit", "--password-file", str(device.password_file), "--output", str(new_kit))
    assert oct(new_kit.stat().st_mode & 0o777) == "0o600"
    stale = Device(device.server, tmp_path / "b", device.account, device.password_file)
    assert login(stale, device, "--recovery-kit", str(tmp_path / "kit.txt"), check=False).returncode == 10
    login(stale, device, "--recovery-kit", str(new_kit))


def test_recovery_kit_typo_is_caught_before_any_network_call(device: Device, tmp_path: Path) -> None:
    device.init()
    text = (tmp_path / "kit.txt").read_text()
    key_line = next(ln for ln in text.splitlines() if "RK1-" in ln)
    damaged = text.replace(
        key_line, key_line.replace(key_line.strip()[-1], "Z" if key_line.strip()[-1] != "Z" else "Y")
    )
    bad = tmp_path / "bad-kit.txt"
    bad.write_text(damaged)
    other = Device("http://127.0.0.1:9", tmp_path / "b", device.account, device.password_file)
    result = other.run(
        "login",
        "--server",
        "http://127.0.0.1:9",
        "--account",
        device.account,
        "--recovery-kit",
        str(bad),
        check=False,
    )
    assert result.returncode == 2
    assert "typo" in result.stderr or "characters" in result.stderr


def _kdf_salt(device: Device) -> str:
    with urlopen(f"{device.server}/v1/accounts/{device.account}/kdf", timeout=10) as reply:  # noqa: S310
        return str(json.loads(reply.read())["salt"])


def test_password_change_killed_at_any_point_never_locks_the_owner_out(
    device: Device, tmp_path: Path
) -> None:
    """SIGKILL `keep key passwd` at random moments; each time exactly the
    password the server now holds (told by its KDF salt) must work."""
    device.init()
    new_pw = tmp_path / "new-password"
    new_pw.write_text("the next passphrase")
    env = device.environ()
    rng = random.Random(5)
    current, candidate = device.password_file, new_pw
    outcomes = set()
    for _ in range(8):
        salt_before = _kdf_salt(device)
        proc = subprocess.Popen(
            [KEEP, "key", "passwd", "--password-file", str(current), "--new-password-file", str(candidate)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.0, 1.2))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        changed = _kdf_salt(device) != salt_before
        outcomes.add(changed)
        if changed:
            current, candidate = candidate, current
        assert device.run("key", "verify", "--password-file", str(current), check=False).returncode == 0
    # the password that is not current must fail (one failure, below any throttle)
    assert device.run("key", "verify", "--password-file", str(candidate), check=False).returncode == 10
    assert outcomes == {True, False}, "the kills should hit both before and after the swap"


def test_revoked_device_cannot_upload_or_read(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    device.init()
    device.run("backup", str(src))
    owner = Device(device.server, tmp_path / "owner", device.account, device.password_file)
    login(owner, device, "--password-file", str(device.password_file))
    listed = owner.json("device", "list")
    victim = next(d["id"] for d in listed if not d["this_device"])
    assert len(listed) == 2
    owner.run("device", "revoke", victim, "--password-file", str(device.password_file))
    for args in (
        ("backup", str(src)),
        ("snapshots",),
        ("restore", "latest", "--target", str(tmp_path / "r")),
    ):
        result = device.run(*args, check=False)
        assert result.returncode == 13, (args, result.stderr)
        assert "revoked" in result.stderr
    assert [d["revoked"] is not None for d in owner.json("device", "list") if d["id"] == victim] == [True]


def test_device_token_cannot_delete_even_with_crafted_requests(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("precious")
    device.init()
    device.run("backup", str(src))
    state = DeviceState.load(device.home)
    url = urlsplit(state.server_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port)
    conn.request("GET", "/v1/objects/snapshot", headers={"Authorization": f"Bearer {state.device_token}"})
    snapshot_id = json.loads(conn.getresponse().read())["objects"][0]["id"]
    for method, path, headers in (
        ("DELETE", f"/v1/objects/snapshot/{snapshot_id}", {}),
        ("POST", f"/v1/objects/snapshot/{snapshot_id}", {"X-HTTP-Method-Override": "DELETE"}),
        ("DELETE", f"/v1/objects/snapshot/{snapshot_id}?method=delete", {}),
        ("DELETE", "/v1/account", {}),
        ("PUT", "/v1/keyslots/password", {"Content-Type": "application/json"}),
    ):
        conn.request(
            method, path, body=b"{}", headers={"Authorization": f"Bearer {state.device_token}", **headers}
        )
        status = conn.getresponse()
        status.read()
        assert status.status in (403, 405), (method, path, status.status)
    assert len(device.json("snapshots")) == 1


def test_server_never_sees_secrets_names_or_content(tmp_path: Path) -> None:
    """After init, backup, passwd, kit renewal and restore, the server's data
    dir and log hold no password, recovery key, key material, file name or
    file content."""
    marker_name = "very-private-filename-4242.txt"
    marker_content = b"the diary entry nobody may read 77"
    password = "correct horse battery staple 91"
    with keep_server(tmp_path / "server") as (url, _):
        dev = Device(url, tmp_path / "home", "secretive", tmp_path / "pw")
        dev.password_file.write_text(password)
        dev.init()
        src = tmp_path / "src"
        (src / "private-dir-name-5151").mkdir(parents=True)
        (src / "private-dir-name-5151" / marker_name).write_bytes(marker_content * 1000)
        dev.run("backup", str(src))
        new_pw = tmp_path / "pw2"
        new_pw.write_text(password + " changed")
        dev.run(
            "key", "passwd", "--password-file", str(dev.password_file), "--new-password-file", str(new_pw)
        )
        dev.run("key", "recovery-kit", "--password-file", str(new_pw), "--output", str(tmp_path / "kit2.txt"))
        dev.run("restore", "latest", "--target", str(tmp_path / "r"))
    state = DeviceState.load(dev.home)
    kits = [(tmp_path / "kit.txt").read_text(), (tmp_path / "kit2.txt").read_text()]
    recovery = [decode_recovery_key(recovery_key_from_kit(k)) for k in kits]
    keys = [
        state.keys.data.material,
        state.keys.id.material,
        state.keys.chunker.material,
        *(r.material for r in recovery),
    ]
    needles = [
        password.encode(),
        (password + " changed").encode(),
        marker_name.encode(),
        b"private-dir-name-5151",
        marker_content,
        state.device_token.encode(),
    ]
    for k in keys:
        needles += [k, k.hex().encode(), base64.b64encode(k)]
    needles += [k.split("RK1-")[1].split()[0].encode() for k in kits]
    files = [p for p in (tmp_path / "server").rglob("*") if p.is_file()]
    files += list(tmp_path.glob("server-server.log"))
    assert files
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{path.name} contains a secret or a plaintext name"


def test_revoke_by_name_or_prefix_and_asks_before_revoking_this_device(
    device: Device, tmp_path: Path
) -> None:
    device.init()
    pw = ("--password-file", str(device.password_file))
    others = {}
    for home, name in [(n, n) for n in ("kitchen-pi", "attic-nas", "attic-nuc")] + [
        ("g1", "garage"),
        ("g2", "garage"),
    ]:
        others[home] = device.another(tmp_path / home, "--device-name", name)
    listed = {d["name"]: d["id"] for d in device.json("device", "list")}

    device.run("device", "revoke", "kitchen-pi", *pw)  # by name
    assert others["kitchen-pi"].run("snapshots", check=False).returncode == 13
    device.run("device", "revoke", listed["attic-nas"][:10], *pw)  # by a unique prefix
    assert others["attic-nas"].run("snapshots", check=False).returncode == 13
    result = device.run("device", "revoke", "attic", *pw, check=False)
    assert result.returncode == 1  # not a name, not a prefix of an id
    assert "no device has the id or name 'attic'" in result.stderr
    result = device.run("device", "revoke", "garage", *pw, check=False)  # two devices have that name
    assert result.returncode == 2
    assert "'garage' matches 2 devices" in result.stderr
    assert others["g1"].run("snapshots", check=False).returncode == 0

    me = next(d for d in device.json("device", "list") if d["this_device"])
    result = device.run("device", "revoke", me["id"][:8], *pw, check=False)  # no terminal: refused
    assert result.returncode == 2
    assert "is this device" in result.stderr
    assert "--yes" in result.stderr
    terminal = Terminal(device, "device", "revoke", me["id"], *pw)
    terminal.expect(b"is the device you are on")
    terminal.send(b"n\n")
    assert terminal.finish() == 1
    assert b"not revoked" in terminal.seen
    assert device.run("snapshots", check=False).returncode == 0
    assert others["attic-nuc"].run("snapshots", check=False).returncode == 0
    device.run("device", "revoke", me["id"], "--yes", *pw)
    assert device.run("snapshots", check=False).returncode == 13

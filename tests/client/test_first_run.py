"""The first run leaves a device that actually backs up: `keep init` asks (or
is told) what to back up and writes keep.toml; a device with nothing to back
up fails loudly everywhere the owner looks; every time in `--json` output is
RFC 3339."""

from __future__ import annotations

import datetime
import os
import tomllib
from pathlib import Path

from keep.client.admin.data import Paths, start_backup
from tests.client.conftest import Device, Terminal
from tests.client.tree_builder import describe


def make_source(tmp_path: Path, name: str = "docs") -> Path:
    src = tmp_path / name
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("first\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(5000))
    return src


def config_of(device: Device) -> dict[str, object]:
    return tomllib.loads((device.home / "none.toml").read_text())


def test_init_with_sources_writes_keep_toml_and_the_timer_backs_them_up(
    device: Device, tmp_path: Path
) -> None:
    docs, photos = make_source(tmp_path, "docs"), make_source(tmp_path, "photos")
    result = device.run(*device.init_args(), "--source", str(docs), "--source", str(photos))
    assert f"Backing up {docs}, {photos}" in result.stdout
    assert config_of(device) == {
        "server": {"url": device.server, "account": device.account},
        "backup": {"sources": [str(docs), str(photos)]},
    }
    device.run("backup")  # what the timer runs: no paths
    target = tmp_path / "restored"
    device.run("restore", "latest", "--target", str(target), "--verify")
    for src in (docs, photos):
        assert describe(target / str(src).lstrip("/")) == describe(src)


def test_init_refuses_a_missing_source_before_making_the_account(device: Device, tmp_path: Path) -> None:
    result = device.run(*device.init_args(), "--source", str(tmp_path / "nope"), check=False)
    assert result.returncode == 2
    assert "does not exist; nothing was changed" in result.stderr
    assert not (device.home / "device.json").exists()
    device.run(*device.init_args(), "--source", str(make_source(tmp_path)))  # the name is still free


def test_init_on_a_terminal_asks_what_to_back_up(device: Device, tmp_path: Path) -> None:
    src = make_source(tmp_path, "my files")
    terminal = Terminal(device, "init", "--server", device.server, "--account", device.account)
    for prompt in (b"Password", b"Repeat"):
        terminal.expect(prompt)
        terminal.send(b"correct horse battery staple\n")
    terminal.expect(b"What should this device back up?")
    terminal.send(f"'{src}'\n".encode())
    assert terminal.finish() == 0, terminal.seen
    assert b"Write the recovery kit down now" in terminal.seen
    assert config_of(device)["backup"] == {"sources": [str(src)]}
    device.run("backup")
    assert [s["paths"] for s in device.json("snapshots")] == [[str(src)]]


def test_nothing_to_back_up_is_a_failure_everywhere(device: Device, tmp_path: Path) -> None:
    result = device.run(*device.init_args())
    assert "nothing to back up yet" in result.stderr
    result = device.run("backup", check=False)  # the timer's run
    assert result.returncode == 2  # non-zero: systemd's OnFailure= fires
    assert "nothing to back up" in result.stderr
    last = device.json("stats")["last_backup"]
    assert last["result"] == "failed"
    assert "nothing to back up" in last["error"]
    assert "last backup: " in device.run("stats").stdout
    assert "FAILED (nothing to back up" in device.run("stats").stdout
    # "Back up now" on the admin page says so instead of "Backup started."
    (device.home / "last-backup.json").unlink()
    message = start_backup(Paths(device.home, device.home / "none.toml"))
    assert message.startswith("Backup not started: nothing to back up")
    assert device.json("stats")["last_backup"]["result"] == "failed"


def test_times_in_json_are_rfc3339(device: Device, tmp_path: Path) -> None:
    src = make_source(tmp_path)
    os.utime(src / "a.txt", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    device.run(*device.init_args(), "--source", str(src))
    before = datetime.datetime.now().astimezone()
    device.run("backup")
    (snapshot,) = device.json("snapshots")
    taken = datetime.datetime.fromisoformat(snapshot["time"])
    assert taken.tzinfo is not None
    assert abs((taken - before).total_seconds()) < 60
    entry = next(e for e in device.json("ls", "latest") if e["path"].endswith("/a.txt"))
    whole = datetime.datetime.fromtimestamp(1_700_000_000).astimezone()
    assert entry["mtime"] == f"{whole:%Y-%m-%dT%H:%M:%S}.123456789{whole.isoformat()[19:]}"  # to the ns
    stats = device.json("stats")
    assert datetime.datetime.fromisoformat(stats["last_backup"]["time"]).tzinfo is not None
    for d in device.json("device", "list"):
        assert datetime.datetime.fromisoformat(d["created"]).tzinfo is not None

"""The owner's last way in is never lost: every owner command takes the
recovery kit, a kit is never replaced on the server before it is safely
written, and weak passwords are refused with a reason."""

from __future__ import annotations

import json
from pathlib import Path

from support.servers import keep_server
from tests.client.conftest import Device, Terminal
from tests.client.tree_builder import describe, make_rich_tree


def restored(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


def _login(device: Device, *credential: str) -> int:
    home = device.home.parent / f"probe-{len(list(device.home.parent.glob('probe-*')))}"
    probe = Device(device.server, home, device.account, device.password_file)
    args = ("login", "--server", device.server, "--account", device.account, *credential)
    return probe.run(*args, check=False).returncode


def test_a_new_kit_never_replaces_the_old_one_before_it_is_written(device: Device, tmp_path: Path) -> None:
    device.init()
    old_kit = tmp_path / "kit.txt"
    taken = tmp_path / "taken.txt"
    taken.write_text("something the owner keeps\n")
    for output in (taken, tmp_path / "no-such-dir" / "kit.txt"):
        result = device.run(
            "key",
            "recovery-kit",
            "--password-file",
            str(device.password_file),
            "--output",
            str(output),
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "nothing was changed" in result.stderr
    assert taken.read_text() == "something the owner keeps\n"
    assert _login(device, "--recovery-kit", str(old_kit)) == 0  # the old kit still opens the account
    new_kit = tmp_path / "kit2.txt"
    device.run("key", "recovery-kit", "--recovery-kit", str(old_kit), "--output", str(new_kit))
    assert _login(device, "--recovery-kit", str(new_kit)) == 0
    assert _login(device, "--recovery-kit", str(old_kit)) == 10


def test_init_checks_the_kit_file_and_the_password_before_creating_the_account(
    device: Device, tmp_path: Path
) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    base = ("init", "--server", device.server, "--account", device.account)
    for kit in (taken, tmp_path / "missing-dir" / "kit.txt"):
        result = device.run(
            *base, "--password-file", str(device.password_file), "--recovery-kit", str(kit), check=False
        )
        assert result.returncode == 2, result.stderr
    weak = tmp_path / "weak"
    weak.write_text("a\n")
    result = device.run(
        *base, "--password-file", str(weak), "--recovery-kit", str(tmp_path / "k"), check=False
    )
    assert result.returncode == 2
    assert "too easy to guess" in result.stderr
    assert not kit.exists()
    assert _login(device, "--password-file", str(device.password_file)) == 10  # no account was made
    device.init()  # and a retry is not "already set up"
    other = Device(device.server, tmp_path / "other", device.account + "-weak", weak)
    other.run(
        "init",
        "--server",
        device.server,
        "--account",
        other.account,
        "--password-file",
        str(weak),
        "--recovery-kit",
        str(tmp_path / "weak-kit"),
        "--weak-password-ok",
    )


def test_lost_device_and_forgotten_password(device: Device, tmp_path: Path) -> None:
    """Only the printed kit survives: on a new machine it logs in, sets a new
    password, revokes the lost device, and the restore equals the source."""
    src = tmp_path / "src"
    make_rich_tree(src)
    old_id = device.init()["device_id"]
    device.run("backup", str(src))
    kit = tmp_path / "kit.txt"
    new = Device(device.server, tmp_path / "new-machine", device.account, tmp_path / "new-password")
    new.password_file.write_text("a fresh passphrase after the fire\n")
    new.run("login", "--server", device.server, "--account", device.account, "--recovery-kit", str(kit))
    new.run("key", "passwd", "--recovery-kit", str(kit), "--new-password-file", str(new.password_file))
    new.run("device", "revoke", old_id, "--recovery-kit", str(kit))
    assert device.run("backup", str(src), check=False).returncode == 13  # the lost device is out
    new.run("key", "verify", "--password-file", str(new.password_file))
    assert _login(device, "--password-file", str(device.password_file)) == 10  # the old password is gone
    target = tmp_path / "restore"
    new.run("restore", "latest", "--target", str(target), "--verify")
    assert describe(restored(target, src)) == describe(src)


def test_owner_commands_without_a_credential_say_how_to_give_one(device: Device, tmp_path: Path) -> None:
    device.init()
    device.run("backup", str(make_tree(tmp_path)))
    for command in (("forget", "--keep-last", "1"), ("prune",)):
        result = device.run(*command, check=False)
        assert result.returncode == 2, result.stderr
        assert "--password-file" in result.stderr
        assert "--recovery-kit" in result.stderr


def make_tree(tmp_path: Path) -> Path:
    src = tmp_path / "small-src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    return src


def test_ctrl_d_at_the_password_prompt_is_an_interruption(device: Device) -> None:
    """On a real terminal (a pseudo-terminal here): EOF at the prompt says
    "interrupted" and exits 130, not "internal error"."""
    device.init()
    terminal = Terminal(device, "key", "verify")
    terminal.expect(b"Password")
    terminal.send(b"\x04")
    assert terminal.finish() == 130
    assert b"interrupted" in terminal.seen
    assert b"internal error" not in terminal.seen


def test_json_after_the_command_and_version(device: Device) -> None:
    device.init()
    assert device.json("snapshots") == json.loads(device.run("snapshots", "--json").stdout)
    assert device.run("--version").stdout.startswith("keep, version ")


def test_keep_server_keeps_its_files_private(tmp_path: Path) -> None:
    with keep_server(tmp_path / "data") as (url, _):
        device = Device(url, tmp_path / "h", "private", tmp_path / "pw")
        device.password_file.write_text("correct horse battery staple\n")
        device.init()
        device.run("backup", str(make_tree(tmp_path)))
    for path in [tmp_path / "data", *(tmp_path / "data").rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path

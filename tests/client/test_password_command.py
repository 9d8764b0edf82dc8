"""What a timer or a script sets instead of flags: KEEP_PASSWORD_COMMAND
(like restic's --password-command), KEEP_SERVER and KEEP_ACCOUNT."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.client.conftest import Device


def test_the_password_comes_from_a_command(device: Device, tmp_path: Path) -> None:
    device.init()
    device.run("backup", str(device.password_file.parent))
    device.env["KEEP_PASSWORD_COMMAND"] = f"cat {shlex.quote(str(device.password_file))}"
    assert device.json("key", "verify")["ok"] is True
    forgot = device.run("forget", "--keep-last", "1")  # an owner command, no --password-file
    assert "Traceback" not in forgot.stderr
    device.env["KEEP_PASSWORD_FILE"] = str(tmp_path / "missing")
    result = device.run("key", "verify", check=False)  # a password file comes first
    assert result.returncode == 2
    assert "cannot read password file" in result.stderr


def test_a_failing_or_wrong_password_command_is_one_line(device: Device, tmp_path: Path) -> None:
    device.init()
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password-at-all\n")
    cases = {
        "false": ("KEEP_PASSWORD_COMMAND (false) failed with exit status 1", 2),
        "/nonexistent/pass": ("cannot run KEEP_PASSWORD_COMMAND (/nonexistent/pass)", 2),
        "true": ("the password is empty", 2),
        "'unclosed": ("KEEP_PASSWORD_COMMAND cannot be split into words", 2),
        f"cat {wrong}": ("wrong password", None),
    }
    for command, (said, code) in cases.items():
        device.env["KEEP_PASSWORD_COMMAND"] = command
        result = device.run("key", "verify", check=False)
        assert result.returncode != 0, command
        if code is not None:
            assert result.returncode == code, (command, result.stderr)
        assert said.lower() in result.stderr.lower(), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "not-the-password-at-all" not in result.stdout + result.stderr


def test_login_takes_the_server_and_account_from_the_environment(device: Device, tmp_path: Path) -> None:
    device.init()
    other = Device(device.server, tmp_path / "second", device.account, device.password_file)
    other.env.update({"KEEP_SERVER": device.server, "KEEP_ACCOUNT": device.account})
    other.run("login", "--password-file", str(device.password_file))
    assert other.json("snapshots") == device.json("snapshots")

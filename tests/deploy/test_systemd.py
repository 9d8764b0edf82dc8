"""Every unit file passes `systemd-analyze verify` with no output at all (it
exits 0 even on unknown keys, so any output fails the test): the servers'
as shipped in deploy/systemd/, the device's as the package renders its
templates and as `keep schedule install` writes them.

verify runs against a throw-away root holding the host's standard units and
the executables the units name (copied there: keep is not installed
system-wide in CI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keep.client.device import schedule

ROOT = Path(__file__).resolve().parent.parent.parent
UNITS = ROOT / "deploy" / "systemd"  # the operator's: keep-server and keep-checkin
VENV_BIN = Path(sys.executable).parent


def verify_root(tmp_path: Path, executables: dict[str, Path]) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing (scripts/test-services.sh installs systemd)")
    root = tmp_path / "root"
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    for target, source in executables.items():
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    return root


def verify(root: Path, names: list[str]) -> str:
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *names], capture_output=True, text=True, check=False
    )
    return (result.stdout + result.stderr).strip()


def unit_names(directory: Path) -> list[str]:
    names = sorted(p.name for p in directory.iterdir() if p.suffix in (".service", ".timer", ".path"))
    return [n.replace("@.", "@test.") for n in names]


def test_shipped_units_verify_cleanly(tmp_path: Path) -> None:
    root = verify_root(
        tmp_path,
        {
            "/usr/local/bin/keep": VENV_BIN / "keep",
            "/usr/local/bin/keep-server": VENV_BIN / "keep-server",
            "/usr/local/bin/keep-checkin": VENV_BIN / "keep-checkin",
            "/usr/bin/systemd-cat": Path("/usr/bin/systemd-cat"),
            "/bin/echo": Path("/bin/echo"),
        },
    )
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    for path in UNITS.iterdir():
        if path.suffix in (".service", ".timer"):
            shutil.copy2(path, unit_dir / path.name)
    for name in schedule.UNITS:
        (unit_dir / name).write_text(schedule.render(name, keep="/usr/local/bin/keep", schedule="daily"))
    names = unit_names(unit_dir)
    assert len(names) == 12  # 8 services (one a template), 3 timers and a path unit
    assert verify(root, names) == ""
    # The check can fail: an unknown key is reported.
    timer = schedule.render("keep-backup.timer", keep="/usr/local/bin/keep", schedule="daily")
    (unit_dir / "keep-backup.timer").write_text(timer + "Bogus=1\n")
    assert "Unknown key" in verify(root, ["keep-backup.timer"])


def test_device_unit_templates_fill_completely_or_not_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each template names only @keep@ and @schedule@, and every one is
    filled; an unknown placeholder or a value that would add a line to a
    unit (`daily\nExecStartPre=…`) is refused before anything is written."""
    for name in schedule.UNITS:
        text = schedule.render(name, keep="/opt/keep/bin/keep", schedule="*-*-* 03:30:00")
        assert schedule.PLACEHOLDER.search(text) is None, name
        assert "/usr/local/bin" not in text  # nothing hard-wired that install would have to replace
    assert "ExecStart=/opt/keep/bin/keep backup\n" in schedule.render(
        "keep-backup.service", keep="/opt/keep/bin/keep", schedule="daily"
    )
    with pytest.raises(schedule.UnitTemplateError, match="one non-empty line"):
        schedule.render("keep-backup.timer", keep="/usr/bin/keep", schedule="daily\nExecStartPre=/bin/sh")
    # keep-schedule.path watches the keep.toml the admin page writes and the services read.
    watched = re.search(r"^PathChanged=(\S+)$", schedule.template("keep-schedule.path"), re.M)
    assert watched is not None
    for name in ("keep-admin.service", "keep-backup.service", "keep-schedule.service"):
        assert f"KEEP_CONFIG={watched.group(1)}" in schedule.template(name), name
    monkeypatch.setattr(schedule, "template", lambda name: "[Service]\nUser=@user@\n")
    with pytest.raises(schedule.UnitTemplateError, match="unknown placeholder @user@"):
        schedule.render("keep-admin.service", keep="/usr/bin/keep", schedule="daily")


def test_schedule_install_writes_units_that_verify(tmp_path: Path) -> None:
    config = tmp_path / "keep.toml"
    config.write_text('[backup]\nsources = ["/srv"]\nschedule = "*-*-* 03:30:00"\n')
    env = {**os.environ, "KEEP_HOME": str(tmp_path / "home"), "KEEP_CONFIG": str(config)}
    root = verify_root(
        tmp_path,
        {
            str(VENV_BIN / "keep"): VENV_BIN / "keep",
            "/usr/bin/systemd-cat": Path("/usr/bin/systemd-cat"),
            "/bin/echo": Path("/bin/echo"),
        },
    )

    def schedule(*args: str) -> Any:
        out = subprocess.run(
            [str(VENV_BIN / "keep"), "--json", "schedule", *args, "--root", str(root)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)

    assert schedule("install")["schedule"] == "*-*-* 03:30:00"
    unit_dir = root / "etc" / "systemd" / "system"
    timer = (unit_dir / "keep-backup.timer").read_text()
    assert "OnCalendar=*-*-* 03:30:00" in timer
    assert f"ExecStart={VENV_BIN / 'keep'} backup" in (unit_dir / "keep-backup.service").read_text()
    assert (root / "etc" / "sysusers.d" / "keep.conf").exists()
    assert verify(root, [n for n in unit_names(unit_dir) if n.startswith("keep")]) == ""
    assert all(schedule("status")["installed"].values())
    schedule("remove")
    assert not list(unit_dir.glob("keep*"))


def test_timer_follows_keep_toml_under_a_running_systemd(tmp_path: Path) -> None:
    """End to end, under systemd itself: `keep schedule install` enables the
    units in a running manager, the admin page's way of changing the
    schedule (a checked write renamed over keep.toml) starts
    keep-schedule.service through keep-schedule.path, and the live backup
    timer then runs on the new schedule. user_manager.sh says how this runs
    without touching the machine (a private mount namespace, /etc as an
    overlay, systemd's own manager binary)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or not Path("/lib/systemd/systemd").exists():
        pytest.skip("needs root, unshare and systemd (scripts/test-services.sh installs systemd)")
    host_units = sorted(os.listdir("/etc/systemd/system"))
    out = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            str(Path(__file__).with_name("user_manager.sh")),
            str(tmp_path),
            str(VENV_BIN / "keep"),
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    assert "OnCalendar=*-*-* 03:30:00" in lines["installed"]
    assert lines["path unit"] == "active"
    assert "OnCalendar=*-*-* 05:10:00" in lines["after change"], out.stdout
    assert lines["schedule service"] == "success"
    assert float(lines["seconds"]) < 15
    print(out.stdout)  # the sandboxing relaxed for this machine, and how long the change took
    # Everything was written to the overlay, nothing to the machine's own /etc.
    assert sorted(os.listdir("/etc/systemd/system")) == host_units
    assert (tmp_path / "etc-upper" / "systemd" / "system" / "keep-backup.timer").exists()

"""`keep schedule install | remove | status`: the device's systemd units.

The units are templates in the package (`keep.client.device.schedule`);
install writes them with this installation's `keep` and the configured
schedule (`[backup] schedule`, systemd OnCalendar syntax),
creates the `keep` user through systemd-sysusers, reloads systemd and enables
the timers — or, where systemd is not running or `--root` names another
tree, says what it would run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import UsageError
from keep.client.device.schedule import ENABLED, SYSUSERS, TIMERS, UNITS, render, template

DEFAULT_BIN = "/usr/local/bin/keep"


def _keep_executable() -> str:
    found = shutil.which("keep") or str(Path(sys.argv[0]).resolve())
    return str(Path(found).resolve()) if Path(found).exists() else DEFAULT_BIN


def _systemd_running(root: Path) -> bool:
    return root == Path("/") and Path("/run/systemd/system").is_dir()


@cli.group()
def schedule() -> None:
    """Daily backups and check-ins from systemd timers."""


@schedule.command()
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default="/", help="Install into this tree."
)
@click.pass_obj
def install(ctx: CliContext, root: Path) -> None:
    """Write and enable the device units (needs root for /)."""
    unit_dir = root / "etc" / "systemd" / "system"
    sysusers = root / "etc" / "sysusers.d" / "keep.conf"
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        sysusers.parent.mkdir(parents=True, exist_ok=True)
        keep_bin = _keep_executable()
        units = {name: render(name, keep=keep_bin, schedule=ctx.config.backup.schedule) for name in UNITS}
        for name, text in units.items():
            (unit_dir / name).write_text(text)
        sysusers.write_text(template(SYSUSERS))
    except PermissionError as exc:
        raise UsageError(f"cannot write {exc.filename}: run as root (or give --root)") from None
    steps = [
        ["systemd-sysusers", str(sysusers)],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", *ENABLED],
    ]
    ran = _run_or_describe(root, steps)
    ctx.emit(
        f"installed {len(UNITS)} units in {unit_dir} "
        f"(backups: {ctx.config.backup.schedule}, ExecStart {keep_bin})\n{ran}",
        {"unit_dir": str(unit_dir), "units": list(UNITS), "schedule": ctx.config.backup.schedule},
    )


@schedule.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default="/")
@click.pass_obj
def remove(ctx: CliContext, root: Path) -> None:
    """Disable and remove the device units (state and keys stay)."""
    unit_dir = root / "etc" / "systemd" / "system"
    steps = [["systemctl", "disable", "--now", *ENABLED, "keep-admin.service"]]
    ran = _run_or_describe(root, steps)
    removed = []
    for name in UNITS:
        path = unit_dir / name
        if path.exists():
            path.unlink()
            removed.append(name)
    (root / "etc" / "sysusers.d" / "keep.conf").unlink(missing_ok=True)
    if _systemd_running(root):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    ctx.emit(f"removed {len(removed)} units from {unit_dir}\n{ran}", {"removed": removed})


@schedule.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default="/")
@click.pass_obj
def status(ctx: CliContext, root: Path) -> None:
    """Which device units are installed, and the timers' next runs."""
    unit_dir = root / "etc" / "systemd" / "system"
    installed = {name: (unit_dir / name).exists() for name in UNITS}
    timers = ""
    if _systemd_running(root):
        timers = subprocess.run(
            ["systemctl", "list-timers", "--all", *TIMERS], capture_output=True, text=True, check=False
        ).stdout
    lines = [f"{name}: {'installed' if ok else 'missing'}" for name, ok in installed.items()]
    ctx.emit("\n".join(lines) + (f"\n{timers}" if timers else ""), {"installed": installed, "timers": timers})


def _run_or_describe(root: Path, steps: list[list[str]]) -> str:
    if not _systemd_running(root):
        return "systemd is not running here (or --root is not /); then run:\n" + "\n".join(
            "  " + " ".join(step) for step in steps
        )
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise UsageError(f"{' '.join(step)} failed: {result.stderr.strip()}")
    return "enabled: " + ", ".join(TIMERS)

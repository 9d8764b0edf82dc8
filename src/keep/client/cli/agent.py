"""`keep agent checkin` and `keep phonehome status | enable | disable`."""

from __future__ import annotations

import time
from typing import Any

import click

from keep.client.checkin import agent as phonehome
from keep.client.cli.main import CliContext, cli
from keep.client.device.config import load_config
from keep.client.text import rfc3339

SWITCHES = phonehome.SWITCHES


def _settings(ctx: CliContext) -> phonehome.Settings:
    return phonehome.Settings.from_config(ctx.config.phonehome, ctx.config.ca_file)


@cli.group()
def agent() -> None:
    """The device agent (run by a timer)."""


@agent.command("checkin")
@click.option("--now", "force", is_flag=True, help="Check for updates now, even if checked today.")
@click.pass_obj
def checkin(ctx: CliContext, force: bool) -> None:
    """One check-in: DNS pointer and update check, each only if switched on
    (updates once a day unless --now)."""
    settings = _settings(ctx)
    state = phonehome.load_state(ctx.home)
    now = time.time()
    error: phonehome.UpdateVerificationError | None = None
    ddns = phonehome.ddns_checkin(settings, state, now)
    try:
        updates = phonehome.updates_checkin(settings, state, ctx.home, now, force)
    except phonehome.UpdateVerificationError as exc:
        error, updates = exc, f"REFUSED: {exc}"
    phonehome.save_state(ctx.home, state)
    ctx.emit(
        f"{SWITCHES['ddns']}: {ddns}\n{SWITCHES['updates']}: {updates}", {"ddns": ddns, "updates": updates}
    )
    if error is not None:
        raise error


@cli.group("phonehome")
def phonehome_group() -> None:
    """What this device sends to the check-in service, and the switches."""


@phonehome_group.command("status")
@click.pass_obj
def status(ctx: CliContext) -> None:
    """Each switch, its last attempt and result, and exactly what it sends."""
    settings = _settings(ctx)
    state = phonehome.load_state(ctx.home)
    sent = phonehome.what_is_sent(settings)
    rows: dict[str, Any] = {}
    lines = []
    for key, label in SWITCHES.items():
        s = state.get(key, {})
        on = getattr(settings, key)
        last = s.get("last_attempt")
        rows[key] = {
            "enabled": on,
            "last_attempt": rfc3339(last),
            "result": s.get("result"),
            "next_run": "with the next agent timer run" if on else "never (off)",
            "sends": sent[key] if on else "nothing (off)",
        }
        lines += [
            f"{label}: {'ON' if on else 'OFF'}",
            f"  last attempt: {time.strftime('%Y-%m-%d %H:%M', time.localtime(last)) if last else 'never'}"
            f" — {s.get('result') or 'no result yet'}",
            f"  sends: {rows[key]['sends']}",
        ]
    lines.append("Nothing else is sent by this device, except backups to its own storage server.")
    ctx.emit("\n".join(lines), rows)


def _set(ctx: CliContext, which: str, value: bool) -> list[str]:
    keys = list(SWITCHES) if which == "all" else [which]
    phonehome.set_switches(ctx.config_file, keys, value)
    ctx._config = load_config(ctx.config_file)
    return keys


@phonehome_group.command("enable")
@click.argument("which", type=click.Choice(["ddns", "updates", "all"]), default="all")
@click.pass_obj
def enable(ctx: CliContext, which: str) -> None:
    """Switch a check-in on (default: both)."""
    keys = _set(ctx, which, True)
    state = phonehome.load_state(ctx.home)
    if "ddns" in keys:
        state.setdefault("ddns", {}).pop("stopped", None)  # a fresh start after badauth etc.
    phonehome.save_state(ctx.home, state)
    ctx.emit("\n".join(f"{SWITCHES[k]}: ON" for k in keys), dict.fromkeys(keys, True))


@phonehome_group.command("disable")
@click.argument("which", type=click.Choice(["ddns", "updates", "all"]), default="all")
@click.pass_obj
def disable(ctx: CliContext, which: str) -> None:
    """Switch a check-in off; DNS pointer: the service is asked once to delete the record."""
    keys = _set(ctx, which, False)
    lines = [f"{SWITCHES[k]}: OFF" for k in keys]
    if "ddns" in keys:
        state = phonehome.load_state(ctx.home)
        if state.get("ddns", {}).get("token"):
            lines.append(f"DNS record: {phonehome.release_name(_settings(ctx), state)}")
        phonehome.save_state(ctx.home, state)
    ctx.emit("\n".join(lines), dict.fromkeys(keys, False))

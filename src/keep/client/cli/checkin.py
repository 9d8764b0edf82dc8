"""`keep checkin run | status | enable | disable`: the device's check-in with
keep-checkin (the DNS pointer and the update check) and its switches.

Its names before 0.2, `keep agent checkin` and `keep phonehome …`, still
work (hidden) so that timers installed by an older `keep schedule` keep
running."""

from __future__ import annotations

import time
from typing import Any

import click

from keep.client.checkin import agent, ddns, updates
from keep.client.cli.main import CliContext, cli
from keep.client.device.config import load_config
from keep.client.text import rfc3339

SWITCHES = agent.SWITCHES
WHICH = click.Choice(["ddns", "updates", "all"])


def _settings(ctx: CliContext) -> agent.Settings:
    return agent.Settings.from_config(ctx.config.checkin, ctx.ca_file or ctx.config.ca_file)


@cli.group("checkin")
def checkin_group() -> None:
    """The check-in with keep-checkin: DNS pointer and update check."""


@checkin_group.command("run")
@click.option("--now", "force", is_flag=True, help="Check for updates now, even if checked today.")
@click.pass_obj
def run(ctx: CliContext, force: bool) -> None:
    """One check-in (run by a timer): DNS pointer and update check, each only
    if switched on (updates once a day unless --now)."""
    settings = _settings(ctx)
    state = agent.load_state(ctx.home)
    now = time.time()
    error: updates.UpdateVerificationError | None = None
    pointer = ddns.check_in(settings, state, now)
    try:
        update = updates.check_in(settings, state, ctx.home, now, force)
    except updates.UpdateVerificationError as exc:
        error, update = exc, f"REFUSED: {exc}"
    agent.save_state(ctx.home, state)
    ctx.emit(
        f"{SWITCHES['ddns']}: {pointer}\n{SWITCHES['updates']}: {update}",
        {"ddns": pointer, "updates": update},
    )
    if error is not None:
        raise error


@checkin_group.command("status")
@click.pass_obj
def status(ctx: CliContext) -> None:
    """Each switch, its last attempt and result, and exactly what it sends."""
    settings = _settings(ctx)
    state = agent.load_state(ctx.home)
    sent = agent.what_is_sent(settings)
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
            "next_run": "with the next check-in timer run" if on else "never (off)",
            "sends": sent[key] if on else "nothing (off)",
            "last_request": s.get("last_request"),
        }
        lines += [
            f"{label}: {'ON' if on else 'OFF'}",
            f"  last attempt: {time.strftime('%Y-%m-%d %H:%M', time.localtime(last)) if last else 'never'}"
            f" — {s.get('result') or 'no result yet'}",
            f"  sends: {rows[key]['sends']}",
            "  last request sent: " + ("\n    ".join(["", *agent.request_lines(s)]) or "none yet"),
        ]
    lines.append("Nothing else is sent by this device, except backups to its own storage server.")
    ctx.emit("\n".join(lines), rows)


def _set(ctx: CliContext, which: str, value: bool) -> list[str]:
    keys = list(SWITCHES) if which == "all" else [which]
    agent.set_switches(ctx.config_file, keys, value)
    ctx._config = load_config(ctx.config_file)
    return keys


@checkin_group.command("enable")
@click.argument("which", type=WHICH, default="all")
@click.pass_obj
def enable(ctx: CliContext, which: str) -> None:
    """Switch a check-in on (default: both)."""
    keys = _set(ctx, which, True)
    state = agent.load_state(ctx.home)
    if "ddns" in keys:
        state.setdefault("ddns", {}).pop("stopped", None)  # a fresh start after badauth etc.
    agent.save_state(ctx.home, state)
    ctx.emit("\n".join(f"{SWITCHES[k]}: ON" for k in keys), dict.fromkeys(keys, True))


@checkin_group.command("disable")
@click.argument("which", type=WHICH, default="all")
@click.pass_obj
def disable(ctx: CliContext, which: str) -> None:
    """Switch a check-in off; DNS pointer: the service is asked once to delete the record."""
    keys = _set(ctx, which, False)
    lines = [f"{SWITCHES[k]}: OFF" for k in keys]
    if "ddns" in keys:
        state = agent.load_state(ctx.home)
        if state.get("ddns", {}).get("token"):
            lines.append(f"DNS record: {ddns.release_name(_settings(ctx), state)}")
        agent.save_state(ctx.home, state)
    ctx.emit("\n".join(lines), dict.fromkeys(keys, False))


@cli.group("phonehome", hidden=True)
def old_checkin_group() -> None:
    """The name of `keep checkin` before 0.2."""


@cli.group("agent", hidden=True)
def old_agent_group() -> None:
    """`keep agent checkin`: the name of `keep checkin run` before 0.2."""


for _name, _command in checkin_group.commands.items():
    old_checkin_group.add_command(_command, _name)
old_agent_group.add_command(run, "checkin")

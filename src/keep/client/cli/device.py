"""`keep device list | revoke`: the devices enrolled in the account."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import UsageError, connect, owner_login_for, owner_options
from keep.client.device.state import DeviceState
from keep.client.text import local_time, rfc3339
from keep.protocol.api import Route, route_path
from keep.protocol.device_name import open_device_name
from keep.protocol.errors import KeepError, NotFoundError


def _when(ts: int | None) -> str:
    return "-" if ts is None else local_time(ts * 10**9)[:-3]


def _times(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, **{k: rfc3339(d.get(k)) for k in ("created", "last_seen", "revoked")}}


@cli.group()
def device() -> None:
    """Devices enrolled in the account."""


@device.command("list")
@click.pass_obj
def list_devices(ctx: CliContext) -> None:
    """Name, enrollment, last seen and revocation of every device."""
    state = DeviceState.load(ctx.home)
    with connect(ctx, state.server_url, state.device_token, state.ca_file) as remote:
        reply = remote.request_json("GET", Route.DEVICES)
    rows = [
        {
            **d,
            "name": open_device_name(state.keys.data, str(d.get("name", ""))),
            "this_device": d.get("id") == state.device_id,
        }
        for d in reply.get("devices", [])
    ]
    human = "\n".join(
        f"{d['id']}  {str(d['name'])[:24]:<24} enrolled {_when(d['created'])}"
        + f"  last seen {_when(d['last_seen'])}"
        + (f"  REVOKED {_when(d['revoked'])}" if d.get("revoked") else "")
        + ("  (this device)" if d["this_device"] else "")
        for d in rows
    )
    ctx.emit(human, [_times(d) for d in rows])


def _find(rows: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The one device `ref` names: its full id, its name, or a unique id prefix."""
    exact = [d for d in rows if ref in (d.get("id"), d.get("name"))]
    matches = exact or [d for d in rows if str(d.get("id", "")).startswith(ref)]
    if not matches:
        raise NotFoundError(f"no device has the id or name {ref!r} (see `keep device list`)")
    if len(matches) > 1:
        names = ", ".join(f"{d['id'][:12]} ({d['name']})" for d in matches)
        raise UsageError(f"{ref!r} matches {len(matches)} devices: {names}; give more of the id")
    return matches[0]


@device.command()
@click.argument("device_ref", metavar="DEVICE")
@click.option("--yes", is_flag=True, help="Revoke this very device without asking.")
@owner_options
@click.pass_obj
def revoke(
    ctx: CliContext, device_ref: str, yes: bool, password_file: Path | None, recovery_kit: Path | None
) -> None:
    """Revoke DEVICE — its id, a unique prefix of it, or its name (owner
    password or recovery kit required); its next request fails."""
    state = DeviceState.load(ctx.home)
    with connect(ctx, state.server_url, state.device_token, state.ca_file) as remote:
        rows = [
            {**d, "name": open_device_name(state.keys.data, str(d.get("name", "")))}
            for d in remote.request_json("GET", Route.DEVICES).get("devices", [])
        ]
        target = _find(rows, device_ref)
        device_id = str(target["id"])
        if target.get("revoked"):
            ctx.emit(f"Device {device_id} ({target['name']}) was already revoked.", {"revoked": device_id})
            return
        if device_id == state.device_id and not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"{device_id[:12]} is this device: revoking it stops its backups; add --yes to mean it"
                )
            if not click.confirm(
                f"{device_id[:12]} ({target['name']}) is the device you are on: once revoked it can "
                "neither back up nor restore until `keep login` again. Revoke it?",
                err=True,
            ):
                raise KeepError("not revoked (you answered no)")
        session, _ = owner_login_for(state, remote, password_file, recovery_kit)
        remote.request_json("DELETE", route_path(Route.DEVICE, device_id=device_id), token=session)
    ctx.emit(f"Device {device_id} ({target['name']}) revoked.", {"revoked": device_id})

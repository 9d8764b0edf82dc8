"""`keep device list | revoke`: the devices enrolled in the account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import connect, owner_login_for, owner_options
from keep.client.cli.text import local_time, rfc3339
from keep.client.device_state import DeviceState
from keep.protocol.device_name import open_device_name


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
        reply = remote.request_json("GET", "/v1/devices")
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


@device.command()
@click.argument("device_id")
@owner_options
@click.pass_obj
def revoke(ctx: CliContext, device_id: str, password_file: Path | None, recovery_kit: Path | None) -> None:
    """Revoke DEVICE_ID (owner password or recovery kit required); its next request fails."""
    state = DeviceState.load(ctx.home)
    with connect(ctx, state.server_url, state.device_token, state.ca_file) as remote:
        session, _ = owner_login_for(state, remote, password_file, recovery_kit)
        remote.request_json("DELETE", f"/v1/devices/{device_id}", token=session)
    ctx.emit(f"Device {device_id} revoked.", {"revoked": device_id})

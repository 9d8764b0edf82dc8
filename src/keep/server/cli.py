"""`keep-server`: run the storage server.

keep-server serve --data-dir DIR [--listen 127.0.0.1:8420] [--registration open|closed]
                  [--tls-cert F --tls-key F] [--metadata URL] [--objects URL]
keep-server scrub --data-dir DIR [--metadata URL] [--objects URL] [--json]
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import sys
from pathlib import Path

import click

from keep.protocol.api import ACCOUNT_NAME_RE
from keep.protocol.errors import ExitCode
from keep.server.app import SECRET_SIZE, create_app
from keep.server.backends import BackendURLError, check_urls, describe, metadata_store, object_store
from keep.server.http_accounts import invitation
from keep.server.scrub import AccountScrub, scrub
from keep.server.settings import Settings
from keep.server.shared.listening import listening_socket
from keep.server.shared.starting import host_port
from keep.server.shared.starting import serve as serve_until_stopped
from keep.server.shared.systemd import check_data_dir, notify_when_listening

log = logging.getLogger("keep.server")


@click.group()
def main() -> None:
    """Keep's zero-knowledge storage server."""


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--listen", default="127.0.0.1:8420", show_default=True)
@click.option(
    "--registration",
    type=click.Choice(["open", "invite", "closed"]),
    default="open",
    show_default=True,
    help="Who may create accounts: anyone, holders of an invitation (keep-server invite NAME), nobody.",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--metadata", "metadata_url", help="sqlite:///PATH (default: DATA_DIR/keep.db)")
@click.option("--objects", "objects_url", help="file:///PATH (default: DATA_DIR/objects)")
@click.option("--quota", type=int, help="default quota per account, in bytes")
@click.option("--log-client-addresses", is_flag=True, help="write an access log with client IPs")
def serve(
    data_dir: Path,
    listen: str,
    registration: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    metadata_url: str | None,
    objects_url: str | None,
    quota: int | None,
    log_client_addresses: bool,
) -> None:
    """Serve the v1 API."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host, port = host_port(listen)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    problem = check_data_dir(data_dir)
    if problem:
        raise click.UsageError(problem)
    settings = Settings(
        data_dir=data_dir.resolve(),
        host=host,
        port=port,
        registration=registration,
        metadata_url=metadata_url,
        objects_url=objects_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        default_quota=quota,
        log_client_addresses=log_client_addresses,
    )
    try:
        check_urls(settings.resolved_metadata_url, settings.resolved_objects_url)
    except BackendURLError as exc:
        raise click.UsageError(str(exc)) from None
    ssl_context = None
    if tls_cert and tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(tls_cert, tls_key)
    scheme = "https" if ssl_context else "http"
    sock = listening_socket("keep-server", host, port)
    log.info(
        "keep-server listening on %s://%s:%d, metadata %s, objects %s, registration %s",
        scheme,
        host,
        port,
        describe(settings.resolved_metadata_url),
        describe(settings.resolved_objects_url),
        registration,
    )
    app = create_app(settings)
    notify_when_listening(app, host, port)
    serve_until_stopped(
        app, sock, "keep.server", log_client_addresses, ssl_context, cancel_on_disconnect=True
    )


@main.command("invite")
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True)
@click.option("--metadata", "metadata_url", help="sqlite:///PATH (default: DATA_DIR/keep.db)")
def invite_command(name: str, data_dir: Path, metadata_url: str | None) -> None:
    """Print the invitation that lets account NAME register on a server run
    with --registration invite (`keep init --invite CODE`). It opens that one
    name only."""
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise click.UsageError("account names are 1-64 characters: a-z, 0-9, '.', '_', '-'")
    settings = Settings(data_dir=data_dir.resolve(), metadata_url=metadata_url)
    click.echo(invitation(asyncio.run(_secret(settings)), name))


async def _secret(settings: Settings) -> bytes:
    metadata = metadata_store(settings.resolved_metadata_url)
    await metadata.open()
    try:
        return await metadata.server_secret(os.urandom(SECRET_SIZE))
    finally:
        await metadata.close()


@main.command("scrub")
@click.option("--data-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True)
@click.option("--metadata", "metadata_url", help="sqlite:///PATH (default: DATA_DIR/keep.db)")
@click.option("--objects", "objects_url", help="file:///PATH (default: DATA_DIR/objects)")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def scrub_command(data_dir: Path, metadata_url: str | None, objects_url: str | None, as_json: bool) -> None:
    """Re-hash every stored object and report damaged or missing ones per
    account (no keys needed). Exit 15 if anything is damaged or missing."""
    settings = Settings(data_dir=data_dir.resolve(), metadata_url=metadata_url, objects_url=objects_url)
    try:
        check_urls(settings.resolved_metadata_url, settings.resolved_objects_url)
    except BackendURLError as exc:
        raise click.UsageError(str(exc)) from None
    report = asyncio.run(_scrub(settings))
    if as_json:
        click.echo(json.dumps([vars(r) | {"healthy": r.healthy} for r in report], indent=1))
    else:
        for r in report:
            click.echo(
                f"{r.account}: {r.objects} objects, {r.bytes} bytes checked"
                + ("" if r.healthy else " — DAMAGED")
            )
            for kind, object_id, what in r.damaged:
                click.echo(f"  damaged {kind} {object_id}: {what}")
            for kind, object_id in r.missing:
                click.echo(f"  missing {kind} {object_id}: recorded, but the store has no body")
            for kind, object_id in r.unrecorded:
                click.echo(f"  note: {kind} {object_id} is stored but not recorded (left by a crash)")
    if not all(r.healthy for r in report):
        sys.exit(int(ExitCode.INTEGRITY))


async def _scrub(settings: Settings) -> list[AccountScrub]:
    metadata = metadata_store(settings.resolved_metadata_url)
    objects = object_store(settings.resolved_objects_url)
    await metadata.open()
    await objects.open()
    try:
        return await scrub(metadata, objects)
    finally:
        await objects.close()
        await metadata.close()


if __name__ == "__main__":
    sys.exit(main())

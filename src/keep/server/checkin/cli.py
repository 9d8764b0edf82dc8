"""`keep-checkin`: DNS pointer and update metadata service.

keep-checkin serve --data-dir DIR [--listen 127.0.0.1:8421] [--dns-listen 127.0.0.1:5353]
                   [--zone dyn.example.test] [--dns-update HOST:PORT --tsig-key FILE]
                   [--updates DIR] [--min-update-interval 60] [--log-client-addresses]
keep-checkin release init --repo DIR --keys DIR
keep-checkin release publish --repo DIR --keys DIR --version V --artifact F [--artifact F ...]
keep-checkin release refresh --repo DIR --keys DIR        (daily: keep every role valid)
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click
from aiohttp import web

from keep.server.checkin import updates
from keep.server.checkin.app import CHECKIN, CheckinSettings, create_app
from keep.server.checkin.dns import Pusher, TsigKey, start_responder
from keep.server.shared.listening import listening_socket
from keep.server.shared.starting import host_port
from keep.server.shared.starting import serve as serve_until_stopped
from keep.server.shared.systemd import check_data_dir, notify_when_listening

log = logging.getLogger("keep.checkin")


@click.group()
def main() -> None:
    """Keep's check-in service: DNS pointers and signed update metadata."""


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--listen", default="127.0.0.1:8421", show_default=True)
@click.option(
    "--dns-listen", default="127.0.0.1:5353", show_default=True, help="Embedded DNS (UDP+TCP); 'off'."
)
@click.option("--zone", default="dyn.example.test", show_default=True)
@click.option("--dns-update", help="HOST:PORT of an authoritative server to send RFC 2136 updates to.")
@click.option("--tsig-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--updates", "updates_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--min-update-interval", default=60, show_default=True, type=click.IntRange(0))
@click.option(
    "--registry", "registry_url", help="sqlite:///PATH (default DATA_DIR/checkin.db) or postgresql://…"
)
@click.option("--ns", help="The zone's name server (default ns1.ZONE, answered by this service).")
@click.option(
    "--ns-address",
    "ns_addresses",
    multiple=True,
    help="An address of ns1.ZONE (repeatable, IPv4 and IPv6): served as its A/AAAA and as glue.",
)
@click.option(
    "--allow-private-addresses",
    is_flag=True,
    help="Also publish private, loopback and documentation addresses (a LAN-only zone).",
)
@click.option("--log-client-addresses", is_flag=True, help="Write an access log with client IPs.")
def serve(
    data_dir: Path,
    listen: str,
    dns_listen: str,
    zone: str,
    dns_update: str | None,
    tsig_key: Path | None,
    updates_dir: Path | None,
    min_update_interval: int,
    registry_url: str | None,
    ns: str | None,
    ns_addresses: tuple[str, ...],
    allow_private_addresses: bool,
    log_client_addresses: bool,
) -> None:
    """Serve the registry API, dyndns2, DNS and the update repository."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if (dns_update is None) != (tsig_key is None):
        raise click.UsageError("--dns-update and --tsig-key go together")
    pusher = None
    if dns_update and tsig_key:
        try:
            key = TsigKey.from_file(tsig_key)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        pusher = Pusher(zone, *host_port(dns_update), key)
    problem = check_data_dir(data_dir)
    if problem:
        raise click.UsageError(problem)
    settings = CheckinSettings(
        data_dir=data_dir.resolve(),
        registry_url=registry_url,
        zone=zone,
        min_interval=min_update_interval,
        updates_dir=updates_dir,
        allow_private=allow_private_addresses,
        ns=ns,
        ns_addresses=_ns_addresses(ns_addresses),
    )
    if ns is None and not ns_addresses and dns_listen != "off" and not pusher:
        log.warning("ns1.%s has no address: give --ns-address (or name another server with --ns)", zone)
    app = create_app(settings, pusher)
    if dns_listen != "off":
        dns_host, dns_port = host_port(dns_listen)

        async def dns_server(app: web.Application) -> AsyncIterator[None]:
            responder = await start_responder(app[CHECKIN].zone, dns_host, dns_port)
            yield
            responder.close()

        app.cleanup_ctx.append(dns_server)
    host, port = host_port(listen)
    sock = listening_socket("keep-checkin", host, port)
    notify_when_listening(app, host, port)
    log.info(
        "keep-checkin on http://%s:%d, zone %s, DNS %s, updates %s",
        host,
        port,
        zone,
        dns_listen if not pusher else f"pushed to {dns_update}",
        "served" if updates_dir else "off",
    )
    serve_until_stopped(app, sock, "keep.checkin", log_client_addresses)


def _ns_addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_address(v)) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ns-address") from None


@main.group()
def release() -> None:
    """Create and sign update metadata (keys stay outside the service)."""


repo_option = click.option("--repo", type=click.Path(file_okay=False, path_type=Path), required=True)
keys_option = click.option("--keys", type=click.Path(file_okay=False, path_type=Path), required=True)


@release.command("init")
@repo_option
@keys_option
def release_init(repo: Path, keys: Path) -> None:
    """New keys (one per role, 0600) and version 1 of all metadata."""
    updates.init(repo, keys)
    click.echo(f"repository in {repo}; keys in {keys} — keep them offline; ship {repo}/metadata/1.root.json")


@release.command("publish")
@repo_option
@keys_option
@click.option("--version", "version", required=True)
@click.option(
    "--artifact", "artifacts", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
def release_publish(repo: Path, keys: Path, version: str, artifacts: tuple[Path, ...]) -> None:
    """Publish VERSION with its artifacts."""
    updates.release(repo, keys, version, list(artifacts))
    click.echo(f"published {version}")


@release.command("refresh")
@repo_option
@keys_option
def release_refresh(repo: Path, keys: Path) -> None:
    """Keep the metadata valid (run daily, from keep-checkin-refresh.timer):
    re-sign the timestamp, and each other role before it expires."""
    try:
        renewed = updates.refresh(repo, keys)
    except updates.OfflineKeyNeededError as exc:
        click.echo(f"keep-checkin: {exc}", err=True)
        sys.exit(1)
    click.echo("re-signed: " + ", ".join(renewed))


if __name__ == "__main__":
    main()

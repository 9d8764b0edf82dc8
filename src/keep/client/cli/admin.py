"""`keep admin serve` and `keep admin set-password`: the device's admin page."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from pathlib import Path

import click

from keep.client.cli.main import CliContext, cli
from keep.client.cli.session import UsageError, endpoint, read_password
from keep.protocol.api import split_host_port


@cli.group()
def admin() -> None:
    """The admin web page of this device."""


@admin.command("set-password")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def set_password_cmd(ctx: CliContext, password_file: Path | None) -> None:
    """Set the admin page's password (stored as an Argon2id hash)."""
    from keep.client.admin.security import set_password

    try:
        set_password(ctx.home, read_password(password_file, confirm=True).decode())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    ctx.emit("Admin password set.", {"ok": True})


def _host_port(value: str) -> tuple[str, int]:
    try:
        return split_host_port(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@admin.command()
@click.option("--listen", default="127.0.0.1:8480", show_default=True)
@click.option("--lan", is_flag=True, help="Allow listening on an address other machines can reach.")
@click.option("--allow-host", "allow_hosts", multiple=True, help="Extra host name the page may be opened as.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.pass_obj
def serve(
    ctx: CliContext,
    listen: str,
    lan: bool,
    allow_hosts: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Serve the admin page (127.0.0.1 only, unless --lan)."""
    try:
        from aiohttp import web

        from keep.client.admin.app import create_app
        from keep.client.admin.security import password_is_set
    except ImportError:
        raise UsageError("the admin page needs the 'admin' extra: pip install 'keep-backup[admin]'") from None
    host, port = _host_port(listen)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not lan:
        raise UsageError(f"{host} is reachable from other machines; add --lan to mean it")
    if not password_is_set(ctx.home):
        raise UsageError("no admin password yet: run `keep admin set-password` first")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    allowed = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"{host}:{port}"}
    allowed |= {h if ":" in h else f"{h}:{port}" for h in allow_hosts}
    context = None
    if tls_cert and tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
        if port == 443:
            allowed |= {h.rsplit(":", 1)[0] for h in allowed}
    elif port == 80:
        allowed |= {h.rsplit(":", 1)[0] for h in allowed}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(ctx.home, ctx.config_file, allowed, secure=context is not None, endpoint=endpoint(ctx))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:  # bound before the URL is printed: a busy port is one line, exit 2
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"Keep admin page on {'https' if context else 'http'}://{host}:{port}/", err=True)
    web.run_app(app, sock=sock, ssl_context=context, print=None, access_log=None)

"""How keep-server and keep-checkin start: the entry point that names a
missing extra in one line, `--listen`-style HOST:PORT options, and the last
steps before serving (process-wide, so only once every argument is
checked)."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import ssl
import sys

import click
from aiohttp import web

from keep.protocol.api import split_host_port
from keep.server.shared.quiet import quiet_logs


def main_or_extra(program: str, module: str, extra: str, needs: str) -> None:
    """Run `module`'s click `main`, or say in one line which extra to
    install when the package `needs` (the extra's import) is missing."""
    try:
        run = importlib.import_module(module).main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != needs:
            raise
        sys.exit(f"{program}: needs the '{extra}' extra: pip install 'keep-backup[{extra}]'")
    run()


def host_port(value: str) -> tuple[str, int]:
    """A HOST:PORT option's value, or click's one-line usage error."""
    try:
        return split_host_port(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def serve(
    app: web.Application,
    sock: socket.socket,
    logger: str,
    log_client_addresses: bool,
    ssl_context: ssl.SSLContext | None = None,
    cancel_on_disconnect: bool = False,
) -> None:
    """Serve `app` on `sock` until stopped. Client addresses reach a log
    (`<logger>.access`) only if the operator asked for them."""
    quiet_logs(log_client_addresses)
    os.umask(0o077)  # the database, objects and state: for the service's user only
    web.run_app(
        app,
        sock=sock,
        ssl_context=ssl_context,
        print=None,
        access_log=logging.getLogger(f"{logger}.access") if log_client_addresses else None,
        handler_cancellation=cancel_on_disconnect,
    )

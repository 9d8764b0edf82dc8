"""The listening socket of keep-server and keep-checkin, bound before
anything says "listening": a port in use is one line and exit 2, not a
"listening on …" line followed by a traceback."""

from __future__ import annotations

import errno
import socket
import sys

import click


def listening_socket(program: str, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        hint = (
            " — is another instance running? choose a free port with --listen"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        click.echo(f"{program}: cannot listen on {host}:{port}: {exc.strerror or exc}{hint}", err=True)
        sys.exit(2)

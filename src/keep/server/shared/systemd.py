"""systemd integration for keep-server and keep-checkin: `Type=notify` and the
watchdog, with the sd_notify datagram protocol (a few lines; no library).

`notify_when_listening(app, host, port)` adds a startup task that sends
READY=1 once the port accepts connections, then WATCHDOG=1 at half the
interval systemd asks for, from the event loop (so a stuck loop is what
the watchdog catches). Without $NOTIFY_SOCKET it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web


def notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def notify_when_listening(app: web.Application, host: str, port: int) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(_ready_then_watchdog(host, port))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        notify("STOPPING=1")

    app.cleanup_ctx.append(run)


async def _ready_then_watchdog(host: str, port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        break
    notify(f"READY=1\nSTATUS=listening on {host}:{port}\nMAINPID={os.getpid()}")
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if usec <= 0 or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return
    while True:
        await asyncio.sleep(usec / 2e6)
        notify("WATCHDOG=1")


def check_data_dir(path: Path) -> str | None:
    """Why `path` cannot be a data directory, or None if it can."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        return f"cannot create the data directory {path}: {exc.strerror}"
    if not path.is_dir():
        return f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"the data directory {path} is not writable by this user (uid {os.getuid()})"
    return None

"""Start and stop real `keep-server` and `keep-checkin` processes for
benchmarks and end-to-end runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0


_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never one this process handed out before
    (the kernel may offer a just-released port again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def stop(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int = signal.SIGTERM, pid: int | None = None
) -> None:
    """Stop a process we started, by PID: `sig` (to `pid` if the process to
    signal is a child of `proc`), then SIGKILL if it lingers."""
    target = pid or proc.pid
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(target, sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
        proc.wait()


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = START_TIMEOUT
) -> None:
    """Until 127.0.0.1:`port` accepts connections (or `proc` died: RuntimeError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


@contextmanager
def app_in_thread(app: Any) -> Iterator[str]:
    """Serve an aiohttp application (a test double) on 127.0.0.1 from a thread
    with its own event loop; yields its base URL."""
    from aiohttp import web

    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@contextmanager
def keep_server(
    data_dir: Path, *extra: str, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL, process) of a keep-server on 127.0.0.1; stop it by PID after."""
    with _service("keep-server", "/healthz", data_dir, extra, port) as started:
        yield started


@contextmanager
def checkin_server(
    data_dir: Path, *extra: str, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL, process) of a keep-checkin on 127.0.0.1 (DNS responder
    on a free port unless `extra` says otherwise); stop it by PID after."""
    if "--dns-listen" not in extra:
        extra = (*extra, "--dns-listen", f"127.0.0.1:{free_port()}")
    with _service("keep-checkin", "/v1/address", data_dir, extra, port) as started:
        yield started


@contextmanager
def _service(
    name: str, ready_path: str, data_dir: Path, extra: tuple[str, ...], port: int | None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = port or free_port()
    exe = Path(sys.executable).with_name(name)
    log = (data_dir.parent / f"{data_dir.name}-{name}.log").open("ab")
    proc = subprocess.Popen(
        [str(exe), "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}{ready_path}", timeout=1):  # noqa: S310 — our own http URL
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {log.name}") from None
                time.sleep(0.05)
        yield url, proc
    finally:
        stop(proc)
        log.close()

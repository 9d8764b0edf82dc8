"""Client tests run the real `keep` CLI against a real `keep-server` process on
127.0.0.1 (started once per session), each test with its own account and state
directory standing for one device."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from keep.client.device.state import DeviceState
from keep.client.engine.repository import Repository
from keep.client.remote import Remote
from support.servers import keep_server

KEEP = str(Path(sys.executable).with_name("keep"))
_names = itertools.count()


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def server_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keep-server") / "data"


@pytest.fixture(scope="session")
def server(server_data: Path) -> Iterator[str]:
    with keep_server(server_data) as (url, _):
        yield url


@dataclass
class Device:
    """One device: its own KEEP_HOME, talking to the shared server."""

    server: str
    home: Path
    account: str
    password_file: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "KEEP_HOME": str(self.home),
            "KEEP_CONFIG": str(self.home / "none.toml"),
            **self.env,
        }

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KEEP, *args],
            capture_output=True,
            text=True,
            env=self.environ(),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"keep {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run("--json", *args).stdout)

    def init_args(self) -> tuple[str, ...]:
        """`keep init` for this device, non-interactive (kit next to its home)."""
        return (
            "init",
            "--server",
            self.server,
            "--account",
            self.account,
            "--password-file",
            str(self.password_file),
            "--recovery-kit",
            str(self.home.parent / "kit.txt"),
        )

    def init(self) -> dict[str, Any]:
        return dict(self.json(*self.init_args()))

    def login(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`keep login` to this device's server and account with its password file."""
        pw = ("--password-file", str(self.password_file))
        return self.run("login", "--server", self.server, "--account", self.account, *pw, *extra, check=check)

    def another(self, home: Path, *extra: str) -> Device:
        """A second machine of this account, logged in with the password."""
        other = Device(self.server, home, self.account, self.password_file)
        other.login(*extra)
        return other


class Terminal:
    """`keep` on a pseudo-terminal, as an owner at a shell sees it: prompts are
    waited for and answered, and everything it printed is kept in `seen`."""

    def __init__(self, device: Device, *args: str, columns: int = 160) -> None:
        primary, secondary = pty.openpty()
        env = {
            **os.environ,
            "KEEP_HOME": str(device.home),
            "KEEP_CONFIG": str(device.home / "none.toml"),
            "COLUMNS": str(columns),
        }
        self.proc = subprocess.Popen(
            [KEEP, *args], stdin=secondary, stdout=secondary, stderr=secondary, env=env
        )
        os.close(secondary)
        self.fd = primary
        self.seen = b""
        self.cursor = 0

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # the process closed the terminal
            return False
        self.seen += chunk
        return bool(chunk)

    def expect(self, text: bytes, timeout: float = 60) -> None:
        """Wait until `text` appears after the previous match, like pexpect."""
        deadline = time.monotonic() + timeout
        while (at := self.seen.find(text, self.cursor)) < 0:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{text!r} not shown; the terminal shows {self.seen!r}")
        self.cursor = at + len(text)

    def send(self, text: bytes) -> None:
        os.write(self.fd, text)

    def finish(self, timeout: float = 120) -> int:
        """Wait for the exit code, collecting the rest of the output."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        code = self.proc.wait(timeout=max(deadline - time.monotonic(), 1))
        with contextlib.suppress(OSError):
            while self._read(0.1):
                pass
        os.close(self.fd)
        return code


@pytest.fixture
def device(server: str, tmp_path: Path) -> Device:
    pw = tmp_path / "password"
    pw.write_text("correct horse battery staple\n")
    return Device(server, tmp_path / "home", f"user{os.getpid()}x{next(_names)}", pw)


def device_repository(device: Device, cache: Path) -> tuple[Remote, Repository]:
    """What a holder of `device`'s device.json (its credential and keys) can
    reach directly: the connection, and the repository through it (cache in
    `cache`). Use the connection as a context manager."""
    state = DeviceState.load(device.home)
    remote = Remote(state.server_url, state.device_token)
    return remote, Repository(remote, state.keys, cache, state.suite)

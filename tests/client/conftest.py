"""Client tests run the real `keep` CLI against a real `keep-server` process on
127.0.0.1 (started once per session), each test with its own account and state
directory standing for one device."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks.server_process import keep_server

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

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KEEP_HOME": str(self.home),
            "KEEP_CONFIG": str(self.home / "none.toml"),
            **self.env,
        }
        result = subprocess.run(
            [KEEP, *args],
            capture_output=True,
            text=True,
            env=env,
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

    def init(self) -> dict[str, Any]:
        return dict(
            self.json(
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
        )


@pytest.fixture
def device(server: str, tmp_path: Path) -> Device:
    pw = tmp_path / "password"
    pw.write_text("correct horse battery staple\n")
    return Device(server, tmp_path / "home", f"user{os.getpid()}x{next(_names)}", pw)

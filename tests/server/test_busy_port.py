"""A port already in use is one line and exit 2 for each of the three
servers — no "listening on …" first, no traceback — and a URL is printed
only once the port is really listening."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from keep.client.admin.security import set_password

BIN = Path(sys.executable).parent


@contextmanager
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


@pytest.mark.parametrize("program", ["keep-server", "keep-checkin", "keep admin"])
def test_a_busy_port_is_one_line_and_exit_2(program: str, tmp_path: Path) -> None:
    env = {**os.environ, "KEEP_HOME": str(tmp_path / "home"), "KEEP_CONFIG": str(tmp_path / "keep.toml")}
    if program == "keep admin":
        (tmp_path / "home").mkdir()
        set_password(tmp_path / "home", "a long admin password for the test")
    with taken_port() as port:
        listen = ["--listen", f"127.0.0.1:{port}"]
        command = {
            "keep-server": [str(BIN / "keep-server"), "serve", "--data-dir", str(tmp_path / "d"), *listen],
            "keep-checkin": [
                str(BIN / "keep-checkin"),
                "serve",
                "--data-dir",
                str(tmp_path / "c"),
                "--dns-listen",
                "off",
                *listen,
            ],
            "keep admin": [str(BIN / "keep"), "admin", "serve", *listen],
        }[program]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in lines[0]
    assert "http://" not in result.stderr  # no URL for a page that is not there
    assert "listening" not in result.stderr

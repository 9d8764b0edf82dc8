"""`keep-server serve` as a real process: starts, logs one line naming where it
listens and its backends (and nothing secret), serves /healthz, stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from keep.server.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_logs_and_answers(tmp_path: Path) -> None:
    port = free_port()
    exe = Path(sys.executable).with_name("keep-server")
    proc = subprocess.Popen(
        [str(exe), "serve", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert f"listening on http://127.0.0.1:{port}" in out
    assert "metadata sqlite://" in out
    assert "objects file://" in out
    assert (tmp_path / "d" / "keep.db").exists()


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["serve", "--data-dir", str(tmp_path), "--listen", "nope"])
    assert result.exit_code == 2
    assert "HOST:PORT" in result.output
    result = runner.invoke(
        main, ["serve", "--data-dir", str(tmp_path), "--metadata", "mysql://x/y"], catch_exceptions=True
    )
    assert result.exit_code == 2
    assert "unsupported backend 'mysql'" in result.output
    assert "Traceback" not in result.output

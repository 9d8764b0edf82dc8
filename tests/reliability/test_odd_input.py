"""Source trees with odd content: names that are not UTF-8, contain newlines
or are 255 bytes long, 1000 levels of nesting, FIFOs and sockets (recorded or
skipped with a warning, never opened, never blocking), and a file that grows
while it is read (a warning, exit 3)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from tests.client.conftest import Device
from tests.client.test_faults import restored
from tests.client.tree_builder import describe

DEPTH = 1000


def test_odd_names_deep_nesting_and_special_files(device: Device, tmp_path: Path) -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))  # describe() walks with os.walk
    device.init()
    src = tmp_path / "odd"
    src.mkdir()
    raw = os.fsencode(src)
    for name in (b"caf\xe9-latin1", b"new\nline", b"x" * 255, b"\xff\xfe", b" leading space", b"-dash"):
        with open(raw + b"/" + name, "wb") as f:
            f.write(name * 3)
    deep = raw
    for _ in range(DEPTH):  # os.makedirs recurses too deeply for this
        deep += b"/d"
        os.mkdir(deep)
    with open(deep + b"/bottom.txt", "wb") as f:
        f.write(b"found me")
    os.mkfifo(src / "pipe")  # a backup that opened it would block forever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        result = device.run("--json", "backup", str(src), check=False, timeout=300)
    finally:
        sock.close()
    assert result.returncode == 3, result.stderr  # the socket is a warning, not an error
    summary = json.loads(result.stdout)
    assert [w["message"] for w in summary["warnings"]] == ["socket skipped"]
    (src / "sock").unlink()
    target = tmp_path / "restore"
    device.run("restore", summary["snapshot"], "--target", str(target), timeout=300)
    try:
        assert describe(restored(target, src)) == describe(src)
        assert device.json("check")["ok"]
    finally:  # pytest's own clean-up of old temp dirs would recurse too deeply
        for top in (raw, os.fsencode(restored(target, src))):
            remove_deep(top + b"/d")


def remove_deep(top: bytes) -> None:
    """Remove a chain top/d/d/…/d (with files at any level) bottom-up, without recursion."""
    chain = [top]
    while os.path.isdir(chain[-1] + b"/d"):
        chain.append(chain[-1] + b"/d")
    for directory in reversed(chain):
        for entry in os.listdir(directory):
            if entry != b"d":
                os.unlink(directory + b"/" + entry)
        os.rmdir(directory)

"""What the server (or the network) learns beyond opaque objects, and what a
hostile server can make the client do: index sizes, device names, the
software's name and version, client addresses in logs, the precision of
ranged reads, and listings that never end."""

from __future__ import annotations

import base64
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from keep.client import remote as remote_module
from keep.client.device.state import DeviceState
from keep.client.engine.locations import RANGE_ALIGN
from keep.client.remote import Remote
from keep.protocol.device_name import open_device_name
from keep.protocol.envelope import ObjectKind, Suite, seal_single
from keep.protocol.errors import ProtocolViolationError
from keep.protocol.index import INDEX_MIN_PADDED, Index, IndexedPack
from keep.protocol.keys import DataKey
from keep.protocol.pack import TocEntry
from keep.protocol.padding import padme
from support.servers import app_in_thread, checkin_server, keep_server
from tests.client.conftest import Device
from tests.client.test_faults import random_tree
from tests.reliability.test_hostile_proxy import set_up

KEY = DataKey(bytes(32))


def _index_with(blobs: int) -> bytes:
    entries = tuple(TocEntry(1, os.urandom(32), 0, 100 * i, 100, 100, i) for i in range(blobs))  # type: ignore[arg-type]
    pack = IndexedPack(os.urandom(32), Suite.AES_256_GCM, os.urandom(32), entries)
    return Index((pack,)).seal(KEY, Suite.AES_256_GCM, os.urandom(32))


def test_index_objects_are_padded_so_their_size_hides_the_blob_count() -> None:
    overhead = len(seal_single(KEY, ObjectKind.INDEX, Suite.AES_256_GCM, os.urandom(32), b""))
    sizes = {n: len(_index_with(n)) for n in (*range(1, 150, 7), *range(1000, 1010))}
    for size in sizes.values():
        assert padme(size - overhead) == size - overhead
        assert size - overhead >= INDEX_MIN_PADDED
    assert len({sizes[n] for n in range(1, 150, 7)}) == 1  # under ~200 blobs: one size
    assert len({sizes[n] for n in range(1000, 1010)}) <= 2


def test_index_objects_on_the_server_have_padded_sizes(device: Device, tmp_path: Path) -> None:
    device.init()
    device.run("backup", str(random_tree(tmp_path / "src", 37, 1000)))
    state = DeviceState.load(device.home)
    overhead = len(seal_single(KEY, ObjectKind.INDEX, Suite.AES_256_GCM, os.urandom(32), b""))
    with Remote(state.server_url, state.device_token) as remote:
        sizes = [o.size - overhead for o in remote.list_objects("index")]
    assert sizes
    assert all(padme(s) == s for s in sizes)


def test_the_server_holds_no_host_name(device: Device, server_data: Path) -> None:
    device.init()  # default device name: the host name
    host = socket.gethostname()
    with sqlite3.connect(server_data / "keep.db") as db:
        names = [row[0] for row in db.execute("SELECT name FROM devices")]
    assert names
    assert all(name.startswith("k1.") for name in names)
    # Every stored name is ciphertext: a nonce, the sealed name and a tag,
    # never the name itself. (Looking for the host name as a substring of
    # base64 is no test when it is short: "vm" turns up in random text.)
    assert all(len(base64.urlsafe_b64decode(n[3:] + "==")) > 12 + 16 for n in names)
    assert host not in names
    mine = DeviceState.load(device.home)
    with sqlite3.connect(server_data / "keep.db") as db:
        (stored,) = db.execute("SELECT name FROM devices WHERE id = ?", (mine.device_id,)).fetchone()
    assert open_device_name(mine.keys.data, stored) == host  # it is this name, sealed
    listed = device.json("device", "list")
    assert [d["name"] for d in listed if d["this_device"]] == [host]


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        return s.recv(4096)


@pytest.mark.parametrize("service", ["keep-server", "keep-checkin"])
def test_no_server_header_and_no_client_address_in_logs(tmp_path: Path, service: str) -> None:
    start = keep_server if service == "keep-server" else checkin_server
    with start(tmp_path / "data") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        replies = [
            _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            _raw(port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"),
            _raw(port, b"GARBAGE\r\n\r\n"),
            _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        ]
        time.sleep(0.3)
    for reply in replies:
        head = reply.split(b"\r\n\r\n")[0].lower()
        assert b"python" not in head
        assert b"aiohttp" not in head
        assert not re.search(rb"\nserver: *\S", head)
    log = (tmp_path / f"data-{service}.log").read_text()
    lines = [line for line in log.splitlines() if "listening on" not in line and " on http://" not in line]
    assert "refused a malformed or broken HTTP request" in log
    assert not [line for line in lines if "127.0.0.1" in line]


def test_a_ranged_read_is_no_more_precise_than_a_padded_pack(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path
) -> None:
    dev, src, _ = set_up(tamper, device, tmp_path)
    ranges: list[tuple[int, int]] = []
    tamper[1]["record_ranges"] = ranges
    small = src / "small.txt"
    small.write_bytes(b"x" * 700)
    dev.run("backup", str(src))
    dev.run("restore", "latest", "--target", str(tmp_path / "r"), "--include", str(small))
    assert (tmp_path / "r" / str(small).lstrip("/")).read_bytes() == small.read_bytes()
    assert ranges
    for start, end in ranges:
        length = end - start + 1
        assert start % RANGE_ALIGN == 0
        assert (
            length == -(-padme(length) // RANGE_ALIGN) * RANGE_ALIGN or length % RANGE_ALIGN != 0
        )  # or the pack's end


LIST = web.AppKey("list", dict)


async def endless(request: web.Request) -> web.Response:
    mode = request.app[LIST]["mode"]
    after = request.query.get("after", "")
    n = int(after or "0", 16)
    if mode == "empty-pages":
        return web.json_response({"objects": [], "next": f"{n + 1:064x}"})
    if mode == "stuck":
        return web.json_response(
            {"objects": [{"id": "ab" * 32, "size": 1, "created": 1}], "next": after or "00"}
        )
    page = [{"id": f"{n + i:064x}", "size": 1, "created": 1} for i in range(1, 1001)]
    return web.json_response({"objects": page, "next": page[-1]["id"]})


@pytest.fixture
def endless_server() -> Iterator[tuple[str, dict[str, Any]]]:
    app = web.Application()
    app[LIST] = {"mode": ""}
    app.router.add_get("/v1/objects/{kind}", endless)
    with app_in_thread(app) as url:
        yield url, app[LIST]


@pytest.mark.parametrize("mode", ["empty-pages", "stuck", "full-pages"])
def test_an_endless_listing_is_refused_in_bounded_memory(
    endless_server: tuple[str, dict[str, Any]], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = endless_server
    state["mode"] = mode
    monkeypatch.setattr(remote_module, "LIST_OBJECTS_MAX", 20_000)  # the real bound is 2 million
    with Remote(url, "kd_x") as remote, pytest.raises(ProtocolViolationError, match="does not end"):
        remote.list_objects("snapshot")

"""A man in the middle (or a compromised server) in front of a real
keep-server, altering replies on purpose: truncated objects, a flipped bit in
a ranged read, a connection cut in the middle of a range, an index left
out of the listing, a snapshot left out of the listing (an older state
served again).
The client refuses clearly or recovers; it never writes corrupt data to a
restore target."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from keep.client.engine.locations import RANGE_ALIGN
from support.servers import app_in_thread
from tests.client.conftest import Device
from tests.client.test_faults import random_tree, restored
from tests.client.tree_builder import describe

MODE = web.AppKey("mode", dict)
UPSTREAM = web.AppKey("upstream", str)
HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


async def relay(request: web.Request) -> web.StreamResponse:
    mode: dict[str, Any] = request.app[MODE]
    body = await request.read()
    if "record_ranges" in mode and "Range" in request.headers:
        first, last = request.headers["Range"].removeprefix("bytes=").split("-")
        mode["record_ranges"].append((int(first), int(last)))
    dropped = {"host", *HOP, *mode.get("drop_request_headers", ())}
    headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(
            request.method, request.app[UPSTREAM] + request.path_qs, data=body or None, headers=headers
        ) as reply,
    ):
        data = await reply.read()
        out_headers = {k: v for k, v in reply.headers.items() if k.lower() not in HOP}
        path = request.path
        # Data, not trees: ranged reads of packs larger than the tree packs.
        data_get = path.startswith("/v1/objects/pack/") and request.method == "GET" and len(data) > 256 << 10
        if mode.get("pack_404") and data_get:
            return web.json_response({"code": "not_found", "message": "no such object"}, status=404)
        cut_once = mode.get("cut_once")  # the paths cut so far: each is cut once
        if (mode.get("cut") or (cut_once is not None and path not in cut_once)) and data_get:
            if cut_once is not None:
                cut_once.add(path)
            # Promise the whole reply, send half, then drop the connection.
            cut = web.StreamResponse(status=reply.status, headers=out_headers)
            cut.content_length = len(data)
            await cut.prepare(request)
            await cut.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.abort()
            return cut
        if mode.get("truncate") and path.startswith("/v1/objects/pack/") and request.method == "GET":
            data = data[: len(data) // 2]
        if mode.get("flip") and path.startswith("/v1/objects/pack/") and request.method == "GET" and data:
            at = min(100, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
        if mode.get("hide_snapshot") and path == "/v1/objects/snapshot" and reply.status == 200:
            listing = json.loads(data)
            listing["objects"] = [o for o in listing["objects"] if o["id"] != mode["hide_snapshot"]]
            data = json.dumps(listing).encode()
        if mode.get("drop_index") and path == "/v1/objects/index" and reply.status == 200:
            listing = json.loads(data)
            listing["objects"] = []
            data = json.dumps(listing).encode()
        return web.Response(status=reply.status, body=data, headers=out_headers)


@pytest.fixture
def tamper(server: str) -> Iterator[tuple[str, dict[str, Any]]]:
    app = web.Application(client_max_size=128 * 1024 * 1024)
    app[MODE] = {}
    app[UPSTREAM] = server
    app.router.add_route("*", "/{tail:.*}", relay)
    with app_in_thread(app) as url:
        yield url, app[MODE]


def set_up(tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path) -> tuple[Device, Path, str]:
    url, _ = tamper
    dev = Device(url, device.home, device.account, device.password_file)
    dev.init()
    src = random_tree(tmp_path / "src", 3, 1 << 20)
    snapshot = dev.json("backup", str(src))["snapshot"]
    shutil.rmtree(dev.home / "cache", ignore_errors=True)  # everything comes through the proxy again
    return dev, src, snapshot


@pytest.mark.parametrize("attack", ["truncate", "flip"])
def test_damaged_pack_replies_are_refused_and_never_written(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path, attack: str
) -> None:
    dev, src, snapshot = set_up(tamper, device, tmp_path)
    tamper[1][attack] = True
    target = tmp_path / "restore"
    result = dev.run("restore", snapshot, "--target", str(target), check=False)
    assert result.returncode in (1, 15), result.stderr
    assert "Traceback" not in result.stderr
    for path in target.rglob("*.bin"):  # whatever was written is exactly right
        assert path.read_bytes() == (src / path.name).read_bytes()
    tamper[1].clear()
    dev.run("restore", snapshot, "--target", str(tmp_path / "clean"))
    assert describe(restored(tmp_path / "clean", src)) == describe(src)


def test_a_range_cut_part_way_is_read_on_from_where_it_broke(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path
) -> None:
    """The connection breaks half-way through each pack's range: the
    restore asks for the rest — from the 64 KiB boundary before the first
    byte it had not read, not the whole range again, and not from where a
    blob starts — and restores everything exactly."""
    dev, src, snapshot = set_up(tamper, device, tmp_path)
    ranges: list[tuple[int, int]] = []
    tamper[1].update(cut_once=set(), record_ranges=ranges)
    target = tmp_path / "restore"
    dev.run("restore", snapshot, "--target", str(target))
    assert describe(restored(target, src)) == describe(src)
    assert tamper[1]["cut_once"]  # something was cut
    resumed = [(a, z) for a, z in ranges if any(earlier < a and end == z for earlier, end in ranges)]
    assert len(resumed) >= len(tamper[1]["cut_once"])
    # Where a read resumes is no more precise than where a range starts
    # (the server chose where to cut; it must not learn where a blob begins).
    assert all(first % RANGE_ALIGN == 0 for first, _ in ranges)


def test_a_dropped_index_is_recovered_from_the_packs(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path
) -> None:
    dev, src, snapshot = set_up(tamper, device, tmp_path)
    tamper[1]["drop_index"] = True
    target = tmp_path / "restore"
    dev.run("restore", snapshot, "--target", str(target))
    assert describe(restored(target, src)) == describe(src)


def test_a_rolled_back_snapshot_list_is_refused_but_a_forget_is_not(
    tamper: tuple[str, dict[str, Any]], device: Device, tmp_path: Path
) -> None:
    dev, src, first = set_up(tamper, device, tmp_path)
    (src / "f0.bin").write_bytes(b"a newer version")
    second = dev.json("backup", str(src))["snapshot"]
    assert {s["id"] for s in dev.json("snapshots")} == {first, second}  # this machine has seen both
    tamper[1]["hide_snapshot"] = second
    for command in (("snapshots",), ("backup", str(src))):
        result = dev.run(*command, check=False)
        assert result.returncode == 15, result.stderr
        assert "rollback" in result.stderr
    tamper[1].clear()
    dev.json("forget", second, "--password-file", str(dev.password_file))
    assert [s["id"] for s in dev.json("snapshots")] == [first]  # a forget is not a rollback
    # Nor is a forget done on another machine.
    other = Device(dev.server, tmp_path / "machine-b", dev.account, dev.password_file)
    other.run(
        "login", "--server", dev.server, "--account", dev.account, "--password-file", str(dev.password_file)
    )
    (src / "f0.bin").write_bytes(b"newest")
    third = dev.json("backup", str(src))["snapshot"]
    other.json("forget", first, "--password-file", str(dev.password_file))
    assert [s["id"] for s in dev.json("snapshots")] == [third]

"""A server that misbehaves on purpose: the client refuses clearly, in bounded
time and memory, and never derives keys from parameters it should not accept."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from keep.client.device.state import DeviceState
from keep.protocol.envelope import Suite
from keep.protocol.keys import MasterKey, RepositoryKeys
from support.servers import app_in_thread
from tests.client.conftest import Device

SALT = base64.b64encode(bytes(32)).decode()
STATE = web.AppKey("state", dict)  # mode and bodies; mutated by tests while serving


def kdf(memory: int, iterations: int, parallelism: int = 4) -> dict[str, object]:
    return {
        "kdf": {
            "algorithm": "argon2id",
            "memory_kib": memory,
            "iterations": iterations,
            "parallelism": parallelism,
        },
        "salt": SALT,
    }


async def hostile(request: web.Request) -> web.StreamResponse:
    mode = request.app[STATE]["mode"]
    if mode == "weak-kdf":
        return web.json_response(kdf(8, 1, 1))
    if mode == "huge-kdf":
        return web.json_response(kdf(64 * 1024 * 1024, 3))
    if mode == "malformed":
        return web.Response(body=b"{not json", content_type="application/json")
    if mode in ("huge-body", "endless-body"):
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if mode == "huge-body":
            response.content_length = 10**12
        await response.prepare(request)
        block = b" " * 65536
        for _ in range(100_000):  # bounded: the client must stop long before this
            try:
                await response.write(block)
            except (ConnectionResetError, RuntimeError):
                break
        return response
    raise web.HTTPNotFound


async def objects_list(request: web.Request) -> web.Response:
    body = request.app[STATE]["snapshot_body"]
    # Lists an object under a name its bytes do not hash to (a swapped object).
    return web.json_response({"objects": [{"id": "ab" * 32, "size": len(body), "created": 1}], "next": None})


async def object_get(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATE]["snapshot_body"], content_type="application/octet-stream")


@pytest.fixture
def hostile_server() -> Iterator[tuple[str, web.Application]]:
    app = web.Application()
    app[STATE] = {"mode": "", "snapshot_body": os.urandom(500)}
    app.router.add_get("/v1/accounts/{name}/kdf", hostile)
    app.router.add_get("/v1/objects/snapshot", objects_list)
    app.router.add_get("/v1/objects/snapshot/{oid}", object_get)
    with app_in_thread(app) as url:
        yield url, app


@pytest.mark.parametrize(
    ("mode", "code", "message"),
    [
        ("weak-kdf", 15, "below the safety floor"),
        ("huge-kdf", 15, "above this device's ceiling"),
        ("malformed", 1, "malformed JSON"),
        ("huge-body", 1, "larger than allowed"),
        ("endless-body", 1, "larger than allowed"),
    ],
)
def test_login_refuses_hostile_kdf_replies(
    hostile_server: tuple[str, web.Application], tmp_path: Path, mode: str, code: int, message: str
) -> None:
    url, app = hostile_server
    app[STATE]["mode"] = mode
    pw = tmp_path / "pw"
    pw.write_text("secret")
    dev = Device(url, tmp_path / "home", "victim", pw)
    result = dev.run(
        "login", "--server", url, "--account", "victim", "--password-file", str(pw), check=False, timeout=60
    )
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "device.json").exists()


def test_swapped_object_is_an_integrity_error(
    hostile_server: tuple[str, web.Application], tmp_path: Path
) -> None:
    url, app = hostile_server
    body = app[STATE]["snapshot_body"]
    assert hashlib.sha256(body).hexdigest() != "ab" * 32
    home = tmp_path / "home"
    DeviceState(
        url,
        "victim",
        "dev",
        "kd_token",
        RepositoryKeys.from_master(MasterKey(os.urandom(64))),
        Suite.AES_256_GCM,
    ).save(home)
    dev = Device(url, home, "victim", tmp_path / "pw")
    result = dev.run("snapshots", check=False, timeout=60)
    assert result.returncode == 15, result.stderr
    assert "does not hash to its name" in result.stderr

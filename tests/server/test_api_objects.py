from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from keep.protocol.object_id import BLAKE3, HASH_HEADER, SHA256, object_id
from keep.server.cli import _scrub
from keep.server.settings import Settings
from tests.server.conftest import Api, Owner, create_owner, enroll, put

T = "/v1/objects/{kind}/{object_id}"


async def test_put_get_head_round_trip(api: Api, owner: Owner) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    oid = object_id(data)
    assert await put(api, owner.session, data) == (201, {"created": True, "size": len(data)})
    status, body, _ = await api.call("GET", f"/v1/objects/pack/{oid}", T, owner.session)
    assert status == 200
    assert body == data
    status, body, resp = await api.call("HEAD", f"/v1/objects/pack/{oid}", T, owner.session)
    assert status == 200
    assert resp.content_length == len(data)


async def test_put_is_idempotent(api: Api, owner: Owner) -> None:
    assert (await put(api, owner.session, b"same"))[0] == 201
    assert await put(api, owner.session, b"same") == (200, {"created": False, "size": 4})
    _, usage, _ = await api.call("GET", "/v1/usage", "/v1/usage", owner.session)
    assert usage == {"bytes": 4, "objects": 1, "quota": None}


async def test_range_requests(api: Api, owner: Owner) -> None:
    data = bytes(range(256)) * 100
    oid = object_id(data)
    await put(api, owner.session, data)
    status, body, resp = await api.call(
        "GET", f"/v1/objects/pack/{oid}", T, owner.session, headers={"Range": "bytes=100-299"}
    )
    assert status == 206
    assert body == data[100:300]
    assert resp.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
    status, body, _ = await api.call(
        "GET", f"/v1/objects/pack/{oid}", T, owner.session, headers={"Range": "bytes=-10"}
    )
    assert (status, body) == (206, data[-10:])
    status, _, _ = await api.call(
        "GET", f"/v1/objects/pack/{oid}", T, owner.session, headers={"Range": "bytes=999999-"}
    )
    assert status == 416


async def test_hash_mismatch_stores_nothing(api: Api, owner: Owner, settings: Settings) -> None:
    wrong = hashlib.sha256(b"other").hexdigest()
    status, body, _ = await api.call("PUT", f"/v1/objects/pack/{wrong}", T, owner.session, data=b"data")
    assert (status, body["code"]) == (400, "hash_mismatch")
    status, _, _ = await api.call("GET", f"/v1/objects/pack/{wrong}", T, owner.session)
    assert status == 404
    assert _stored_files(settings) == []


async def test_the_hash_header_says_which_hash_names_the_object(
    api: Api, owner: Owner, settings: Settings
) -> None:
    """BLAKE3 for a client that says so, SHA-256 for one that says nothing
    (objects written before BLAKE3); each upload is checked under the hash it
    names, never the other, and an unknown hash is refused before any byte is
    stored."""
    data = os.urandom(70_000)
    by_blake3, by_sha256 = object_id(data), hashlib.sha256(data).hexdigest()
    blake3_header = {HASH_HEADER: BLAKE3}
    status, body, _ = await api.call("PUT", f"/v1/objects/pack/{by_blake3}", T, owner.session, data=data)
    assert (status, body["code"]) == (400, "hash_mismatch")
    status, body, _ = await api.call(
        "PUT", f"/v1/objects/pack/{by_sha256}", T, owner.session, data=data, headers=blake3_header
    )
    assert (status, body["code"]) == (400, "hash_mismatch")
    status, body, _ = await api.call(
        "PUT", f"/v1/objects/pack/{by_sha256}", T, owner.session, data=data, headers={HASH_HEADER: "md5"}
    )
    assert (status, body["code"]) == (400, "bad_request")
    assert HASH_HEADER in body["message"]
    assert _stored_files(settings) == []
    for oid, headers in ((by_blake3, blake3_header), (by_sha256, {HASH_HEADER: SHA256}), (by_sha256, {})):
        status, _, _ = await api.call(
            "PUT", f"/v1/objects/pack/{oid}", T, owner.session, data=data, headers=headers
        )
        assert status in (200, 201)
        status, body, _ = await api.call("GET", f"/v1/objects/pack/{oid}", T, owner.session)
        assert (status, body) == (200, data)


def _stored_files(settings: Settings) -> list[Path]:
    root = settings.data_dir / "objects"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_bad_ids_kinds_and_sizes(api: Api, owner: Owner) -> None:
    for path, code in (
        ("/v1/objects/pack/XYZ", 400),
        ("/v1/objects/secret/" + "0" * 64, 404),
        ("/v1/objects/pack/" + "A" * 64, 400),
    ):
        status, _, _ = await api.call("PUT", path, T, owner.session, data=b"x")
        assert status == code, path
    oid = "0" * 64
    big = {"Content-Length": str(2**40)}
    status, _, _ = await api.call("PUT", f"/v1/objects/pack/{oid}", T, owner.session, headers=big, data=b"")
    assert status in (413, 400)


async def test_upload_without_length_is_refused(api: Api, owner: Owner) -> None:
    async def gen():  # type: ignore[no-untyped-def]
        yield b"chunked"

    oid = hashlib.sha256(b"chunked").hexdigest()
    status, body, _ = await api.call("PUT", f"/v1/objects/pack/{oid}", T, owner.session, data=gen())
    assert (status, body["code"]) == (411, "length_required")


async def test_listing_is_paged(api: Api, owner: Owner) -> None:
    ids = sorted([object_id(str(i).encode()) for i in range(7)])
    for i in range(7):
        await put(api, owner.session, str(i).encode(), kind="index")
    seen: list[str] = []
    after = ""
    while True:
        q = f"?limit=3&after={after}" if after else "?limit=3"
        status, body, _ = await api.call("GET", f"/v1/objects/index{q}", "/v1/objects/{kind}", owner.session)
        assert status == 200
        seen += [o["id"] for o in body["objects"]]
        if body["next"] is None:
            break
        after = body["next"]
    assert seen == ids
    status, _, _ = await api.call("GET", "/v1/objects/index?limit=0", "/v1/objects/{kind}", owner.session)
    assert status == 400


async def test_quota_exceeded_stores_nothing(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from keep.server.app import create_app
    from tests.server.conftest import Clock

    settings = Settings(data_dir=tmp_path / "q", default_quota=1000)
    async with TestClient(TestServer(create_app(settings, clock=Clock()), host="127.0.0.1")) as client:
        api = Api(client, Clock())
        owner = await create_owner(api)
        assert (await put(api, owner.session, b"a" * 600))[0] == 201
        status, body = await put(api, owner.session, b"b" * 600)
        assert (status, body["code"]) == (507, "quota_exceeded")
        _, usage, _ = await api.call("GET", "/v1/usage", "/v1/usage", owner.session)
        assert usage == {"bytes": 600, "objects": 1, "quota": 1000}
        assert len(_stored_files(settings)) == 1


async def test_delete_by_owner(api: Api, owner: Owner) -> None:
    await put(api, owner.session, b"doomed")
    oid = object_id(b"doomed")
    status, _, _ = await api.call("DELETE", f"/v1/objects/pack/{oid}", T, owner.session)
    assert status == 204
    status, _, _ = await api.call("GET", f"/v1/objects/pack/{oid}", T, owner.session)
    assert status == 404
    status, _, _ = await api.call("DELETE", f"/v1/objects/pack/{oid}", T, owner.session)
    assert status == 404
    _, usage, _ = await api.call("GET", "/v1/usage", "/v1/usage", owner.session)
    assert usage["bytes"] == 0


async def test_interrupted_upload_leaves_nothing(api: Api, owner: Owner, settings: Settings) -> None:
    """A client that announces 1 MiB, sends half and disconnects leaves no object
    and no temp file behind."""
    data = os.urandom(1024 * 1024)
    oid = object_id(data)
    host, port = api.client.server.host, api.client.server.port
    _, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"PUT /v1/objects/pack/{oid} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {owner.session}\r\nContent-Length: {len(data)}\r\n"
            f"{HASH_HEADER}: {BLAKE3}\r\n\r\n"
        ).encode()
        + data[: len(data) // 2]
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.sleep(0.3)
    status, _, _ = await api.call("GET", f"/v1/objects/pack/{oid}", T, owner.session)
    assert status == 404
    assert _stored_files(settings) == []
    # and the same object uploads fine afterwards
    assert (await put(api, owner.session, data))[0] == 201


@pytest.mark.parametrize("n", [8])
async def test_concurrent_uploads_of_the_same_object(api: Api, owner: Owner, n: int) -> None:
    data = os.urandom(2 * 1024 * 1024)
    results = await asyncio.gather(*(put(api, owner.session, data) for _ in range(n)))
    assert sorted(r[1]["created"] for r in results).count(True) == 1
    _, usage, _ = await api.call("GET", "/v1/usage", "/v1/usage", owner.session)
    assert usage == {"bytes": len(data), "objects": 1, "quota": None}


async def test_device_can_upload_and_read(api: Api, owner: Owner) -> None:
    _, token = await enroll(api, owner)
    assert (await put(api, token, b"from device"))[0] == 201
    oid = object_id(b"from device")
    status, body, _ = await api.call("GET", f"/v1/objects/pack/{oid}", T, token)
    assert (status, body) == (200, b"from device")


async def test_scrub_knows_both_hashes_and_finds_rot_under_either(
    api: Api, owner: Owner, settings: Settings
) -> None:
    """One read per object checks it against both names: objects written by
    this client (BLAKE3) and before it (SHA-256) are healthy, and a flipped
    byte in either is damage."""
    new, old = os.urandom(90_000), os.urandom(90_000)
    assert (await put(api, owner.session, new))[0] == 201
    old_id = hashlib.sha256(old).hexdigest()
    assert (await api.call("PUT", f"/v1/objects/pack/{old_id}", T, owner.session, data=old))[0] == 201
    [report] = await _scrub(settings)
    assert (report.objects, report.healthy) == (2, True)
    for path in _stored_files(settings):
        body = bytearray(path.read_bytes())
        body[len(body) // 2] ^= 1
        path.write_bytes(bytes(body))
    [report] = await _scrub(settings)
    assert sorted(report.damaged) == sorted(
        ("pack", oid, "content does not hash to its name") for oid in (object_id(new), old_id)
    )

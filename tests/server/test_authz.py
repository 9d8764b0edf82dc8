"""Authorization matrix: every endpoint × owner, device, revoked device, another
account's owner, no token and a forged token."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from keep.protocol.object_id import object_id
from tests.server.conftest import Api, b64, create_owner, enroll, put

OBJ = object_id(b"alice's object")  # uploaded by `put`, as the client does
NEW = hashlib.sha256(b"new object").hexdigest()  # uploaded without the hash header: SHA-256
OT = "/v1/objects/{kind}/{object_id}"

# (method, path, template, json, data) — paths use {device} / {lock} placeholders.
ENDPOINTS: list[tuple[str, str, str, Any, bytes | None]] = [
    ("GET", "/v1/account", "/v1/account", None, None),
    ("GET", "/v1/account/export", "/v1/account/export", None, None),
    ("GET", "/v1/keyslots", "/v1/keyslots", None, None),
    ("GET", "/v1/devices", "/v1/devices", None, None),
    ("POST", "/v1/devices", "/v1/devices", {"name": "x"}, None),
    ("DELETE", "/v1/devices/{device}", "/v1/devices/{device_id}", None, None),
    ("GET", "/v1/usage", "/v1/usage", None, None),
    ("GET", "/v1/objects/pack", "/v1/objects/{kind}", None, None),
    ("GET", f"/v1/objects/pack/{OBJ}", OT, None, None),
    ("HEAD", f"/v1/objects/pack/{OBJ}", OT, None, None),
    ("PUT", f"/v1/objects/pack/{NEW}", OT, None, b"new object"),
    ("DELETE", f"/v1/objects/pack/{OBJ}", OT, None, None),
    ("POST", "/v1/locks", "/v1/locks", {"mode": "shared", "ttl": 30}, None),
    ("GET", "/v1/locks", "/v1/locks", None, None),
    ("PUT", "/v1/locks/{lock}", "/v1/locks/{lock_id}", {"ttl": 30}, None),
    ("DELETE", "/v1/locks/{lock}", "/v1/locks/{lock_id}", None, None),
    ("PUT", "/v1/keyslots/recovery", "/v1/keyslots/recovery", {"recovery_verifier": "", "slot": {}}, None),
    ("DELETE", "/v1/sessions/current", "/v1/sessions/current", None, None),
]

OWNER_ONLY = {
    ("GET", "/v1/account/export"),
    ("GET", "/v1/keyslots"),
    ("POST", "/v1/devices"),
    ("DELETE", "/v1/devices/{device}"),
    ("DELETE", f"/v1/objects/pack/{OBJ}"),
    ("PUT", "/v1/keyslots/recovery"),
    ("DELETE", "/v1/sessions/current"),
}


def expected(who: str, method: str, path: str) -> set[int]:
    if who in ("none", "forged", "revoked"):
        return {401}
    if who == "device" and (method, path) in OWNER_ONLY:
        return {403}
    if who == "device" and "{lock}" in path:
        return {404}  # the lease is the owner's: a device renews and releases only its own
    if who == "other":
        # authenticated, but alice's device, lock and object do not exist for bob
        if "{device}" in path or "{lock}" in path or (OBJ in path and method != "PUT"):
            return {404, 400}
        return {200, 201, 204, 400}
    return {200, 201, 204, 400}  # 400: the recovery body is deliberately invalid


@pytest.mark.parametrize("who", ["owner", "device", "revoked", "other", "none", "forged"])
async def test_authorization_matrix(api: Api, who: str) -> None:
    alice = await create_owner(api, "alice")
    bob = await create_owner(api, "bob")
    await put(api, alice.session, b"alice's object")
    _, device = await enroll(api, alice, "nas")
    revoked_id, revoked = await enroll(api, alice, "old")
    await api.call("DELETE", f"/v1/devices/{revoked_id}", "/v1/devices/{device_id}", alice.session)
    token = {
        "owner": alice.session,
        "device": device,
        "revoked": revoked,
        "other": bob.session,
        "none": None,
        "forged": "ks_" + b64(b"\0" * 32),
    }[who]
    for method, path, template, body, data in ENDPOINTS:
        # Fresh targets for each call so that earlier calls do not change later ones.
        _, lease, _ = await api.call(
            "POST", "/v1/locks", "/v1/locks", alice.session, json={"mode": "shared", "ttl": 30}
        )
        target_device, _ = await enroll(api, alice, "target")
        concrete = path.replace("{device}", target_device).replace("{lock}", lease["id"])
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        if data is not None:
            kwargs["data"] = data
        status, reply, _ = await api.call(method, concrete, template, token, **kwargs)
        assert status in expected(who, method, path), (who, method, path, status, reply)
        if method != "HEAD":
            if status == 403:
                assert reply["code"] == "append_only"
            if who == "revoked":
                assert reply["code"] == "device_revoked"
        await put(api, alice.session, b"alice's object")  # restore if deleted
        if method == "DELETE" and path == "/v1/sessions/current" and who == "owner":
            alice.session = token = await login_again(api, alice)
    # alice's data is untouched by anyone but alice
    _, body, _ = await api.call("GET", f"/v1/objects/pack/{OBJ}", OT, alice.session)
    assert body == b"alice's object"


async def login_again(api: Api, owner: Any) -> str:
    from tests.server.conftest import login

    return await login(api, owner.name, owner.password_auth)


async def test_device_cannot_delete_or_overwrite_even_with_crafted_requests(api: Api) -> None:
    alice = await create_owner(api)
    _, device = await enroll(api, alice)
    await put(api, alice.session, b"precious")
    oid = object_id(b"precious")
    # overwrite attempt: same name, other body -> hash mismatch, original intact
    status, body, _ = await api.call("PUT", f"/v1/objects/pack/{oid}", OT, device, data=b"ransom")
    assert status in (200, 400)
    for method in ("DELETE", "POST", "PATCH"):
        status, _, _ = await api.call(method, f"/v1/objects/pack/{oid}", OT, device)
        assert status in (403, 405)
    status, _, _ = await api.call(
        "DELETE",
        f"/v1/objects/pack/{oid}",
        OT,
        device,
        headers={"X-HTTP-Method-Override": "DELETE", "Authorization": f"Bearer {device}"},
    )
    assert status == 403
    _, body, _ = await api.call("GET", f"/v1/objects/pack/{oid}", OT, alice.session)
    assert body == b"precious"

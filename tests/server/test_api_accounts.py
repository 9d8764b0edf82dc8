from __future__ import annotations

import base64
import logging
import os

import pytest

from keep.protocol.kdf import DEFAULT_PARAMS
from keep.protocol.keys import AuthKey, Kek, MasterKey
from keep.protocol.keyslot import KeySlot, SlotKind
from keep.server.settings import Settings
from tests.server.conftest import FAST_KDF, Api, Owner, b64, create_owner, enroll, login, put

KDF = "/v1/accounts/{name}/kdf"


async def test_kdf_endpoint_returns_the_accounts_parameters(api: Api, owner: Owner) -> None:
    status, body, _ = await api.call("GET", "/v1/accounts/alice/kdf", KDF)
    assert status == 200
    assert body["kdf"] == FAST_KDF.to_json()


async def test_kdf_endpoint_does_not_reveal_unknown_accounts(api: Api, owner: Owner) -> None:
    s1, unknown, r1 = await api.call("GET", "/v1/accounts/nobody/kdf", KDF)
    s2, again, _ = await api.call("GET", "/v1/accounts/nobody/kdf", KDF)
    s3, other, r3 = await api.call("GET", "/v1/accounts/somebody/kdf", KDF)
    assert s1 == s2 == s3 == 200
    assert unknown == again  # deterministic: repeated queries do not tell fake from real
    assert unknown["salt"] != other["salt"]
    assert set(unknown) == {"kdf", "salt"}
    assert len(base64.b64decode(unknown["salt"])) == 32
    assert unknown["kdf"] == DEFAULT_PARAMS.to_json()
    assert r1.headers.keys() == r3.headers.keys()


async def test_duplicate_account_is_refused(api: Api, owner: Owner) -> None:
    with pytest.raises(AssertionError, match="account_exists"):
        await create_owner(api, "alice")


@pytest.mark.parametrize(
    "mutation",
    [
        {"name": "Has Spaces"},
        {"name": ""},
        {"salt": "not base64!"},
        {"salt": b64(b"short")},
        {"auth_verifier": b64(b"x" * 31)},
        {"kdf": {"algorithm": "scrypt"}},
        {"keyslots": {}},
        {"keyslots": {"password": {"kind": "password"}}},
    ],
)
async def test_malformed_account_creation_is_a_clear_400(api: Api, mutation: dict[str, object]) -> None:
    master = MasterKey(os.urandom(64))
    body = {
        "name": "bob",
        "kdf": FAST_KDF.to_json(),
        "salt": b64(os.urandom(32)),
        "auth_verifier": b64(os.urandom(32)),
        "keyslots": {
            "password": KeySlot.wrap(
                Kek(os.urandom(32)), master, "bob", SlotKind.PASSWORD, os.urandom(32)
            ).to_json()
        },
        **mutation,
    }
    status, reply, _ = await api.call("POST", "/v1/accounts", "/v1/accounts", json=body)
    assert (status, reply["code"]) == (400, "bad_request")
    assert "not base64!" not in reply["message"]


async def test_registration_can_be_closed(tmp_path: object, clock: object) -> None:
    from pathlib import Path

    from aiohttp.test_utils import TestClient, TestServer

    from keep.server.app import create_app
    from tests.server.conftest import Clock

    settings = Settings(data_dir=Path(str(tmp_path)) / "closed", registration="closed")
    async with TestClient(TestServer(create_app(settings, clock=Clock()), host="127.0.0.1")) as client:
        status, body, _ = await Api(client, Clock()).call(
            "POST", "/v1/accounts", "/v1/accounts", json={"name": "x"}
        )
        assert (status, body["code"]) == (403, "registration_closed")


async def test_login_wrong_password_and_unknown_account_answer_alike(api: Api, owner: Owner) -> None:
    replies = []
    for name in ("alice", "nobody"):
        status, body, _ = await api.call(
            "POST",
            "/v1/sessions",
            "/v1/sessions",
            json={"account": name, "method": "password", "auth": b64(os.urandom(32))},
        )
        replies.append((status, body))
    assert replies[0] == replies[1]
    assert (replies[0][0], replies[0][1]["code"]) == (401, "unauthorized")


async def test_recovery_login(api: Api, owner: Owner) -> None:
    token = await login(api, "alice", owner.recovery_auth, method="recovery")
    status, body, _ = await api.call("GET", "/v1/account", "/v1/account", token)
    assert (status, body["role"]) == (200, "owner")
    status, _, _ = await api.call(
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        json={"account": "alice", "method": "recovery", "auth": b64(owner.password_auth)},
    )
    assert status == 401


async def test_failed_logins_slow_down_but_never_lock_out(api: Api, owner: Owner) -> None:
    wrong = {"account": "alice", "method": "password", "auth": b64(os.urandom(32))}
    statuses = []
    for _ in range(8):
        status, _, resp = await api.call("POST", "/v1/sessions", "/v1/sessions", json=wrong)
        statuses.append(status)
    assert statuses[:5] == [401] * 5
    assert 429 in statuses
    assert int(resp.headers["Retry-After"]) >= 1
    # Even the right password waits while throttled...
    right = {**wrong, "auth": b64(owner.password_auth)}
    status, _, _ = await api.call("POST", "/v1/sessions", "/v1/sessions", json=right)
    assert status == 429
    # ...and succeeds once the delay has passed.
    api.clock.now += 1000
    status, _, _ = await api.call("POST", "/v1/sessions", "/v1/sessions", json=right)
    assert status == 201


async def test_sessions_expire_and_log_out(api: Api, owner: Owner) -> None:
    status, _, _ = await api.call("GET", "/v1/account", "/v1/account", owner.session)
    assert status == 200
    status, _, _ = await api.call("DELETE", "/v1/sessions/current", "/v1/sessions/current", owner.session)
    assert status == 204
    status, _, _ = await api.call("GET", "/v1/account", "/v1/account", owner.session)
    assert status == 401
    token = await login(api, "alice", owner.password_auth)
    api.clock.now += 3601
    status, body, _ = await api.call("GET", "/v1/account", "/v1/account", token)
    assert (status, body["code"]) == (401, "unauthorized")


async def test_password_replacement_is_atomic_and_takes_effect(api: Api, owner: Owner) -> None:
    new_auth = AuthKey(os.urandom(32))
    slot = KeySlot.wrap(Kek(os.urandom(32)), owner.master, "alice", SlotKind.PASSWORD, os.urandom(32))
    status, _, _ = await api.call(
        "PUT",
        "/v1/keyslots/password",
        "/v1/keyslots/password",
        owner.session,
        json={
            "kdf": FAST_KDF.to_json(),
            "salt": b64(os.urandom(32)),
            "auth_verifier": b64(new_auth.verifier()),
            "slot": slot.to_json(),
        },
    )
    assert status == 204
    status, _, _ = await api.call(
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        json={"account": "alice", "method": "password", "auth": b64(owner.password_auth)},
    )
    assert status == 401
    token = await login(api, "alice", new_auth.material)
    _, slots, _ = await api.call("GET", "/v1/keyslots", "/v1/keyslots", token)
    assert slots["keyslots"]["password"] == slot.to_json()
    assert "recovery" in slots["keyslots"]


async def test_export_lists_everything_but_bodies(api: Api, owner: Owner) -> None:
    await enroll(api, owner, "nas")
    await put(api, owner.session, b"x" * 10)
    status, body, _ = await api.call("GET", "/v1/account/export", "/v1/account/export", owner.session)
    assert status == 200
    assert body["account"]["name"] == "alice"
    assert [d["name"] for d in body["devices"]] == ["nas"]
    assert body["objects"][0]["size"] == 10
    assert body["usage"]["bytes"] == 10
    assert set(body["keyslots"]) == {"password", "recovery"}
    assert "token" not in str(body["devices"])


async def test_account_deletion_needs_reauthentication_and_removes_everything(
    api: Api, owner: Owner, settings: Settings
) -> None:
    await put(api, owner.session, b"object body")
    status, _, _ = await api.call(
        "DELETE",
        "/v1/account",
        "/v1/account",
        owner.session,
        json={"method": "password", "auth": b64(os.urandom(32))},
    )
    assert status == 401
    status, _, _ = await api.call(
        "DELETE",
        "/v1/account",
        "/v1/account",
        owner.session,
        json={"method": "password", "auth": b64(owner.password_auth)},
    )
    assert status == 204
    assert not (settings.data_dir / "objects" / owner.account_id).exists()
    status, _, _ = await api.call("GET", "/v1/account", "/v1/account", owner.session)
    assert status == 401
    status, _, _ = await api.call(
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        json={"account": "alice", "method": "password", "auth": b64(owner.password_auth)},
    )
    assert status == 401  # as for any name without an account
    # the name is free again
    await create_owner(api, "alice")


async def test_revoked_device_gets_a_clear_error(api: Api, owner: Owner) -> None:
    device_id, token = await enroll(api, owner)
    status, body, _ = await api.call("GET", "/v1/devices", "/v1/devices", token)
    assert [d["id"] for d in body["devices"]] == [device_id]
    status, _, _ = await api.call(
        "DELETE", f"/v1/devices/{device_id}", "/v1/devices/{device_id}", owner.session
    )
    assert status == 204
    status, body = await put(api, token, b"after revocation")
    assert (status, body["code"]) == (401, "device_revoked")
    status, body, _ = await api.call("GET", "/v1/devices", "/v1/devices", owner.session)
    assert body["devices"][0]["revoked"] == api.clock.now


async def test_locks_exclude_and_expire(api: Api, owner: Owner) -> None:
    _, device = await enroll(api, owner)
    locks = "/v1/locks"
    exclusive = {"mode": "exclusive", "ttl": 60}
    status, shared, _ = await api.call("POST", locks, locks, device, json={"mode": "shared", "ttl": 60})
    assert status == 201
    status, _, _ = await api.call("POST", locks, locks, device, json={"mode": "shared", "ttl": 60})
    assert status == 201  # shared locks coexist
    status, body, _ = await api.call("POST", locks, locks, owner.session, json=exclusive)
    assert (status, body["code"]) == (409, "locked")
    status, body, _ = await api.call(
        "PUT", f"{locks}/{shared['id']}", "/v1/locks/{lock_id}", device, json={"ttl": 120}
    )
    assert status == 200
    assert body["expires"] == api.clock.now + 120
    api.clock.now += 121  # crashed clients' leases expire on their own
    status, body, _ = await api.call("GET", locks, locks, owner.session)
    assert body["locks"] == []
    status, excl, _ = await api.call("POST", locks, locks, owner.session, json=exclusive)
    assert status == 201
    status, _, _ = await api.call("POST", locks, locks, device, json={"mode": "shared", "ttl": 60})
    assert status == 409
    status, _, _ = await api.call("DELETE", f"{locks}/{excl['id']}", "/v1/locks/{lock_id}", owner.session)
    assert status == 204
    status, _, _ = await api.call(
        "PUT", f"{locks}/{shared['id']}", "/v1/locks/{lock_id}", device, json={"ttl": 5}
    )
    assert status == 404  # expired leases cannot be renewed
    status, _, _ = await api.call("POST", locks, locks, device, json={"mode": "shared", "ttl": 10**6})
    assert status == 400


async def test_a_device_cannot_release_or_renew_another_devices_lease(api: Api, owner: Owner) -> None:
    _, one = await enroll(api, owner)
    _, two = await enroll(api, owner)
    locks = "/v1/locks"
    status, lease, _ = await api.call("POST", locks, locks, one, json={"mode": "shared", "ttl": 60})
    assert status == 201
    path, template = f"{locks}/{lease['id']}", "/v1/locks/{lock_id}"
    status, _, _ = await api.call("PUT", path, template, two, json={"ttl": 60})
    assert status == 404
    status, _, _ = await api.call("DELETE", path, template, two)
    assert status == 404  # else a device could unblock a prune against another's running backup
    status, _, _ = await api.call("PUT", path, template, one, json={"ttl": 60})
    assert status == 200
    status, body, _ = await api.call(
        "POST", locks, locks, owner.session, json={"mode": "exclusive", "ttl": 60}
    )
    assert status == 409
    assert "ends in 60 s" in body["message"]
    status, _, _ = await api.call("DELETE", path, template, owner.session)
    assert status == 204  # the owner may unlock


async def test_prune_lease_runs_beside_backups_and_is_owner_only(api: Api, owner: Owner) -> None:
    _, device = await enroll(api, owner)
    locks = "/v1/locks"
    status, _, _ = await api.call("POST", locks, locks, device, json={"mode": "shared", "ttl": 60})
    assert status == 201
    for mode in ("prune", "exclusive"):
        status, body, _ = await api.call("POST", locks, locks, device, json={"mode": mode, "ttl": 60})
        assert (status, body["code"]) == (403, "append_only")
    status, body, _ = await api.call("POST", locks, locks, owner.session, json={"mode": "prune", "ttl": 60})
    assert (status, body["mode"]) == (201, "prune")
    status, body, _ = await api.call("POST", locks, locks, owner.session, json={"mode": "prune", "ttl": 60})
    assert (status, body["code"]) == (409, "locked")
    status, body, _ = await api.call("POST", locks, locks, owner.session, json={"mode": "bogus", "ttl": 60})
    assert status == 400


async def test_logs_never_contain_secrets(api: Api, owner: Owner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, token = await enroll(api, owner)
    await put(api, token, b"secret content 42")
    await api.call(
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        json={"account": "alice", "method": "password", "auth": b64(b"\x01" * 32)},
    )
    text = caplog.text
    for secret in (
        owner.session,
        token,
        b64(owner.password_auth),
        b64(b"\x01" * 32),
        "secret content",
        "127.0.0.1",
    ):
        assert secret not in text


async def test_health_metrics_and_openapi(api: Api, owner: Owner) -> None:
    await put(api, owner.session, b"counted")
    status, body, _ = await api.call("GET", "/healthz", "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    resp = await api.client.get("/metrics")
    text = await resp.text()
    assert "keep_requests_total" in text
    assert "keep_object_bytes_in_total 7.0" in text
    assert "keep_request_seconds_bucket" in text
    assert owner.account_id not in text
    resp = await api.client.get("/v1/openapi.json")
    assert (await resp.json())["openapi"] == "3.1.0"

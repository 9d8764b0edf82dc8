"""Fixtures: the real keep-server app on 127.0.0.1 (in-process), with a pinned
clock, and an `Api` helper that validates every JSON response against the
OpenAPI document the server itself serves."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from keep.protocol.kdf import KdfParams
from keep.protocol.keys import AuthKey, Kek, MasterKey
from keep.protocol.keyslot import KeySlot, SlotKind
from keep.protocol.object_id import BLAKE3, HASH_HEADER, object_id
from keep.server.app import create_app
from keep.server.openapi import openapi_document
from keep.server.settings import Settings

# Fast parameters exist only in test fixtures; the server stores, never derives.
FAST_KDF = KdfParams(memory_kib=256, iterations=1, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000

    def __call__(self) -> int:
        return self.now


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _schema_for(method: str, template: str, status: int) -> dict[str, Any] | None:
    doc = openapi_document()
    op = doc["paths"].get(template, {}).get(method.lower())
    if op is None:  # undocumented method or path: only an Error body is acceptable
        return {"$ref": "#/components/schemas/Error", "components": doc["components"]}
    response = op["responses"].get(str(status), op["responses"]["default"])
    content = response.get("content", {}).get("application/json")
    if content is None:
        return None
    return {**content["schema"], "components": doc["components"]}


@dataclass
class Api:
    client: TestClient[Any, Any]
    clock: Clock
    checked: int = field(default=0)

    async def call(
        self, method: str, path: str, template: str, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, ClientResponse]:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        resp = await self.client.request(method, path, headers=headers, **kwargs)
        body: Any = await resp.read()
        if resp.content_type == "application/json" and method != "HEAD":
            body = await resp.json()
            schema = _schema_for(method, template, resp.status)
            if schema is not None:
                resolver_schema = {**schema}
                jsonschema.validate(body, resolver_schema)
                self.checked += 1
        return resp.status, body, resp


@dataclass
class Owner:
    name: str
    account_id: str
    session: str
    password_auth: bytes
    recovery_auth: bytes
    master: MasterKey


async def create_owner(api: Api, name: str = "alice") -> Owner:
    master = MasterKey(os.urandom(64))
    auth, rauth = AuthKey(os.urandom(32)), AuthKey(os.urandom(32))
    slot = KeySlot.wrap(Kek(os.urandom(32)), master, name, SlotKind.PASSWORD, os.urandom(32))
    rslot = KeySlot.wrap(Kek(os.urandom(32)), master, name, SlotKind.RECOVERY, os.urandom(32))
    status, body, _ = await api.call(
        "POST",
        "/v1/accounts",
        "/v1/accounts",
        json={
            "name": name,
            "kdf": FAST_KDF.to_json(),
            "salt": b64(os.urandom(32)),
            "auth_verifier": b64(auth.verifier()),
            "keyslots": {"password": slot.to_json(), "recovery": rslot.to_json()},
            "recovery_verifier": b64(rauth.verifier()),
        },
    )
    assert status == 201, body
    session = await login(api, name, auth.material)
    return Owner(name, body["id"], session, auth.material, rauth.material, master)


async def login(api: Api, name: str, auth: bytes, method: str = "password") -> str:
    status, body, _ = await api.call(
        "POST",
        "/v1/sessions",
        "/v1/sessions",
        json={"account": name, "method": method, "auth": b64(auth)},
    )
    assert status == 201, body
    return str(body["token"])


async def enroll(api: Api, owner: Owner, name: str = "device") -> tuple[str, str]:
    status, body, _ = await api.call("POST", "/v1/devices", "/v1/devices", owner.session, json={"name": name})
    assert status == 201, body
    return body["id"], body["token"]


async def put(api: Api, token: str, data: bytes, kind: str = "pack") -> tuple[int, Any]:
    """Upload `data` as the client does: named by BLAKE3, and saying so."""
    oid = object_id(data)
    status, body, _ = await api.call(
        "PUT",
        f"/v1/objects/{kind}/{oid}",
        "/v1/objects/{kind}/{object_id}",
        token,
        data=data,
        headers={HASH_HEADER: BLAKE3},
    )
    return status, body


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "server")


@pytest.fixture
async def api(settings: Settings, clock: Clock) -> AsyncIterator[Api]:
    app = create_app(settings, clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Api(client, clock)


@pytest.fixture
async def owner(api: Api) -> Owner:
    return await create_owner(api)

"""keep-checkin: registry API, every dyndns2 reply, the embedded DNS responder
over UDP and TCP, RFC 2136 pushes into a real BIND 9, and a bounded load of
many devices updating at once."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from aiohttp.test_utils import TestClient, TestServer

from keep.server.checkin.app import CHECKIN, CheckinSettings, create_app, publish_due
from keep.server.checkin.dns import Pusher, TsigKey, start_responder
from support.servers import free_port
from support.services import bind9

ZONE = "dyn.example.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def make_client(
    tmp_path: Path,
    clock: Clock,
    pusher: Pusher | None = None,
    registry_url: str | None = None,
    allow_private: bool = True,  # the tests' clients are on 127.0.0.1 and use documentation addresses
) -> TestClient[Any, Any]:
    settings = CheckinSettings(
        data_dir=tmp_path,
        registry_url=registry_url,
        zone=ZONE,
        min_interval=60,
        clock=clock,
        allow_private=allow_private,
    )
    client = TestClient(TestServer(create_app(settings, pusher)))
    await client.start_server()
    return client


# Registry backends, like keep-server's metadata: name -> URL of a fresh registry.
REGISTRIES: dict[str, Any] = {
    "sqlite": lambda tmp, _: None,
    "postgresql": lambda _, request: str(request.getfixturevalue("fresh_database")),
}


@pytest.fixture(params=sorted(REGISTRIES))
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[TestClient[Any, Any]]:
    c = await make_client(tmp_path, clock, registry_url=REGISTRIES[request.param](tmp_path, request))
    yield c
    await c.close()


async def claim(client: TestClient[Any, Any], name: str) -> str:
    r = await client.post("/v1/names", json={"name": name})
    assert r.status == 201, await r.text()
    return str((await r.json())["token"])


def basic(token: str, user: str = "router") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


async def nic(client: TestClient[Any, Any], headers: dict[str, str], **query: str) -> tuple[int, str]:
    r = await client.get("/nic/update", params=query, headers=headers)
    return r.status, (await r.text()).strip()


async def test_registry_api(client: TestClient[Any, Any], clock: Clock) -> None:
    token = await claim(client, "home")
    assert (await client.post("/v1/names", json={"name": "home"})).status == 409
    assert (await client.post("/v1/names", json={"name": "Not A Name!"})).status == 400
    r = await client.get("/v1/address")
    assert (await r.json())["address"] == "127.0.0.1"
    bearer = {"Authorization": f"Bearer {token}"}
    r = await client.put(
        "/v1/names/home/address", json={"ipv4": "auto", "ipv6": "2001:db8::7"}, headers=bearer
    )
    assert await r.json() == {"ipv4": "127.0.0.1", "ipv6": "2001:db8::7", "changed": True}
    bad = {"Authorization": "Bearer kc_wrong"}
    assert (await client.put("/v1/names/home/address", json={"ipv4": "auto"}, headers=bad)).status == 401
    clock.now += 61
    r = await client.put("/v1/names/home/address", json={"ipv6": ""}, headers=bearer)  # empty deletes
    assert await r.json() == {"ipv4": "127.0.0.1", "ipv6": None, "changed": True}
    assert (await client.delete("/v1/names/home", headers=bad)).status == 401
    assert (await client.delete("/v1/names/home", headers=bearer)).status == 204
    assert (await client.put("/v1/names/home/address", json={"ipv4": "auto"}, headers=bearer)).status == 401


async def test_dyndns2_replies(client: TestClient[Any, Any], clock: Clock) -> None:
    token = await claim(client, "router")
    host = f"router.{ZONE}"
    assert await nic(client, {}, hostname=host) == (401, "badauth")
    assert await nic(client, basic("kc_wrong"), hostname=host) == (200, "badauth")
    assert await nic(client, basic(token), hostname=f"nobody.{ZONE}") == (200, "badauth")  # not "nohost"
    assert await nic(client, basic(token), hostname="router.elsewhere.example") == (200, "notfqdn")
    assert await nic(client, basic(token)) == (200, "notfqdn")
    assert await nic(client, basic(token), hostname=host, myip="198.51.100.4") == (200, "good 198.51.100.4")
    clock.now += 61
    assert await nic(client, basic(token), hostname=host, myip="198.51.100.4") == (200, "nochg 198.51.100.4")
    # Too soon: accepted, answered "good", published when the interval ends —
    # a standard client neither gives up (inadyn exits on 429) nor stays silent.
    checkin = client.app[CHECKIN]
    assert await nic(client, basic(token), hostname=host, myip="198.51.100.5") == (200, "good 198.51.100.5")
    assert await nic(client, basic(token), hostname=host, myip="198.51.100.6") == (200, "good 198.51.100.6")
    assert (await checkin.registry.lookup("router")).ipv4 == "198.51.100.4"
    assert await publish_due(checkin) == 0  # not yet
    clock.now += 60
    assert await publish_due(checkin) == 1
    assert (await checkin.registry.lookup("router")).ipv4 == "198.51.100.6"
    # Too soon and back to what is published: the queued change is dropped.
    assert await nic(client, basic(token), hostname=host, myip="198.51.100.7") == (200, "good 198.51.100.7")
    assert await nic(client, basic(token), hostname=host, myip="198.51.100.6") == (200, "good 198.51.100.6")
    clock.now += 60
    assert await publish_due(checkin) == 0
    # The JSON API (the device agent, which honours Retry-After) is still told to wait.
    bearer = {"Authorization": f"Bearer {token}"}
    r = await client.put("/v1/names/router/address", json={"ipv4": "198.51.100.4"}, headers=bearer)
    assert r.status == 200
    r = await client.put("/v1/names/router/address", json={"ipv4": "198.51.100.9"}, headers=bearer)
    assert (r.status, int(r.headers["Retry-After"])) == (429, 60)
    clock.now += 61
    status, text = await nic(client, basic(token), hostname=host, myipv6="2001:db8::1")  # AAAA alone
    assert (status, text) == (200, "good 198.51.100.4 2001:db8::1")
    clock.now += 61
    assert await nic(client, basic(token), hostname=host, myip="") == (
        200,
        "good 127.0.0.1 2001:db8::1",
    )  # source
    clock.now += 61
    assert await nic(client, basic(token), hostname=host, myip="2001:db8::5") == (
        200,
        "good 127.0.0.1 2001:db8::5",
    )
    clock.now += 61
    both = "198.51.100.7,2001:db8::6"
    assert await nic(client, basic(token), hostname=host, myip=both) == (200, "good 198.51.100.7 2001:db8::6")
    clock.now += 61
    assert await nic(client, basic(token), hostname=host) == (200, "good 127.0.0.1 2001:db8::6")  # source
    clock.now += 61
    assert await nic(client, basic(token), hostname=host, myip="not-an-ip") == (200, "dnserr")

    async def broken(*_: object) -> None:
        raise RuntimeError("disk on fire")

    client.app[CHECKIN].registry.set_addresses = broken
    clock.now += 61
    assert await nic(client, basic(token), hostname=host, myip="203.0.113.9") == (200, "911")


async def query(port: int, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=5)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=5)


def addresses(reply: dns.message.Message) -> set[str]:
    return {r.to_text() for rrset in reply.answer for r in rrset}


async def test_embedded_dns_answers_over_udp_and_tcp(client: TestClient[Any, Any]) -> None:
    token = await claim(client, "nas")
    bearer = {"Authorization": f"Bearer {token}"}
    await client.put(
        "/v1/names/nas/address", json={"ipv4": "192.0.2.10", "ipv6": "2001:db8::10"}, headers=bearer
    )
    port = free_port()
    responder = await start_responder(client.app[CHECKIN].zone, "127.0.0.1", port)
    try:
        for tcp in (False, True):
            a = await query(port, f"nas.{ZONE}", "A", tcp)
            assert addresses(a) == {"192.0.2.10"}
            assert a.flags & dns.flags.AA
            assert not a.flags & dns.flags.RA  # never recursion
            assert addresses(await query(port, f"NAS.{ZONE}", "AAAA", tcp)) == {"2001:db8::10"}
            soa = await query(port, ZONE, "SOA", tcp)
            assert soa.answer[0].rdtype == dns.rdatatype.SOA
            assert addresses(await query(port, ZONE, "NS", tcp)) == {f"ns1.{ZONE}."}
            missing = await query(port, f"ghost.{ZONE}", "A", tcp)
            assert missing.rcode() == dns.rcode.NXDOMAIN
            assert missing.authority[0].rdtype == dns.rdatatype.SOA
            nodata = await query(port, f"nas.{ZONE}", "MX", tcp)
            assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
            outside = await query(port, "example.com", "A", tcp)
            assert outside.rcode() == dns.rcode.REFUSED
            deep = await query(port, f"a.nas.{ZONE}", "A", tcp)  # inside the zone: does not exist
            assert deep.rcode() == dns.rcode.NXDOMAIN
            assert deep.authority[0].rdtype == dns.rdatatype.SOA
    finally:
        responder.close()


async def test_rfc2136_push_into_bind9(tmp_path: Path, clock: Clock) -> None:
    with bind9(ZONE) as (port, key_file):
        pusher = Pusher(ZONE, "127.0.0.1", port, TsigKey.from_file(key_file))
        client = await make_client(tmp_path, clock, pusher)
        try:
            token = await claim(client, "cabin")
            bearer = {"Authorization": f"Bearer {token}"}
            r = await client.put(
                "/v1/names/cabin/address", json={"ipv4": "203.0.113.5", "ipv6": "2001:db8::5"}, headers=bearer
            )
            assert r.status == 200
            for tcp in (False, True):
                assert addresses(await query(port, f"cabin.{ZONE}", "A", tcp)) == {"203.0.113.5"}
                assert addresses(await query(port, f"cabin.{ZONE}", "AAAA", tcp)) == {"2001:db8::5"}
            clock.now += 61
            r = await client.put("/v1/names/cabin/address", json={"ipv6": ""}, headers=bearer)
            assert r.status == 200
            assert addresses(await query(port, f"cabin.{ZONE}", "AAAA")) == set()
            assert (await client.delete("/v1/names/cabin", headers=bearer)).status == 204
            assert (await query(port, f"cabin.{ZONE}", "A")).rcode() == dns.rcode.NXDOMAIN
            # A wrong key is refused by BIND, and the device is told.
            wrong = TsigKey("keep-update", "hmac-sha256", base64.b64encode(b"x" * 32).decode())
            client.app[CHECKIN].pusher = Pusher(ZONE, "127.0.0.1", port, wrong)
            token = await claim(client, "intruder")
            r = await client.put(
                "/v1/names/intruder/address",
                json={"ipv4": "203.0.113.6"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status == 502
            assert (await query(port, f"intruder.{ZONE}", "A")).rcode() == dns.rcode.NXDOMAIN
        finally:
            await client.close()


async def test_many_devices_update_at_once(client: TestClient[Any, Any]) -> None:
    """A bounded load: 200 devices claim and update concurrently."""
    count = 200
    tokens = await asyncio.gather(*(claim(client, f"d{i}") for i in range(count)))

    async def update(i: int, token: str) -> int:
        r = await client.put(
            f"/v1/names/d{i}/address",
            json={"ipv4": f"198.18.{i // 250}.{i % 250 + 1}"},
            headers={"Authorization": f"Bearer {token}"},
        )
        return r.status

    statuses = await asyncio.wait_for(asyncio.gather(*(update(i, t) for i, t in enumerate(tokens))), 60)
    assert statuses == [200] * count
    port = free_port()
    responder = await start_responder(client.app[CHECKIN].zone, "127.0.0.1", port)
    try:
        answers = await asyncio.gather(*(query(port, f"d{i}.{ZONE}", "A") for i in range(0, count, 7)))
        assert [addresses(a) for a in answers] == [
            {f"198.18.{i // 250}.{i % 250 + 1}"} for i in range(0, count, 7)
        ]
    finally:
        responder.close()


def test_release_tool_cli(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("keep-checkin"))
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    subprocess.run([exe, "release", "init", "--repo", str(repo), "--keys", str(keys)], check=True)
    artifact = tmp_path / "keep-1.2.3.tar.gz"
    artifact.write_bytes(b"x")
    subprocess.run(
        [
            exe,
            "release",
            "publish",
            "--repo",
            str(repo),
            "--keys",
            str(keys),
            "--version",
            "1.2.3",
            "--artifact",
            str(artifact),
        ],
        check=True,
    )
    subprocess.run([exe, "release", "refresh", "--repo", str(repo), "--keys", str(keys)], check=True)
    assert json.loads((repo / "targets" / "latest.json").read_text())["version"] == "1.2.3"
    assert {p.name for p in (repo / "metadata").iterdir()} == {
        "1.root.json",
        "targets.json",
        "snapshot.json",
        "timestamp.json",
    }
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in keys.glob("*.pem"))
    assert not list(repo.rglob("*.pem"))  # private keys never inside the served repository


UNUSABLE = [
    "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
    "255.255.255.255",
    "224.0.0.1",
    "240.0.0.1",
    "169.254.1.1",
    "127.0.0.1",
    "::",
    "ff02::1",
    "fe80::1",
    "::1",
    "::ffff:192.0.2.1",
]
PRIVATE = ["10.0.0.5", "192.168.1.20", "198.51.100.4", "fd00::5", "2001:db8::5"]


@pytest.mark.parametrize("allow_private", [False, True])
async def test_only_usable_addresses_are_published(tmp_path: Path, clock: Clock, allow_private: bool) -> None:
    client = await make_client(tmp_path, clock, allow_private=allow_private)
    try:
        token = await claim(client, "router")
        host = f"router.{ZONE}"
        bearer = {"Authorization": f"Bearer {token}"}
        refused = UNUSABLE[:] if allow_private else UNUSABLE + PRIVATE
        if allow_private:
            refused.remove("127.0.0.1")
            refused.remove("::1")
        for address in refused:
            clock.now += 61
            assert await nic(client, basic(token), hostname=host, myip=address) == (200, "dnserr"), address
            family = "ipv6" if ":" in address else "ipv4"
            r = await client.put("/v1/names/router/address", json={family: address}, headers=bearer)
            assert r.status == 400, address
            assert (await r.json())["code"] in ("bad_address", "bad_request")
            assert "usable" in (await r.json())["message"] or "IPv4-mapped" in (await r.json())["message"]
        for address in ["93.184.216.34", "2a00:1450:4001::5"] + (PRIVATE if allow_private else []):
            clock.now += 61
            status, text = await nic(client, basic(token), hostname=host, myip=address)
            assert (status, text.split()[0]) == (200, "good"), address
        record = await client.app[CHECKIN].registry.lookup("router")
        assert record is not None
        assert not any(a in (record.ipv4, record.ipv6) for a in UNUSABLE)
    finally:
        await client.close()


async def test_unknown_names_and_wrong_tokens_are_one_answer(client: TestClient[Any, Any]) -> None:
    token = await claim(client, "router")
    replies = {
        await nic(client, basic(token), hostname=f"nobody.{ZONE}"),
        await nic(client, basic("kc_wrong"), hostname=f"router.{ZONE}"),
        await nic(client, basic("kc_wrong"), hostname=f"nobody.{ZONE}"),
    }
    assert replies == {(200, "badauth")}

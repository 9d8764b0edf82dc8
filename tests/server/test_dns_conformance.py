"""The embedded DNS responder as `dig` (Debian's bind9-dnsutils) sees it, and
as a burst of queries finds it: NXDOMAIN with the SOA for deeper names, the
name server's own addresses and glue, BADVERS for EDNS version 1, REFUSED for
zone transfers, a 1232-byte EDNS payload, silence towards responses, and no
drops when thousands of queries arrive at once."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import pytest

from support.servers import checkin_server, free_port
from tests.conftest import require_tool

ZONE = "dyn.example.test"


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A keep-checkin process with its DNS responder on a free port, one name
    registered (nas → 192.0.2.10, 2001:db8::10); yields the DNS port."""
    port = free_port()
    data = tmp_path_factory.mktemp("checkin") / "data"
    extra = ["--zone", ZONE, "--dns-listen", f"127.0.0.1:{port}", "--allow-private-addresses"]
    extra += ["--ns-address", "192.0.2.53", "--ns-address", "2001:db8::53"]
    with checkin_server(data, *extra) as (url, _):
        token = _call(url, "POST", "/v1/names", {"name": "nas"})["token"]
        body = {"ipv4": "192.0.2.10", "ipv6": "2001:db8::10"}
        _call(url, "PUT", "/v1/names/nas/address", body, {"Authorization": f"Bearer {token}"})
        yield port


def _call(url: str, method: str, path: str, body: object, headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        conn.request(method, path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
        reply = conn.getresponse()
        assert reply.status in (200, 201), reply.read()
        return json.loads(reply.read())
    finally:
        conn.close()


def dig(port: int, *args: str) -> str:
    result = subprocess.run(
        [require_tool("dig"), "@127.0.0.1", "-p", str(port), "+norec", "+time=3", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


def section(output: str, name: str) -> list[str]:
    """The records of one section of dig's output (";; ANSWER SECTION:" …)."""
    lines = output.splitlines()
    try:
        start = lines.index(f";; {name} SECTION:") + 1
    except ValueError:
        return []
    out = []
    for line in lines[start:]:
        if not line.strip():
            break
        out.append(" ".join(line.split()))
    return out


def test_names_inside_the_zone(responder: int) -> None:
    out = dig(responder, f"nas.{ZONE}", "A")
    assert "status: NOERROR" in out
    assert section(out, "ANSWER") == [f"nas.{ZONE}. 60 IN A 192.0.2.10"]
    assert "flags: qr aa;" in out  # authoritative, no recursion
    deeper = dig(responder, f"a.nas.{ZONE}", "A")
    assert "status: NXDOMAIN" in deeper  # was REFUSED
    assert section(deeper, "AUTHORITY")[0].startswith(f"{ZONE}. 60 IN SOA ns1.{ZONE}.")
    assert "status: REFUSED" in dig(responder, "example.com", "A")


def test_the_name_server_has_addresses_and_glue(responder: int) -> None:
    assert section(dig(responder, f"ns1.{ZONE}", "A"), "ANSWER") == [f"ns1.{ZONE}. 60 IN A 192.0.2.53"]
    assert section(dig(responder, f"ns1.{ZONE}", "AAAA"), "ANSWER") == [
        f"ns1.{ZONE}. 60 IN AAAA 2001:db8::53"
    ]
    out = dig(responder, ZONE, "NS")
    assert section(out, "ANSWER") == [f"{ZONE}. 60 IN NS ns1.{ZONE}."]
    assert sorted(section(out, "ADDITIONAL")) == sorted(
        [f"ns1.{ZONE}. 60 IN A 192.0.2.53", f"ns1.{ZONE}. 60 IN AAAA 2001:db8::53"]
    )


def test_edns_transfers_and_payload(responder: int) -> None:
    out = dig(responder, ZONE, "SOA")
    assert "; EDNS: version: 0, flags:; udp: 1232" in out  # was 8192
    assert "status: BADVERS" in dig(responder, "+edns=1", "+noednsneg", ZONE, "SOA")
    assert "status: NOERROR" in dig(responder, "+edns=0", ZONE, "SOA")
    axfr = dig(responder, ZONE, "AXFR")
    assert "Transfer failed" in axfr
    assert "SOA" not in section(axfr, "ANSWER")
    ixfr = dig(responder, f"IXFR={1}", ZONE)
    assert "Transfer failed" in ixfr or "status: REFUSED" in ixfr


def test_responses_get_no_reply(responder: int) -> None:
    reply = dns.message.make_response(dns.message.make_query(f"nas.{ZONE}", "A"))
    assert reply.flags & dns.flags.QR
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(reply.to_wire(), ("127.0.0.1", responder))
        with pytest.raises(TimeoutError):
            sock.recvfrom(4096)  # nothing comes back: no reflection, no loops
    assert "status: NOERROR" in dig(responder, f"nas.{ZONE}", "A")  # and it still answers queries


def test_a_burst_of_queries_on_one_socket_is_answered(responder: int) -> None:
    count = 2000
    queries = []
    for i in range(count):
        q = dns.message.make_query(f"nas.{ZONE}", "A")
        q.id = i
        queries.append(q.to_wire())
    answered: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.connect(("127.0.0.1", responder))
        for wire in queries:  # all at once, as a resolver under load or a flood would
            sock.send(wire)
        sock.settimeout(0.5)
        deadline = time.monotonic() + 15
        while len(answered) < count and time.monotonic() < deadline:
            try:
                answered.add(dns.message.from_wire(sock.recv(4096)).id)
            except TimeoutError:
                break
    assert len(answered) >= 0.95 * count, f"{len(answered)} of {count} answered"


def test_dig_is_the_one_from_debian(responder: int) -> None:
    assert "DiG 9." in dig(responder, "-v")
    assert Path(require_tool("dig")).exists()

"""The device's check-in against a real keep-checkin process (behind a counting
proxy): off means zero connections, DDNS etiquette, and TUF update checks
that catch expired, rolled-back, badly signed, tampered and mixed metadata."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from keep.server.checkin import updates
from support.byte_proxy import ByteProxy, byte_proxy
from support.servers import checkin_server, free_port
from support.services import nginx
from tests.client.conftest import KEEP
from tests.deploy.test_tls_and_notify import make_ca

ZONE = "dyn.example.test"


@dataclass
class Service:
    url: str  # through the proxy
    proxy: ByteProxy
    repo: Path
    keys: Path
    dns_port: int


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    updates.init(repo, keys)
    artifact = tmp_path / "keep-99.0.0.tar.gz"
    artifact.write_bytes(b"release bytes")
    updates.release(repo, keys, "99.0.0", [artifact])
    dns_port = free_port()
    with checkin_server(
        tmp_path / "checkin",
        "--updates",
        str(repo),
        "--zone",
        ZONE,
        "--dns-listen",
        f"127.0.0.1:{dns_port}",
        "--min-update-interval",
        "0",
        "--allow-private-addresses",  # the device's address here is 127.0.0.1
    ) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with byte_proxy(port) as proxy:
            yield Service(f"http://127.0.0.1:{proxy.port}", proxy, repo, keys, dns_port)


class Agent:
    def __init__(self, home: Path, service: Service, table_name: str = "checkin", **settings: Any) -> None:
        self.home = home
        self.config = home / "keep.toml"
        home.mkdir(parents=True, exist_ok=True)
        table = {
            "url": service.url,
            "name": "cottage",
            "update_root": str(service.repo / "metadata" / "1.root.json"),
        }
        table.update(settings)
        body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
        self.config.write_text(f"# my device\n[{table_name}]\n{body}\n")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KEEP_HOME": str(self.home), "KEEP_CONFIG": str(self.config)}
        return subprocess.run(
            [KEEP, "--json", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def checkin(self) -> tuple[int, dict[str, str]]:
        result = self.run("checkin", "run", "--now")
        return result.returncode, json.loads(result.stdout) if result.stdout else {"stderr": result.stderr}


def lookup(service: Service, name: str) -> dns.message.Message:
    return dns.query.udp(
        dns.message.make_query(f"{name}.{ZONE}", "A"), "127.0.0.1", port=service.dns_port, timeout=5
    )


def test_off_means_no_connection_at_all(service: Service, tmp_path: Path) -> None:
    agent = Agent(tmp_path / "device", service, ddns=False, updates=False)
    service.proxy.reset()
    code, out = agent.checkin()
    assert (code, out) == (0, {"ddns": "off", "updates": "off"})
    assert service.proxy.connections == 0
    agent.run("checkin", "enable", "updates")
    assert "# my device" in agent.config.read_text()  # the owner's comments survive
    code, out = agent.checkin()
    assert out["ddns"] == "off"
    assert out["updates"] == "update available: 99.0.0 (installed 0.1.0)"
    assert service.proxy.connections > 0


def test_ddns_updates_only_on_change_and_switching_off_deletes_once(service: Service, tmp_path: Path) -> None:
    agent = Agent(tmp_path / "device", service, updates=False)
    code, out = agent.checkin()
    assert (code, out["ddns"]) == (0, f"updated cottage.{ZONE} -> 127.0.0.1")
    assert lookup(service, "cottage").answer[0][0].to_text() == "127.0.0.1"
    service.proxy.reset()
    code, out = agent.checkin()
    assert out["ddns"] == "unchanged (127.0.0.1)"
    assert service.proxy.connections == 1  # only "which address do I come from?"
    state = json.loads((agent.home / "checkin.json").read_text())
    status = json.loads(agent.run("checkin", "status").stdout)
    assert status["ddns"]["enabled"] is True
    assert state["ddns"]["token"] not in json.dumps(status)  # the token is never shown
    service.proxy.reset()
    assert agent.run("checkin", "disable", "ddns").returncode == 0
    assert service.proxy.connections == 1  # the one request to delete the record
    assert lookup(service, "cottage").rcode() == dns.rcode.NXDOMAIN
    service.proxy.reset()
    assert agent.checkin()[1]["ddns"] == "off"
    assert service.proxy.connections == 0


def test_the_names_before_0_2_keep_working(service: Service, tmp_path: Path) -> None:
    """A device set up before the check-in had one name: keep.toml says
    [phonehome], the state (with the DDNS token) is phonehome.json and the
    timer runs `keep agent checkin`. It keeps its name and its token, and the
    first switch written moves the table to [checkin], comments kept."""
    agent = Agent(tmp_path / "device", service, table_name="phonehome", updates=False)
    code, out = agent.checkin()
    assert (code, out["ddns"]) == (0, f"updated cottage.{ZONE} -> 127.0.0.1")
    (agent.home / "checkin.json").rename(agent.home / "phonehome.json")
    service.proxy.reset()
    old_timer = agent.run("agent", "checkin")
    assert (old_timer.returncode, json.loads(old_timer.stdout)["ddns"]) == (0, "unchanged (127.0.0.1)")
    assert service.proxy.connections == 1  # no new claim: the token was kept
    assert not (agent.home / "phonehome.json").exists()
    assert agent.run("phonehome", "enable", "updates").returncode == 0
    config = agent.config.read_text()
    assert ("[checkin]" in config, "[phonehome]" in config, "# my device" in config) == (True, False, True)
    assert json.loads(agent.run("checkin", "status").stdout)["updates"]["enabled"] is True
    listed = agent.run("--help").stdout
    assert ("checkin" in listed, "phonehome" in listed, "agent" in listed) == (True, False, False)


def test_a_taken_name_stops_ddns_with_a_clear_reason(service: Service, tmp_path: Path) -> None:
    first = Agent(tmp_path / "one", service, updates=False)
    assert first.checkin()[0] == 0
    second = Agent(tmp_path / "two", service, updates=False)
    assert second.checkin()[1]["ddns"] == "stopped: the name cottage is taken"
    service.proxy.reset()
    assert "stopped" in second.checkin()[1]["ddns"]
    assert service.proxy.connections == 0  # stopped means no more requests


def refused(agent: Agent, needle: str) -> None:
    code, out = agent.checkin()
    assert code == 15, out
    assert needle in agent.run("checkin", "status").stdout


def test_update_check_catches_attacks(service: Service, tmp_path: Path) -> None:
    meta = service.repo / "metadata"
    agent = Agent(tmp_path / "device", service, ddns=False)
    assert agent.checkin()[1]["updates"].startswith("update available: 99.0.0")

    # Tampered release: latest.json no longer matches its signed hash.
    latest = service.repo / "targets" / "latest.json"
    original = latest.read_bytes()
    latest.write_bytes(original.replace(b"99.0.0", b"99.9.9"))
    shutil.rmtree(agent.home / "updates" / "targets")
    refused(agent, "does not match its signed hash")
    latest.write_bytes(original)

    # Rollback: an older timestamp after a newer one was seen.
    old_timestamp = (meta / "timestamp.json").read_bytes()
    updates.refresh(service.repo, service.keys)
    assert agent.checkin()[0] == 0
    (meta / "timestamp.json").write_bytes(old_timestamp)
    refused(agent, "rolled back")

    # Mix and match: a snapshot from another release than the timestamp names.
    updates.refresh(service.repo, service.keys)
    assert agent.checkin()[0] == 0
    old_snapshot = (meta / "snapshot.json").read_bytes()
    artifact = tmp_path / "keep-99.0.1.tar.gz"
    artifact.write_bytes(b"newer release")
    updates.release(service.repo, service.keys, "99.0.1", [artifact])
    (meta / "snapshot.json").write_bytes(old_snapshot)
    refused(agent, "REFUSED")

    # Bad signature: a timestamp whose signature does not verify.
    updates.release(service.repo, service.keys, "99.0.2", [artifact])
    signed = json.loads((meta / "timestamp.json").read_text())
    sig = signed["signatures"][0]["sig"]
    signed["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    (meta / "timestamp.json").write_text(json.dumps(signed))
    refused(agent, "not properly signed")

    # Freeze: a correctly signed timestamp that has expired.
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
    updates.refresh(service.repo, service.keys, now=past)
    fresh = Agent(tmp_path / "fresh", service, ddns=False)
    refused(fresh, "expired")

    # Healed: a properly re-signed repository is accepted again.
    updates.refresh(service.repo, service.keys)
    assert fresh.checkin()[1]["updates"].startswith("update available: 99.0.2")


def test_every_request_carries_the_fixed_user_agent_the_status_shows(
    service: Service, tmp_path: Path
) -> None:
    """No versions leave the device: one User-Agent, "keep", for the DNS
    pointer and for python-tuf's downloads — exactly what status says."""
    agent = Agent(tmp_path / "device", service)
    service.proxy.reset()
    code, out = agent.checkin()
    assert code == 0, out
    agents = re.findall(rb"\r\nuser-agent: ([^\r]*)\r\n", bytes(service.proxy.sent), re.IGNORECASE)
    requests = re.findall(rb"(?:GET|PUT|POST|DELETE) /\S*", bytes(service.proxy.sent))
    assert any(b"/updates/metadata/" in r for r in requests)
    assert any(b"/v1/" in r for r in requests)
    assert len(agents) == len(requests) > 0
    assert set(agents) == {b"keep"}
    status = json.loads(agent.run("checkin", "status").stdout)
    assert "User-Agent 'keep'" in status["updates"]["sends"]


def test_the_check_in_speaks_tls_through_the_devices_one_transport(service: Service, tmp_path: Path) -> None:
    """keep-checkin behind a real nginx with a private CA: with the CA that
    keep.toml gives ([server] ca_file, as for keep-server) both check-ins
    work; without it neither sends anything, and each says in its result
    what to do (the same words as for keep-server)."""
    ca_file, chain, key = make_ca(tmp_path)
    port = free_port()
    upstream = service.url  # the counting proxy in front of keep-checkin
    site = (
        f"server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {chain}; ssl_certificate_key {key};\n"
        f"  location / {{ proxy_pass {upstream}; }} }}\n"
    )
    with nginx(tmp_path / "nginx", site, port) as front:
        trusting = Agent(tmp_path / "trusting", service, url=front)
        text = trusting.config.read_text()
        trusting.config.write_text(f'[server]\nca_file = "{ca_file}"\n{text}')
        code, out = trusting.checkin()
        assert (code, out) == (
            0,
            {
                "ddns": f"updated cottage.{ZONE} -> 127.0.0.1",
                "updates": "update available: 99.0.0 (installed 0.1.0)",
            },
        )
        service.proxy.reset()
        stranger = Agent(tmp_path / "stranger", service, url=front, name="attic")
        code, out = stranger.checkin()
        assert code == 0
        for result in out.values():
            assert "the TLS certificate of https://127.0.0.1" in result, out
            assert "could not be verified" in result
            assert "--ca-file or KEEP_CA_FILE" in result
        assert service.proxy.connections == 0  # nothing got past TLS


def test_update_downloads_come_from_below_the_check_in_url_only() -> None:
    """python-tuf builds download URLs from metadata it has not verified yet:
    the fetcher refuses any that leaves the configured service, before
    connecting (port 9 has nothing listening)."""
    from tuf.api.exceptions import DownloadError

    from keep.client.checkin.updates import _fetcher
    from keep.client.transport import Transport

    fetcher = _fetcher(Transport("http://127.0.0.1:9"))
    for url in ("http://127.0.0.1:90/updates/metadata/2.root.json", "https://evil.example/updates/x"):
        with pytest.raises(DownloadError, match="not below the check-in URL"):
            fetcher.fetch(url)
    with pytest.raises(DownloadError, match="connection refused"):
        fetcher.fetch("http://127.0.0.1:9/updates/metadata/2.root.json")


def test_the_last_request_shown_is_the_one_that_went_over_the_wire(service: Service, tmp_path: Path) -> None:
    """`keep checkin status` (and the admin page, from the same record) show
    the last request byte for byte as the counting proxy saw it leave —
    request line, every header, body — except the device's token."""
    agent = Agent(tmp_path / "device", service, updates=False)
    assert agent.checkin()[1]["ddns"] == f"updated cottage.{ZONE} -> 127.0.0.1"
    wire = bytes(service.proxy.sent)
    last = wire[wire.rindex(b"PUT /v1/names/cottage/address") :]
    token = json.loads((agent.home / "checkin.json").read_text())["ddns"]["token"]
    assert token.encode() in last
    status = json.loads(agent.run("checkin", "status").stdout)
    shown = status["ddns"]["last_request"]
    assert shown.encode("latin-1") == last.replace(token.encode(), b"(this device's token, not shown)")
    assert token not in json.dumps(status)
    assert shown.startswith("PUT /v1/names/cottage/address HTTP/1.1\r\nHost: 127.0.0.1:")
    assert "\r\nUser-Agent: keep\r\n" in shown
    assert shown.endswith('\r\n\r\n{"ipv4": "auto"}')
    assert status["updates"]["last_request"] is None  # switched off: nothing sent, nothing shown

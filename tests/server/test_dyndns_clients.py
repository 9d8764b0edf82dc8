"""keep-checkin with the clients owners already run: Debian's ddclient 3.10
and inadyn 2.10, each started as an ordinary process with a generated config
pointing at a keep-checkin on 127.0.0.1, and Debian's dig reading the result
from keep-checkin's DNS responder. IPv4, IPv6, an update that comes too early
(published when the interval ends, the client neither failing nor giving up),
and ddclient's empty `myip=` (the source address)."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.servers import checkin_server, free_port
from tests.conftest import require_tool

ZONE = "dyn.example.test"
INTERVAL = 3  # --min-update-interval, seconds: short so the tests are


@dataclass
class Service:
    http: str  # host:port
    dns_port: int
    token: str
    host: str  # the claimed name's FQDN

    def dig(self, rdtype: str) -> list[str]:
        out = subprocess.run(
            [require_tool("dig"), "@127.0.0.1", "-p", str(self.dns_port), "+short", self.host, rdtype],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return out.split()

    def wait_for(self, rdtype: str, address: str, seconds: float = INTERVAL + 8) -> None:
        deadline = time.monotonic() + seconds
        while self.dig(rdtype) != [address]:
            assert time.monotonic() < deadline, f"{self.host} {rdtype} is {self.dig(rdtype)}, not {address}"
            time.sleep(0.3)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    dns_port = free_port()
    extra = ["--zone", ZONE, "--dns-listen", f"127.0.0.1:{dns_port}"]
    extra += ["--min-update-interval", str(INTERVAL), "--allow-private-addresses"]
    with checkin_server(tmp_path / "checkin", *extra) as (url, _):
        http_host = url.removeprefix("http://")
        conn = http.client.HTTPConnection(http_host, timeout=10)
        conn.request(
            "POST", "/v1/names", json.dumps({"name": "router"}), {"Content-Type": "application/json"}
        )
        token = json.loads(conn.getresponse().read())["token"]
        conn.close()
        yield Service(http_host, dns_port, token, f"router.{ZONE}")


def ddclient(service: Service, tmp_path: Path, use: str) -> str:
    """One ddclient run (no daemon) with `use` as its address strategy."""
    conf = tmp_path / "ddclient.conf"
    conf.write_text(
        "daemon=0\nsyslog=no\nssl=no\nmin-interval=0\nprotocol=dyndns2\n"
        f"{use}\nserver={service.http}\nlogin=router\npassword='{service.token}'\n{service.host}\n"
    )
    conf.chmod(0o600)
    command = [require_tool("ddclient"), "-file", str(conf), "-cache", str(tmp_path / "ddclient.cache")]
    result = subprocess.run(
        [*command, "-verbose", "-noquiet", "-foreground", "-daemon=0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "SUCCESS:" in said, said
    assert "FAILED:" not in said, said
    return said


def inadyn(service: Service, tmp_path: Path, address: str) -> str:
    """One inadyn run (`-1`: update once and exit) whose public address is `address`."""
    conf = tmp_path / "inadyn.conf"
    conf.write_text(
        f"""period = 60
allow-ipv6 = true
custom keep {{
    ssl = false
    username = router
    password = "{service.token}"
    ddns-server = "{service.http}"
    ddns-path = "/nic/update?hostname=%h&myip=%i"
    hostname = "{service.host}"
    checkip-command = "/bin/echo {address}"
}}
"""
    )
    conf.chmod(0o600)
    command = [require_tool("inadyn"), "-1", "--foreground", "-f", str(conf)]
    command += ["--cache-dir", str(tmp_path / "cache"), "-l", "info", "-P", str(tmp_path / "inadyn.pid")]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = result.stdout + result.stderr
    assert result.returncode == 0, said  # a 429 "abuse" made inadyn 2.10 exit for good
    assert f"Successful alias table update for {service.host}" in said, said
    return said


def test_ddclient_ipv4_ipv6_and_too_early(service: Service, tmp_path: Path) -> None:
    said = ddclient(service, tmp_path, "use=cmd, cmd='/bin/echo 93.184.216.34'")
    assert "myip=93.184.216.34" in said
    service.wait_for("A", "93.184.216.34", seconds=2)
    said = ddclient(service, tmp_path, "use=cmd, cmd='/bin/echo 2a00:1450:4001::5'")  # was dnserr
    assert "myip=2a00:1450:4001::5" in said
    # Both came within the interval: the second is published when it ends.
    service.wait_for("AAAA", "2a00:1450:4001::5")
    assert service.dig("A") == ["93.184.216.34"]  # the other family is left as it was
    said = ddclient(service, tmp_path, "use=ip, ip=93.184.216.35")  # too early again
    service.wait_for("A", "93.184.216.35")


def test_ddclient_empty_myip_means_the_source_address(service: Service, tmp_path: Path) -> None:
    # ddclient 3.10's dyndns2 sends `myip=` (empty) with the usev4 strategies.
    said = ddclient(service, tmp_path, "usev4=cmdv4, cmdv4='/bin/echo 93.184.216.34'")
    assert "myip= HTTP" in said
    service.wait_for("A", "127.0.0.1", seconds=2)  # was: the A record deleted


def test_inadyn_ipv4_ipv6_and_too_early(service: Service, tmp_path: Path) -> None:
    inadyn(service, tmp_path, "93.184.216.34")
    service.wait_for("A", "93.184.216.34", seconds=2)
    inadyn(service, tmp_path, "2a00:1450:4001::5")  # too early, and IPv6 in myip (was dnserr)
    service.wait_for("AAAA", "2a00:1450:4001::5")
    inadyn(service, tmp_path, "93.184.216.36")
    inadyn(service, tmp_path, "93.184.216.37")  # two too early: the latest wins
    service.wait_for("A", "93.184.216.37")

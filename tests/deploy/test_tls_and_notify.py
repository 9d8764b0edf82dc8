"""TLS for real: nginx (deploy/proxy/keep.conf) in front of keep-server, and
keep-server's own --tls-cert/--tls-key, with the client verifying against a
throw-away CA (--ca-file / KEEP_CA_FILE). Plus the servers' systemd
notification (READY=1, WATCHDOG=1) and their refusal of a bad data dir."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.servers import free_port, keep_server, stop, wait_for_port
from support.services import nginx
from tests.client.conftest import Device
from tests.client.test_faults import random_tree, restored
from tests.client.tree_builder import describe

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent


def make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """(CA cert, server cert chain, server key) for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Keep test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "fullchain.pem", tmp / "privkey.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path)


@pytest.fixture
def nginx_in_front(tmp_path: Path, ca: tuple[Path, Path, Path]) -> Iterator[str]:
    """The shipped deploy/proxy/keep.conf, pointed at a keep-server and this CA's certificate."""
    _, chain, key = ca
    port = free_port()
    with keep_server(tmp_path / "server") as (url, _):
        upstream = url.rsplit(":", 1)[1]
        conf = (ROOT / "deploy" / "proxy" / "keep.conf").read_text()
        conf = (
            conf.replace("server 127.0.0.1:8420;", f"server 127.0.0.1:{upstream};")
            .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;", 1)
            .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{free_port()} ssl http2;")
            .replace("/etc/keep/tls/fullchain.pem", str(chain))
            .replace("/etc/keep/tls/privkey.pem", str(key))
        )
        with nginx(tmp_path / "nginx", conf, port) as front:
            yield front


def round_trip(url: str, ca_file: Path, tmp_path: Path) -> None:
    dev = Device(url, tmp_path / "home", "tls", tmp_path / "pw", env={"KEEP_CA_FILE": str(ca_file)})
    dev.password_file.write_text("over tls, with a longer passphrase\n")
    dev.init()
    src = random_tree(tmp_path / "src", 3, 20 * 1024 * 1024)  # packs of ~16 MiB through the proxy
    snapshot = dev.json("backup", str(src))["snapshot"]
    target = tmp_path / "restore"
    dev.run("restore", snapshot, "--target", str(target))
    assert describe(restored(target, src)) == describe(src)
    # Without the CA the certificate is refused, clearly, and nothing is sent.
    stranger = Device(url, tmp_path / "stranger", "tls2", dev.password_file)
    result = stranger.run(
        "init", "--server", url, "--account", "tls2", "--password-file", str(dev.password_file), check=False
    )
    assert result.returncode == 12, result.stderr
    assert "certificate" in result.stderr
    assert "--ca-file" in result.stderr


def test_backup_and_restore_through_nginx_tls(
    nginx_in_front: str, ca: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    round_trip(nginx_in_front, ca[0], tmp_path)


def test_keep_server_serves_tls_itself(ca: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ca_file, chain, key = ca
    port = free_port()
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "keep-server"),
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{port}",
            "--tls-cert",
            str(chain),
            "--tls-key",
            str(key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        round_trip(f"https://127.0.0.1:{port}", ca_file, tmp_path)
    finally:
        stop(proc)


@pytest.mark.parametrize("exe", ["keep-server", "keep-checkin"])
def test_servers_notify_systemd_and_feed_the_watchdog(exe: str, tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    port = free_port()
    extra = ["--dns-listen", "off"] if exe == "keep-checkin" else []
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [
            str(VENV_BIN / exe),
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{port}",
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        messages = [sock.recv(4096).decode() for _ in range(3)]
        assert messages[0].startswith("READY=1")
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # ready means listening
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
    finally:
        stop(proc)
        sock.close()


@pytest.mark.parametrize("exe", ["keep-server", "keep-checkin"])
def test_servers_refuse_a_bad_data_dir_clearly(exe: str, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = subprocess.run(
        [str(VENV_BIN / exe), "serve", "--data-dir", str(not_a_dir / "data")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "data directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_admin_page_uses_the_same_tls_settings_as_the_cli(
    ca: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A device whose private CA is set in keep.toml ([server] ca_file), not
    remembered in device.json: the CLI and the admin page both reach the
    server (the admin page used to open the repository its own way)."""
    ca_file, chain, key = ca
    server_port = free_port()
    command = [str(VENV_BIN / "keep-server"), "serve", "--data-dir", str(tmp_path / "data")]
    command += ["--listen", f"127.0.0.1:{server_port}", "--tls-cert", str(chain), "--tls-key", str(key)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(server_port, server)
        url = f"https://127.0.0.1:{server_port}"
        dev = Device(url, tmp_path / "home", "tlsadmin", tmp_path / "pw", env={"KEEP_CA_FILE": str(ca_file)})
        dev.password_file.write_text("over tls, with a longer passphrase\n")
        dev.init()
        state = json.loads((dev.home / "device.json").read_text())
        state.pop("ca_file", None)
        (dev.home / "device.json").write_text(json.dumps(state))
        (dev.home / "none.toml").write_text(f'[server]\nca_file = "{ca_file}"\n')
        dev.env.clear()  # from here on the CA comes from keep.toml only
        dev.run("snapshots")
        admin_password = tmp_path / "admin-pw"
        admin_password.write_text("an admin page password\n")
        dev.run("admin", "set-password", "--password-file", str(admin_password))
        port = free_port()
        env = {**os.environ, "KEEP_HOME": str(dev.home), "KEEP_CONFIG": str(dev.home / "none.toml")}
        env.pop("KEEP_CA_FILE", None)
        admin = subprocess.Popen(
            [str(VENV_BIN / "keep"), "admin", "serve", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, admin)
            page = admin_status_page(port, "an admin page password")
        finally:
            stop(admin)
    finally:
        stop(server)
    assert "objects on the server" in page
    assert "unavailable" not in page


def admin_status_page(port: int, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    origin = f"http://127.0.0.1:{port}"
    body = urllib.parse.urlencode({"password": password})
    conn.request(
        "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}
    )
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 303
    cookie = reply.headers["Set-Cookie"].split(";", 1)[0]
    conn.request("GET", "/", headers={"Cookie": cookie})
    reply = conn.getresponse()
    assert reply.status == 200
    return reply.read().decode()

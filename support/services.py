"""Real PostgreSQL, S3-protocol, DNS and TLS-proxy servers on 127.0.0.1, for
tests and benchmarks.

`postgres_cluster` runs Debian's PostgreSQL binaries on a throw-away cluster
(initdb in a temp dir, trust authentication on loopback only), as the
`postgres` user when started by root (PostgreSQL refuses to run as root).
`moto_s3` runs moto's standalone S3 server (PyPI, in its own venv), `bind9`
and `nginx` Debian's. All are stopped by PID when the block ends;
`scripts/test-services.sh` installs them.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.servers import free_port, stop, wait_for_port

START_TIMEOUT = 60.0
S3_KEY = "keep-test"  # moto accepts any credentials; these are not secrets
S3_SECRET = "keep-test-secret"  # noqa: S105


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def moto_server_exe() -> Path | None:
    """moto's server, from its own venv (scripts/test-services.sh)."""
    exe = Path(__file__).resolve().parent.parent / ".services" / "moto" / "bin" / "moto_server"
    return exe if exe.exists() else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_cluster(durable: bool = False) -> Iterator[str]:
    """Yield the URL of a fresh cluster's `postgres` database (user `keep`).
    Without `durable`, fsync is off: tests need no crash safety from it."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries are missing (scripts/test-services.sh installs them)")
    root = Path(tempfile.mkdtemp(prefix="keep-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        root.chmod(0o755)
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "keep", "-A", "trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
    if not durable:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log = (root / "postgres.log").open("ab")
    proc = subprocess.Popen(
        _as_postgres([str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data), *options]),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while subprocess.run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True, check=False
        ).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start; see {root / 'postgres.log'}")
            time.sleep(0.1)
        yield f"postgresql://keep@127.0.0.1:{port}/postgres"
    finally:
        # runuser is the parent of postgres: signal postgres itself (its pid
        # file), falling back to the process we started.
        stop(proc, signal.SIGINT, _postmaster_pid(data))  # SIGINT: PostgreSQL's "fast" shutdown
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def create_database(cluster_url: str, name: str) -> str:
    """Create database `name` in the cluster; returns its URL."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries are missing")
    port = cluster_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    subprocess.run(
        [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", port, "-U", "keep", name],
        check=True,
        capture_output=True,
    )
    return cluster_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def moto_s3() -> Iterator[str]:
    """Yield the endpoint URL of a moto S3 server; sets the AWS credential
    variables for this process and the servers it starts."""
    exe = moto_server_exe()
    if exe is None:
        raise RuntimeError("moto_server is missing (pip install 'moto[server]')")
    os.environ.update(
        AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_DEFAULT_REGION="us-east-1"
    )
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="keep-moto-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 — our own server
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {log.name}") from None
                time.sleep(0.1)
        yield url
    finally:
        stop(proc)
        log.close()
        os.unlink(log.name)


def create_bucket(endpoint: str, name: str) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
    )
    client.create_bucket(Bucket=name)


TSIG_NAME = "keep-update"


@contextmanager
def bind9(zone: str) -> Iterator[tuple[int, Path]]:
    """A real BIND 9 `named` on 127.0.0.1, primary for `zone`, accepting
    RFC 2136 updates signed with a fresh TSIG key. Yields (port, key file in
    BIND's format)."""
    import base64
    import secrets as _secrets

    import dns.message
    import dns.query

    named = shutil.which("named") or "/usr/sbin/named"
    if not os.path.exists(named):
        raise RuntimeError("named is missing (scripts/test-services.sh installs bind9)")
    root = Path(tempfile.mkdtemp(prefix="keep-bind-"))
    port = free_port()
    secret = base64.b64encode(_secrets.token_bytes(32)).decode()
    key_text = f'key "{TSIG_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'
    (root / "update.key").write_text(key_text)
    (root / "db.zone").write_text(
        "$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n"
    )
    (root / "named.conf").write_text(
        f'options {{ directory "{root}"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n'
        f'  recursion no; dnssec-validation no; pid-file "{root}/named.pid";\n'
        f'  session-keyfile "{root}/session.key"; }};\n'
        f"controls {{ }};\n{key_text}"
        f'zone "{zone}" {{ type primary; file "{root}/db.zone"; allow-update {{ key "{TSIG_NAME}"; }}; }};\n'
    )
    log = (root / "named.log").open("ab")
    proc = subprocess.Popen(
        [named, "-g", "-n", "1", "-c", str(root / "named.conf")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=0.5)
                break
            except (OSError, dns.exception.Timeout):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"named did not start; see {root / 'named.log'}") from None
        yield port, root / "update.key"
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def nginx(work: Path, server_blocks: str, port: int) -> Iterator[str]:
    """A real nginx (Debian's) on 127.0.0.1:`port`, serving `server_blocks`
    (the inside of an `http {}` block: what a deployment's site config
    holds), with every path it writes under `work`. Yields the https URL;
    stopped gracefully by PID when the block ends."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(exe):
        raise RuntimeError("nginx is missing (scripts/test-services.sh installs it)")
    temp = work / "tmp"
    temp.mkdir(parents=True, exist_ok=True)
    (work / "site.conf").write_text(server_blocks)
    (work / "nginx.conf").write_text(
        f"daemon off;\nuser root;\nworker_processes 1;\npid {work / 'nginx.pid'};\n"
        f"error_log {work / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n"
        f"  access_log off;\n  include {work / 'site.conf'};\n}}\n"
    )
    check = subprocess.run(
        [exe, "-t", "-c", str(work / "nginx.conf")], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx refused its configuration: {check.stderr.strip()}")
    proc = subprocess.Popen([exe, "-c", str(work / "nginx.conf")], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"https://127.0.0.1:{port}"
    finally:
        stop(proc, signal.SIGQUIT)  # graceful stop of master and worker

"""Queries per second of keep-checkin's embedded DNS responder, measured by
dnsperf (Debian's, installed by benchmarks/setup-tools.sh) on 127.0.0.1.

A keep-checkin process serves a zone with NAMES registered names; dnsperf
sends a mix of A and AAAA queries for them (and 10% for names that do not
exist) for SECONDS, keeping CLIENTS queries outstanding. Reported: queries
per second, loss, average latency; the server's RSS before and after.

    python -m benchmarks.bench_dns [--seconds 20] [--names 1000] [--outstanding 100]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_server import _rss_kib
from support.servers import checkin_server, free_port

ZONE = "dyn.example.test"


def register(url: str, names: int) -> None:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    for i in range(names):
        conn.request("POST", "/v1/names", json.dumps({"name": f"d{i}"}), {"Content-Type": "application/json"})
        token = json.loads(conn.getresponse().read())["token"]
        body = json.dumps({"ipv4": f"192.0.2.{i % 250 + 1}", "ipv6": f"2001:db8::{i:x}"})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("PUT", f"/v1/names/d{i}/address", body, headers)
        conn.getresponse().read()
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--outstanding", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "queries.txt"
        lines = []
        for _ in range(20_000):
            i = rng.randrange(args.names)
            name = f"d{i}.{ZONE}" if rng.random() < 0.9 else f"ghost{i}.{ZONE}"
            lines.append(f"{name} {rng.choice(['A', 'AAAA'])}")
        queries.write_text("\n".join(lines) + "\n")
        port = free_port()
        extra = ["--zone", ZONE, "--dns-listen", f"127.0.0.1:{port}", "--allow-private-addresses"]
        with checkin_server(Path(tmp) / "data", *extra) as (url, proc):
            register(url, args.names)
            before = _rss_kib(proc.pid)
            command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries)]
            command += ["-l", str(args.seconds), "-q", str(args.outstanding), "-c", "1"]
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=True,
            )
            after = _rss_kib(proc.pid)
    out = result.stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = re.search(r"Queries lost:\s+(\d+) \(([\d.]+)%\)", out)
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    print(
        f"dnsperf {args.seconds} s, {args.outstanding} outstanding, {args.names} names: "
        f"{qps:,.0f} queries/s, lost {lost.group(1) if lost else '?'} ({lost.group(2) if lost else '?'}%), "
        f"average latency {float(latency.group(1)) * 1000 if latency else float('nan'):.2f} ms, "
        f"RSS {before // 1024} -> {after // 1024} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A bounded load test of keep-server on 127.0.0.1.

For a fixed time, many clients send small requests (GET /v1/usage, object
listings, HEAD of existing objects) while a few others upload 16 MiB packs.
Reported: requests per second, p50/p99 latency of the small requests,
upload throughput, errors (must be zero), and the server's RSS before and
after (growth must stay under RSS_GROWTH_MAX).

    python -m benchmarks.bench_load [--seconds 30] [--small-clients 64] [--uploaders 4]
    python -m benchmarks.bench_load --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.bench_server import _rss_kib, setup_account
from keep.protocol.object_id import BLAKE3, HASH_HEADER, object_id
from support.servers import keep_server

PACK = 16 * 1024 * 1024
RSS_GROWTH_MAX = 64 * 1024  # KiB the server may grow by over a run


async def run(url: str, seconds: float, small_clients: int, uploaders: int) -> dict[str, float]:
    conn = aiohttp.TCPConnector(limit=small_clients + uploaders + 4)
    async with aiohttp.ClientSession(connector=conn) as session:
        token = await setup_account(session, url)
        headers = {"Authorization": f"Bearer {token}", HASH_HEADER: BLAKE3}  # as the client uploads
        seed = os.urandom(1024)
        known = object_id(seed)
        async with session.put(f"{url}/v1/objects/index/{known}", data=seed, headers=headers) as r:
            r.raise_for_status()
        deadline = time.monotonic() + seconds
        latencies: list[float] = []
        errors = 0
        uploaded = 0
        small = [
            ("GET", f"{url}/v1/usage"),
            ("GET", f"{url}/v1/objects/index?limit=100"),
            ("HEAD", f"{url}/v1/objects/index/{known}"),
        ]

        async def small_client(i: int) -> None:
            nonlocal errors
            n = i
            while time.monotonic() < deadline:
                method, target = small[n % len(small)]
                n += 1
                t0 = time.perf_counter()
                try:
                    async with session.request(method, target, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        async def uploader() -> None:
            nonlocal errors, uploaded
            block = bytearray(os.urandom(PACK))
            while time.monotonic() < deadline:
                block[:16] = os.urandom(16)
                data = bytes(block)
                oid = object_id(data)
                try:
                    async with session.put(f"{url}/v1/objects/pack/{oid}", data=data, headers=headers) as r:
                        await r.read()
                        if r.status not in (200, 201):
                            errors += 1
                        else:
                            uploaded += len(data)
                except aiohttp.ClientError:
                    errors += 1

        start = time.monotonic()
        await asyncio.gather(
            *(small_client(i) for i in range(small_clients)), *(uploader() for _ in range(uploaders))
        )
        elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000 if latencies else 0.0,
        "upload_mb_s": uploaded / elapsed / 1e6,
        "errors": errors,
        "requests": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--small-clients", type=int, default=64)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    seconds, small, uploaders = (
        (3.0, 8, 1) if args.smoke else (args.seconds, args.small_clients, args.uploaders)
    )
    with (
        tempfile.TemporaryDirectory(prefix="keep-load-") as tmp,
        keep_server(Path(tmp) / "server") as (url, proc),
    ):
        time.sleep(0.5)
        before = _rss_kib(proc.pid)
        result = asyncio.run(run(url, seconds, small, uploaders))
        after = _rss_kib(proc.pid)
    growth = after - before
    print(
        f"{seconds:.0f} s, {small} small-request clients, {uploaders} uploaders of 16 MiB packs\n"
        f"small requests: {result['requests']:.0f} ({result['requests_per_s']:.0f}/s), "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms\n"
        f"uploads: {result['upload_mb_s']:.0f} MB/s; errors: {result['errors']:.0f}\n"
        f"server RSS: {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after "
        f"(growth {growth / 1024:.1f} MiB, bound {RSS_GROWTH_MAX / 1024:.0f} MiB)"
    )
    if result["errors"] or growth > RSS_GROWTH_MAX:
        sys.exit(1)


if __name__ == "__main__":
    main()

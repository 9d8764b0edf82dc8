"""Aggregate PUT throughput and latency: directory + SQLite (one keep-server)
versus S3 + PostgreSQL with one and two keep-server replicas.

Real processes on 127.0.0.1: keep-server(s), a PostgreSQL cluster (durable:
fsync on) and moto's S3 server. 8 concurrent clients PUT 16 MiB packs,
spread round-robin over the replicas; each PUT's latency is recorded.

moto keeps objects in memory and is written in Python, so on the S3 stack it
is the bottleneck: these figures show what keep-server adds on that stack and
how the work spreads over replicas, not what MinIO or AWS would sustain.

    python -m benchmarks.bench_scaleout [--objects 48] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from benchmarks.bench_server import OBJECT_SIZE, make_objects, setup_account
from keep.protocol.object_id import BLAKE3, HASH_HEADER
from support.servers import keep_server
from support.services import create_bucket, create_database, moto_s3, postgres_cluster

CLIENTS = 8


@contextlib.contextmanager
def stack(name: str, replicas: int, base: Path) -> Iterator[list[str]]:
    """Yield the URLs of `replicas` keep-servers on the named storage stack."""
    with contextlib.ExitStack() as stack_:
        extra: tuple[str, ...] = ()
        if name == "s3+postgresql":
            cluster = stack_.enter_context(postgres_cluster(durable=True))
            endpoint = stack_.enter_context(moto_s3())
            create_bucket(endpoint, "bench")
            database = create_database(cluster, "bench")
            extra = ("--metadata", database, "--objects", f"s3://bench/objects?endpoint={endpoint}")
        urls = [
            stack_.enter_context(keep_server(base / f"{name}-{replicas}-{i}", *extra))[0]
            for i in range(replicas)
        ]
        yield urls


async def put_all(urls: list[str], objects: list[tuple[str, bytes]]) -> tuple[float, list[float]]:
    conn = aiohttp.TCPConnector(limit=CLIENTS * 2)
    async with aiohttp.ClientSession(connector=conn) as session:
        token = await setup_account(session, urls[0])
        headers = {"Authorization": f"Bearer {token}", HASH_HEADER: BLAKE3}  # as the client uploads
        queue: asyncio.Queue[tuple[int, str, bytes]] = asyncio.Queue()
        for i, (oid, data) in enumerate(objects):
            queue.put_nowait((i, oid, data))
        latencies: list[float] = []

        async def client() -> None:
            while not queue.empty():
                i, oid, data = queue.get_nowait()
                url = urls[i % len(urls)]
                t0 = time.perf_counter()
                async with session.put(f"{url}/v1/objects/pack/{oid}", data=data, headers=headers) as r:
                    if r.status not in (200, 201):
                        raise RuntimeError(f"PUT failed: {r.status} {await r.text()}")
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return len(objects) * OBJECT_SIZE / (time.perf_counter() - start) / 1e6, latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=48)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    count = 4 if args.smoke else args.objects
    objects = make_objects(count)
    print(f"{count} PUTs of 16 MiB by {CLIENTS} concurrent clients\n")
    print("| storage | replicas | aggregate MB/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="keep-scaleout-") as tmp:
        for name, replicas in (("directory+sqlite", 1), ("s3+postgresql", 1), ("s3+postgresql", 2)):
            with stack(name, replicas, Path(tmp)) as urls:
                mbs, latencies = asyncio.run(put_all(urls, objects))
            latencies.sort()
            p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
            print(
                f"| {name} | {replicas} | {mbs:.0f} | {statistics.median(latencies) * 1000:.0f} "
                f"| {p99 * 1000:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

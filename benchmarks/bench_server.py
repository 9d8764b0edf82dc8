"""keep-server throughput and latency over loopback.

PUT and GET of 16 MiB objects with 1 and 8 concurrent clients, and p50/p99
latency of small requests (GET /v1/usage) while 4 clients upload packs.
The server is a real `keep-server` process with directory + SQLite storage.

    python -m benchmarks.bench_server [--objects 64] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from keep.protocol.object_id import BLAKE3, HASH_HEADER, object_id
from support.servers import keep_server

OBJECT_SIZE = 16 * 1024 * 1024


async def setup_account(session: aiohttp.ClientSession, url: str) -> str:
    """Create an account and enroll a device; returns the device token."""
    auth = os.urandom(32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    slot = {"kind": "password", "version": 1, "salt": b64(os.urandom(32)), "wrapped": b64(os.urandom(80))}
    async with session.post(
        f"{url}/v1/accounts",
        json={
            "name": "bench",
            "salt": b64(os.urandom(32)),
            "kdf": {"algorithm": "argon2id", "memory_kib": 65536, "iterations": 3, "parallelism": 4},
            "auth_verifier": b64(hashlib.sha256(auth).digest()),
            "keyslots": {"password": slot},
        },
    ) as r:
        r.raise_for_status()
    async with session.post(
        f"{url}/v1/sessions", json={"account": "bench", "method": "password", "auth": b64(auth)}
    ) as r:
        owner = (await r.json())["token"]
    async with session.post(
        f"{url}/v1/devices", json={"name": "bench"}, headers={"Authorization": f"Bearer {owner}"}
    ) as r:
        return str((await r.json())["token"])


def make_objects(n: int) -> list[tuple[str, bytes]]:
    base = bytearray(os.urandom(OBJECT_SIZE))
    out = []
    for i in range(n):
        base[:8] = i.to_bytes(8, "big") + bytes(0)
        data = bytes(base)
        out.append((object_id(data), data))
    return out


async def transfer(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    objects: list[tuple[str, bytes]],
    clients: int,
    method: str,
) -> float:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in objects:
        queue.put_nowait(item)
    headers = {"Authorization": f"Bearer {token}", HASH_HEADER: BLAKE3}  # as the client uploads

    async def worker() -> None:
        while not queue.empty():
            oid, data = queue.get_nowait()
            target = f"{url}/v1/objects/pack/{oid}"
            if method == "PUT":
                async with session.put(target, data=data, headers=headers) as r:
                    if r.status not in (200, 201):
                        raise RuntimeError(f"PUT failed: {r.status} {await r.text()}")
            else:
                async with session.get(target, headers=headers) as r:
                    got = 0
                    async for block in r.content.iter_chunked(1 << 20):
                        got += len(block)
                    if got != len(data):
                        raise RuntimeError("short GET")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return len(objects) * OBJECT_SIZE / (time.perf_counter() - start) / 1e6


async def latency_under_load(
    session: aiohttp.ClientSession, url: str, token: str, objects: list[tuple[str, bytes]], n: int
) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {token}"}
    load = asyncio.create_task(transfer(session, url, token, objects, 4, "PUT"))
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(f"{url}/v1/usage", headers=headers) as r:
            await r.read()
        samples.append(time.perf_counter() - t0)
        if load.done():
            break
    await load
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


async def run(objects_count: int, base: Path) -> None:
    with keep_server(base / "server") as (url, proc):
        conn = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(connector=conn) as session:
            token = await setup_account(session, url)
            objects = make_objects(objects_count)
            print(f"{objects_count} objects of 16 MiB, keep-server pid {proc.pid}")
            for clients in (1, 8):
                batch = objects[: objects_count // 2] if clients == 1 else objects[objects_count // 2 :]
                for method in ("PUT", "GET"):
                    s0, c0 = _cpu_seconds(proc.pid), _own_cpu()
                    mbs = await transfer(session, url, token, batch, clients, method)
                    gb = len(batch) * OBJECT_SIZE / 1e9
                    server_cpu = (_cpu_seconds(proc.pid) - s0) / gb
                    client_cpu = (_own_cpu() - c0) / gb
                    print(
                        f"  {clients} client(s) {method}: {mbs:6.0f} MB/s; CPU per GB: "
                        f"server {server_cpu:.2f} s, client {client_cpu:.2f} s"
                    )
            fresh = make_objects(objects_count // 2)
            fresh = [(object_id(d + b"x"), d + b"x") for _, d in fresh]
            p50, p99 = await latency_under_load(session, url, token, fresh, 2000)
            print(f"  small GET /v1/usage under 4 uploading clients: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        rss = _rss_kib(proc.pid)
        print(f"  server RSS after run: {rss / 1024:.0f} MiB")
    print(f"  client peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=64)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keep-bench-") as tmp:
        asyncio.run(run(4 if args.smoke else args.objects, Path(tmp)))


if __name__ == "__main__":
    main()

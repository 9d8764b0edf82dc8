"""Throughput of the per-blob pipeline: chunk -> id -> compress -> seal.

Prints MB/s per stage (single thread) and for the whole pipeline on 1 and 2
threads, on compressible and incompressible data. `--smoke` runs on tiny data
so CI exercises the harness; real figures go to benchmarks/RESULTS.md.

    python -m benchmarks.bench_protocol [--size-mib 256] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from benchmarks.corpus import random_bytes, text_bytes
from keep.protocol.blob import BlobType, blob_id
from keep.protocol.chunker import Chunker
from keep.protocol.compression import BlobCompressor
from keep.protocol.envelope import ObjectCipher, ObjectKind, Suite
from keep.protocol.keys import MasterKey, RepositoryKeys
from keep.protocol.limits import PACK_MIN_PADDED, PACK_TARGET
from keep.protocol.pack import PackWriter


def measure(fn: Callable[[], object], size: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def _each(items: list[memoryview], fn: Callable[[memoryview], object]) -> None:
    for item in items:
        fn(item)


def chunks_of(data: bytes, chunker: Chunker) -> list[memoryview]:
    view = memoryview(data)
    out, pos = [], 0
    for n in chunker.cut(data, final=True):
        out.append(view[pos : pos + n])
        pos += n
    return out


def pipeline(keys: RepositoryKeys, data: bytes, threads: int, suite: Suite) -> None:
    """What the backup engine does per blob: workers hash and compress, one
    thread seals into packs (AES releases the GIL and is ~15x faster than zstd)."""
    chunker = Chunker(keys.chunker)
    local = __import__("threading").local()

    def work(chunk: memoryview) -> tuple[bytes, object, bytes | memoryview, int]:
        comp = getattr(local, "c", None) or BlobCompressor()
        local.c = comp
        codec, payload = comp.compress(chunk)
        return blob_id(keys.id, chunk), codec, payload, len(chunk)

    salt = bytes(32)
    writer = PackWriter(ObjectCipher.new(keys.data, ObjectKind.PACK, suite, salt))
    parts = [writer.header]
    with ThreadPoolExecutor(threads) as pool:
        for bid, codec, payload, raw in pool.map(work, chunks_of(data, chunker)):
            parts.append(writer.add(BlobType.DATA, bid, codec, payload, raw))  # type: ignore[arg-type]
            if writer.size >= PACK_TARGET:
                parts.append(writer.finish(PACK_MIN_PADDED))
                b"".join(parts)
                writer = PackWriter(ObjectCipher.new(keys.data, ObjectKind.PACK, suite, salt))
                parts = [writer.header]
    parts.append(writer.finish(PACK_MIN_PADDED))
    b"".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--smoke", action="store_true", help="tiny data, one repeat")
    args = parser.parse_args()
    size = 4 * 2**20 if args.smoke else args.size_mib * 2**20
    repeat = 1 if args.smoke else 3
    keys = RepositoryKeys.from_master(MasterKey(bytes(range(64))))
    chunker = Chunker(keys.chunker)
    print(f"cores: {os.cpu_count()}, data: {size / 2**20:.0f} MiB per kind, best of {repeat}")
    for label, data in (("text", text_bytes(size)), ("random", random_bytes(size))):
        chunks = chunks_of(data, chunker)
        comp = BlobCompressor()
        ratio = sum(len(comp.compress(c)[1]) for c in chunks) / size
        cipher = ObjectCipher.new(keys.data, ObjectKind.PACK, Suite.AES_256_GCM, bytes(32))
        stages: dict[str, Callable[[], object]] = {
            "chunk (FastCDC)": partial(chunker.cut, data, final=True),
            "id (keyed BLAKE3)": partial(_each, chunks, partial(blob_id, keys.id)),
            "compress (zstd-3)": partial(_each, chunks, comp.compress),
            "seal (AES-256-GCM)": partial(_each, chunks, partial(cipher.seal, 0, ad=b"")),
        }
        print(f"\n{label}: {len(chunks)} chunks, compressed to {ratio:.1%}")
        for name, fn in stages.items():
            print(f"  {name:<22} {measure(fn, size, repeat):8.0f} MB/s  (1 thread)")
        for suite in (Suite.AES_256_GCM, Suite.CHACHA20_POLY1305):
            for threads in (1, 2):
                mbs = measure(partial(pipeline, keys, data, threads, suite), size, repeat)
                print(f"  pipeline {suite.name:<18} {threads} thread(s) {mbs:8.0f} MB/s")


if __name__ == "__main__":
    main()

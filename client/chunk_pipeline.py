"""Chunk work on a thread pool with bounded memory.

The engine thread reads and cuts files; each chunk goes to a worker that
computes its keyed BLAKE3 id and, unless the blob is already known, compresses
it (both release the GIL). Results are consumed in submission order, and the
engine blocks once INFLIGHT_MAX bytes are in flight — memory stays bounded
whatever the file sizes. Each worker thread keeps its own compressor.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from keep.protocol.blob import blob_id
from keep.protocol.compression import BlobCompressor, Codec
from keep.protocol.keys import IdKey
from keep.protocol.limits import MiB

INFLIGHT_MAX = 24 * MiB
# Chunks up to this size are hashed and compressed on the engine thread: for
# small files a hand-off to the pool (future, wake-up, GIL round trips) costs
# more than the work itself.
INLINE_MAX = 64 * 1024


@dataclass(frozen=True, slots=True)
class ChunkResult:
    blob_id: bytes
    codec: Codec
    payload: bytes | memoryview | None  # None: already stored, not compressed
    raw_length: int


Sink = Callable[[ChunkResult], None]


class ChunkPipeline:
    def __init__(self, id_key: IdKey, known: Callable[[bytes], bool], threads: int | None = None) -> None:
        self._id_key = id_key
        self._known = known
        self._pool = ThreadPoolExecutor(threads or os.cpu_count() or 2, thread_name_prefix="keep-chunk")
        self._local = threading.local()
        self._queue: deque[tuple[Future[ChunkResult], Sink, int]] = deque()
        self._inflight = 0
        self._inline_compressor = BlobCompressor()

    def _work(self, chunk: memoryview, compressor: BlobCompressor | None = None) -> ChunkResult:
        bid = blob_id(self._id_key, chunk)
        if self._known(bid):
            return ChunkResult(bid, Codec.RAW, None, len(chunk))
        if compressor is None:
            compressor = getattr(self._local, "c", None)
            if compressor is None:
                compressor = self._local.c = BlobCompressor()
        codec, payload = compressor.compress(chunk)
        return ChunkResult(bid, codec, payload, len(chunk))

    def submit(self, chunk: memoryview, sink: Sink) -> None:
        """Process a chunk; `sink` receives its result on the engine thread.
        Small chunks are done at once; larger ones queue for the pool and
        reach their sinks in submission order."""
        if len(chunk) <= INLINE_MAX:
            sink(self._work(chunk, self._inline_compressor))
            return
        while self._inflight + len(chunk) > INFLIGHT_MAX and self._queue:
            self._consume_one()
        self._queue.append((self._pool.submit(self._work, chunk), sink, len(chunk)))
        self._inflight += len(chunk)

    def _consume_one(self) -> None:
        future, sink, size = self._queue.popleft()
        self._inflight -= size
        sink(future.result())

    def drain(self) -> None:
        while self._queue:
            self._consume_one()

    def close(self) -> None:
        for future, _, _ in self._queue:
            future.cancel()
        self._queue.clear()
        self._pool.shutdown(wait=True)

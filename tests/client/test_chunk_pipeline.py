"""The chunk pipeline on its own: order of results and callbacks, batching of
small chunks, and the reuse rules of its read buffers."""

from __future__ import annotations

import errno
import functools
import os
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import zstandard

from keep.client.engine.chunk_pipeline import (
    BATCH_BYTES,
    INFLIGHT_MAX,
    INLINE_MAX,
    READ_BUFFERS,
    ChunkPipeline,
    ChunkResult,
    DeliveryError,
)
from keep.protocol.blob import blob_id
from keep.protocol.compression import Codec
from keep.protocol.keys import IdKey
from keep.protocol.limits import MiB

KEY = IdKey(bytes(range(32)))


@pytest.fixture
def pipeline() -> Iterator[ChunkPipeline]:
    p = ChunkPipeline(KEY, lambda _: False, threads=2, buffer_size=2 * MiB)
    yield p
    p.close()


def test_sinks_and_callbacks_run_in_submission_order(pipeline: ChunkPipeline) -> None:
    rng = random.Random(1)
    events: list[object] = []
    expected: list[object] = []
    for i in range(400):
        if rng.random() < 0.1:
            pipeline.then(functools.partial(events.append, ("then", i)))
            expected.append(("then", i))
            continue
        size = rng.choice([0, 100, 5000, 70_000, 300_000])
        data = memoryview(rng.randbytes(size))

        def sink(result: ChunkResult, i: int = i) -> None:
            events.append((i, result.blob_id))

        pipeline.submit(data, sink)
        expected.append((i, blob_id(KEY, data)))
    pipeline.drain()
    assert events == expected


def test_a_callback_with_nothing_in_flight_runs_at_once(pipeline: ChunkPipeline) -> None:
    ran = []
    pipeline.then(lambda: ran.append(1))
    assert ran == [1]


def test_small_chunks_go_to_the_workers_in_batches(pipeline: ChunkPipeline) -> None:
    engine = threading.get_ident()
    seen: set[int] = set()
    original = pipeline._work_batch

    def spy(chunks: list[memoryview]) -> list[ChunkResult]:
        seen.add(threading.get_ident())
        assert sum(len(c) for c in chunks) <= BATCH_BYTES + 4096
        return original(chunks)

    pipeline._work_batch = spy  # type: ignore[method-assign]
    results: list[ChunkResult] = []
    for _ in range(1000):
        pipeline.submit(memoryview(os.urandom(INLINE_MAX + 4096)), results.append)
    pipeline.drain()
    assert len(results) == 1000
    assert seen
    assert engine not in seen


def test_small_results_waiting_behind_a_slow_chunk_stay_bounded(pipeline: ChunkPipeline) -> None:
    """Tiny chunks are done at once but delivered in turn; while a large
    chunk holds the head of the queue they must not pile up without bound."""
    gate = threading.Event()
    original = pipeline._work

    def slow(chunk: bytes | memoryview) -> ChunkResult:
        if len(chunk) > BATCH_BYTES:
            gate.wait(5)
        return original(chunk)

    pipeline._work = slow  # type: ignore[method-assign]
    threading.Timer(0.3, gate.set).start()
    delivered: list[ChunkResult] = []
    pipeline.submit(memoryview(os.urandom(BATCH_BYTES + 1)), delivered.append)
    peak = 0
    for _ in range((INFLIGHT_MAX // INLINE_MAX) * 2):
        pipeline.submit(memoryview(os.urandom(INLINE_MAX)), delivered.append)
        peak = max(peak, len(pipeline._queue))
    pipeline.drain()
    assert peak <= INFLIGHT_MAX // INLINE_MAX + 1
    assert len(delivered) == 1 + (INFLIGHT_MAX // INLINE_MAX) * 2


def test_known_blobs_are_not_compressed() -> None:
    data = memoryview(b"x" * 200_000)
    p = ChunkPipeline(KEY, lambda bid: bid == blob_id(KEY, data), threads=1)
    try:
        out: list[ChunkResult] = []
        p.submit(data, out.append)
        p.drain()
    finally:
        p.close()
    assert out[0].payload is None
    assert out[0].raw_length == len(data)


def test_results_never_point_into_a_read_buffer(pipeline: ChunkPipeline) -> None:
    """A raw (incompressible) payload must survive the buffer's reuse."""
    buffer = pipeline.read_buffer()
    noise = os.urandom(1 * MiB)
    buffer.view[: len(noise)] = noise
    out: list[ChunkResult] = []
    pipeline.submit(buffer.view[: len(noise)], out.append, buffer)
    buffer.release()
    pipeline.drain()
    buffer.view[:] = bytes(len(buffer.view))  # the next file's bytes
    (result,) = out
    assert result.codec is Codec.RAW
    assert result.payload is not None
    assert bytes(result.payload) == noise


def test_a_buffer_returns_only_when_released_and_its_chunks_delivered(pipeline: ChunkPipeline) -> None:
    held = [pipeline.read_buffer() for _ in range(READ_BUFFERS)]
    delivered: list[int] = []
    for n, buffer in enumerate(held):
        buffer.view[:1000] = bytes([n]) * 1000

        def sink(_: ChunkResult, n: int = n) -> None:
            delivered.append(n)

        pipeline.submit(buffer.view[:300_000], sink, buffer)
    last = len(held) - 1
    held[last].release()
    # Every buffer is busy: asking for one delivers results until the last
    # (released, its chunk done) comes back; the others are still being read.
    again = pipeline.read_buffer()
    assert again is held[last]
    assert last in delivered
    again.release()
    for buffer in held[:last]:
        buffer.release()
    pipeline.drain()
    assert sorted(delivered) == list(range(READ_BUFFERS))
    assert pipeline.read_buffer() in held  # no new buffer: the pool is reused


def test_a_reader_holding_every_buffer_is_an_error_not_a_hang(pipeline: ChunkPipeline) -> None:
    held = [pipeline.read_buffer() for _ in range(READ_BUFFERS)]
    with pytest.raises(RuntimeError, match="internal"):
        pipeline.read_buffer()
    for buffer in held:
        buffer.release()
    assert pipeline.read_buffer() in held


class _InlineExecutor:
    """Runs each job at once: results are ready the moment they are queued."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


def test_a_buffer_freed_while_handing_over_a_batch_is_used(pipeline: ChunkPipeline) -> None:
    """Sending the pending batch can deliver every result at once; the reader
    must then take the freed buffer, not conclude that nothing is in flight
    (a bug the end-to-end test caught: 'every read buffer is held')."""
    pipeline._pool = _InlineExecutor()  # type: ignore[assignment]
    held = [pipeline.read_buffer() for _ in range(READ_BUFFERS)]
    for buffer in held[1:]:
        pipeline.submit(buffer.view[:100], lambda _: None, buffer)  # small: waits in the batch
        buffer.release()
    assert pipeline.read_buffer() in held[1:]


def test_pages_past_the_resident_size_go_back_to_the_kernel() -> None:
    p = ChunkPipeline(KEY, lambda _: False, threads=1, buffer_size=4 * MiB, buffer_resident=1 * MiB)
    try:
        buffer = p.read_buffer()
        buffer.view[:] = b"\xff" * len(buffer.view)  # a long carry touched all of it
        buffer.release()
        again = p.read_buffer()
        assert again is buffer
        assert bytes(again.view[: 1 * MiB]) == b"\xff" * MiB  # kept
        assert bytes(again.view[1 * MiB :]) == bytes(3 * MiB)  # dropped: fresh zero pages
    finally:
        p.close()


def test_a_failing_sink_is_reported_as_such(pipeline: ChunkPipeline) -> None:
    def sink(_: ChunkResult) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def submit_and_drain() -> None:
        # Delivered by drain, or already by submit if the worker was quicker.
        pipeline.submit(memoryview(os.urandom(200_000)), sink)
        pipeline.drain()

    with pytest.raises(DeliveryError) as caught:
        submit_and_drain()
    assert isinstance(caught.value.original, OSError)
    assert caught.value.original.errno == errno.ENOSPC


@pytest.mark.parametrize("level", [1, 3, 19])
def test_data_is_compressed_at_the_chosen_level(level: int) -> None:
    """Inline, batched and large chunks alike: the payload is the zstd frame
    of the chosen level (each level gives different bytes for this text)."""
    rng = random.Random(level)
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(300)]
    text = b" ".join(rng.choice(words) for _ in range(60_000))
    chunks = [memoryview(text[:3000]), memoryview(text[:40_000]), memoryview(text[:300_000])]
    pipeline = ChunkPipeline(KEY, lambda _: False, threads=2, buffer_size=2 * MiB, level=level)
    results: list[ChunkResult] = []
    try:
        for chunk in chunks:
            pipeline.submit(chunk, results.append)
        pipeline.drain()
    finally:
        pipeline.close()
    for chunk, result in zip(chunks, results, strict=True):
        assert result.codec is Codec.ZSTD
        assert result.payload == zstandard.ZstdCompressor(level=level, write_checksum=False).compress(chunk)
    others = {lvl: zstandard.ZstdCompressor(level=lvl).compress(chunks[2]) for lvl in (1, 3, 19)}
    assert len(set(others.values())) == 3


def test_a_level_outside_zstds_range_is_refused() -> None:
    with pytest.raises(ValueError, match="zstd level"):
        ChunkPipeline(KEY, lambda _: False, level=0)

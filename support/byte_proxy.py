"""A TCP proxy on 127.0.0.1 that counts connections and the bytes each way,
and can cut connections at random.

Put between a backup client and its server, it measures what the client
downloaded and uploaded, the same way for every tool. Runs its own event loop
on a thread; `reset()` zeroes the counters before a measured step. With
`cut_probability` > 0, each new connection is, with that probability, reset
after a random number of bytes (up to `cut_within`), like a flaky network.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BUFFER = 1 << 16
CUT_WITHIN = 4 << 20


class ByteProxy:
    def __init__(self, target_port: int, seed: int = 0) -> None:
        self.target_port = target_port
        self.cut_probability = 0.0
        self.cut_within = CUT_WITHIN
        self.cuts = 0
        self._rng = random.Random(seed)
        self.port = 0
        self.down = 0  # server -> client
        self.up = 0  # client -> server
        self.connections = 0
        self.sent = bytearray()  # everything the clients sent (for tests that read requests)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="byte-proxy", daemon=True)

    def reset(self) -> None:
        self.down = self.up = self.connections = 0
        self.sent.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        budget = [self._rng.randrange(self.cut_within) if self._rng.random() < self.cut_probability else -1]
        await asyncio.gather(
            self._pipe(reader, up_writer, True, budget, writer),
            self._pipe(up_reader, writer, False, budget, up_writer),
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upward: bool,
        budget: list[int],
        other: asyncio.StreamWriter,
    ) -> None:
        """Copy one direction; `budget` (shared by both directions) counts
        down the bytes left before the cut, -1 for never."""
        try:
            while data := await reader.read(BUFFER):
                if budget[0] >= 0:
                    budget[0] -= len(data)
                    if budget[0] < 0:
                        self.cuts += 1
                        for w in (writer, other):
                            w.transport.abort()  # a reset, not a clean close
                        return
                if upward:
                    self.up += len(data)
                    self.sent += data
                else:
                    self.down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


@contextmanager
def byte_proxy(target_port: int, seed: int = 0) -> Iterator[ByteProxy]:
    proxy = ByteProxy(target_port, seed)
    proxy._thread.start()
    proxy._ready.wait(10)
    try:
        yield proxy
    finally:
        proxy._loop.call_soon_threadsafe(proxy._loop.stop)
        proxy._thread.join(timeout=10)

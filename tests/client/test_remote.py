"""The HTTP adapter: its transport policy (checked without touching the
network: the constructor decides before any connection exists), how it
treats a reply cut short, and ranges read a piece at a time."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import socket
import threading
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import pytest

from keep.client import transport
from keep.client.engine import collector
from keep.client.remote import InsecureTransportError, Remote
from keep.client.transport import send_file
from keep.protocol.errors import (
    IntegrityError,
    KeepError,
    NotFoundError,
    ProtocolViolationError,
    ServerUnreachableError,
)
from keep.protocol.limits import MiB
from keep.protocol.object_id import object_id


@pytest.mark.parametrize(
    "url", ["http://192.0.2.10:8420", "http://backup.example.net", "http://[2001:db8::1]:80"]
)
def test_plain_http_to_another_machine_is_refused(url: str) -> None:
    with pytest.raises(InsecureTransportError, match="refusing plain http"):
        Remote(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8420", "http://127.8.9.1", "http://localhost:1", "http://[::1]:8420"]
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    Remote(url).close()


def test_insecure_http_must_be_asked_for() -> None:
    Remote("http://192.0.2.10:8420", allow_insecure_http=True).close()
    Remote("https://backup.example.net").close()


@pytest.mark.parametrize("url", ["ftp://x", "file:///etc/passwd", "backup.example.net"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(KeepError):
        Remote(url)


def test_a_reply_cut_short_by_the_connection_is_retried() -> None:
    """A server that dies in the middle of a reply (Content-Length promised,
    connection closed early) is a network failure: the request is retried,
    not reported as an object that does not hash to its name."""
    body = os.urandom(100_000)
    object_id = hashlib.sha256(body).hexdigest()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    served: list[int] = []

    def serve() -> None:
        for attempt in range(2):
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n"
                conn.sendall(head.encode() + (body[: len(body) // 2] if attempt == 0 else body))
                served.append(attempt)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with Remote(f"http://127.0.0.1:{port}") as remote:
        assert remote.get_object("pack", object_id) == body
    thread.join(5)
    listener.close()
    assert served == [0, 1]


def _serve_once(body: bytes) -> tuple[int, threading.Thread]:
    """A port that answers one request with `body`, whatever was asked."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.mark.parametrize("named_by", ["blake3", "sha256", "neither"])
def test_a_whole_object_must_hash_to_its_name_under_either_hash(named_by: str) -> None:
    """New objects are named by BLAKE3, older ones by SHA-256: a download is
    accepted under either name and refused under any other, so a server
    cannot pass other bytes off under an object's name."""
    body = os.urandom(50_000)
    name = {
        "blake3": object_id(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "neither": object_id(body[:-1]),
    }[named_by]
    port, thread = _serve_once(body)
    with Remote(f"http://127.0.0.1:{port}") as remote:
        if named_by == "neither":
            with pytest.raises(IntegrityError, match="does not hash to its name"):
                remote.get_object("pack", name)
        else:
            assert remote.get_object("pack", name) == body
    thread.join(5)


def _body(tmp_path: Path, size: int) -> BinaryIO:
    path = tmp_path / "body"
    path.write_bytes(os.urandom(size))
    return path.open("rb")


def test_a_file_body_goes_out_whole_and_leaves_no_garbage(tmp_path: Path) -> None:
    """8 MiB through a socket with a timeout (non-blocking underneath, so
    sendfile(2) waits for room as the reader drains it), byte for byte, and
    no reference cycle behind: a backup pauses the collector for its whole
    length, and `socket.sendfile` leaves one per call."""
    size = 8 * MiB + 123
    with _body(tmp_path, size) as body:
        expected = body.read()
        a, b = socket.socketpair()
        a.settimeout(10)
        got = bytearray()

        def drain() -> None:
            while len(got) < size and (piece := b.recv(1 << 16)):
                got.extend(piece)

        reader = threading.Thread(target=drain)
        reader.start()
        gc.collect()
        with a, b, collector.paused():
            send_file(a, body, size)
            reader.join(timeout=30)
            assert gc.collect() == 0
    assert bytes(got) == expected


def test_a_file_body_that_cannot_be_sent_in_time_is_a_timeout(tmp_path: Path) -> None:
    """The peer reads nothing: once the socket buffers are full the wait
    for room ends at the socket's timeout, as a network failure."""
    with _body(tmp_path, 32 * MiB) as body:
        a, b = socket.socketpair()
        a.settimeout(0.2)
        with a, b, pytest.raises(TimeoutError):
            send_file(a, body, 32 * MiB)


def test_a_file_body_shorter_than_its_length_is_an_error(tmp_path: Path) -> None:
    """A body that ends before the length its request announced is not sent
    as if complete (the request would be cut short)."""
    with _body(tmp_path, 1000) as body:
        a, b = socket.socketpair()
        a.settimeout(5)
        with a, b, pytest.raises(OSError, match="ended after 1000 of its 2000 bytes"):
            send_file(a, body, 2000)


class _RangeServer:
    """One object's byte ranges on a raw socket, on keep-alive connections.
    The n-th request is answered as `replies[n]` says: "whole" (206 with the
    range), "cut" (the range's length promised, half of it sent, the
    connection closed), "short" (206 one byte short, said so), "long" (a
    length one byte longer than asked), "404", or "200" (the whole object,
    the Range ignored). Records each Range asked and the connection it came
    on."""

    def __init__(self, data: bytes, replies: list[str]) -> None:
        self.data, self.replies = memoryview(data), replies
        self.asked: list[tuple[int, int, int]] = []  # (first, last, connection number)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connections = 0
        with self.listener:
            while len(self.asked) < len(self.replies):
                conn, _ = self.listener.accept()
                connections += 1
                with conn, contextlib.suppress(ConnectionError):  # the client dropped it
                    while len(self.asked) < len(self.replies) and self._answer(conn, connections):
                        pass

    def _answer(self, conn: socket.socket, connection: int) -> bool:
        """One request on `conn`; False once the connection is over."""
        request = b""
        while b"\r\n\r\n" not in request:
            piece = conn.recv(65536)
            if not piece:
                return False
            request += piece
        spec = next(line for line in request.split(b"\r\n") if line.lower().startswith(b"range:"))
        first, last = (int(x) for x in spec.split(b"=")[1].split(b"-"))
        reply = self.replies[len(self.asked)]
        self.asked.append((first, last, connection))
        part = self.data[first : last + 1]
        status, declared, sent = 206, len(part), part
        if reply == "404":
            status, declared, sent = 404, 2, memoryview(b"{}")
        elif reply == "200":
            status, declared, sent = 200, len(self.data), self.data
        elif reply == "short":
            declared, sent = len(part) - 1, part[:-1]
        elif reply == "long":
            declared = len(part) + 1
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {declared}\r\n\r\n".encode())
        if reply == "cut":
            conn.sendall(part[: len(part) // 2])
            return False
        conn.sendall(sent)
        return reply != "long"


def test_a_range_is_read_a_piece_at_a_time_and_asked_again_from_where_it_broke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection that breaks in the middle of a range is not the end of
    it, nor a reason to fetch it all again: what was read stays read, and
    the rest is asked for from the end of the last whole piece."""
    monkeypatch.setattr(transport, "_jittered", lambda delay: 0.0)
    data = os.urandom(4 * MiB)
    start, end = 64 * 1024, 4 * MiB
    server = _RangeServer(data, ["cut", "whole"])
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        with remote.range_reader("pack", "ab" * 32, start, end) as reader:
            got = [reader.read(MiB), reader.read(MiB)]  # the cut falls inside the second piece
            reader.skip(MiB)
            got.append(reader.read(end - reader.position))
    assert b"".join(got[:2]) == data[start : start + 2 * MiB]
    assert got[2] == data[start + 3 * MiB : end]
    assert [(first, last) for first, last, _ in server.asked] == [(start, end - 1), (start + MiB, end - 1)]
    server.thread.join(5)


def test_a_range_reader_holds_one_piece_not_the_range() -> None:
    """32 MiB taken in 1 MiB pieces: what the reader allocates at its peak
    is about one piece (a fetch thread of a restore holds one blob)."""
    data = os.urandom(32 * MiB)
    server = _RangeServer(data, ["whole"])
    total = 0
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        tracemalloc.start()
        try:
            with remote.range_reader("pack", "ab" * 32, 0, len(data)) as reader:
                while reader.position < len(data):
                    piece = reader.read(MiB)
                    assert piece == data[total : total + MiB]
                    total += len(piece)
                    del piece
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert total == len(data)
    assert peak < 4 * MiB, peak
    server.thread.join(5)


def test_a_range_that_keeps_breaking_ends_as_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_jittered", lambda delay: 0.0)
    data = os.urandom(MiB)
    server = _RangeServer(data, ["cut"] * transport.RETRIES)
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        reader = remote.range_reader("pack", "ab" * 32, 0, MiB)
        with reader, pytest.raises(ServerUnreachableError, match="cannot reach the server") as caught:
            reader.read(MiB)
    assert "\n" not in str(caught.value)
    assert len(server.asked) == transport.RETRIES
    server.thread.join(5)


@pytest.mark.parametrize(
    ("reply", "error", "says", "next_connection"),
    [
        ("short", IntegrityError, "short range", 2),
        ("long", ProtocolViolationError, "larger than allowed", 2),
        ("404", NotFoundError, "has no pack", 1),
        ("200", KeepError, "HTTP 200", 2),
    ],
)
def test_a_range_the_server_answers_wrongly_is_refused(
    reply: str, error: type, says: str, next_connection: int
) -> None:
    """Fewer bytes than asked (damage the files that needed them), more
    (never read), no object, or the whole object where a range was asked:
    each a clear error. A connection whose body was left unread is not used
    again; after a 404's short body it is."""
    data = os.urandom(MiB)
    server = _RangeServer(data, [reply, "whole"])
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        with remote.range_reader("pack", "ab" * 32, 0, MiB) as reader, pytest.raises(error, match=says):
            reader.read(MiB)
        assert remote.get_range("pack", "ab" * 32, 0, 100) == data[:100]
    assert server.asked[1][2] == next_connection
    server.thread.join(5)


def test_a_range_closed_part_way_leaves_no_unread_body_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader closed before its end (the restore stopping) drops its
    connection: the thread's next request goes out at once on a new one
    (no failure, no retry), and its reply is not mistaken for the rest of
    the old body."""

    def no_retry(delay: float) -> float:
        raise AssertionError("a request was retried")

    monkeypatch.setattr(transport, "_jittered", no_retry)
    data = os.urandom(4 * MiB)
    server = _RangeServer(data, ["whole", "whole", "whole"])
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        with remote.range_reader("pack", "ab" * 32, 0, len(data)) as reader:
            assert reader.read(MiB) == data[:MiB]
        assert remote.get_range("pack", "ab" * 32, 10, 20) == data[10:20]
        with remote.range_reader("pack", "ab" * 32, 0, 100) as reader:  # read to its end: kept alive
            assert reader.read(100) == data[:100]
    assert [c for _, _, c in server.asked] == [1, 2, 2]
    server.thread.join(5)


def test_the_end_of_a_widened_range_is_read_off_and_the_connection_kept() -> None:
    """A restore's range runs past its last blob (widened to 64 KiB
    boundaries): what is left, when little, is read off at the end so the
    thread's next range goes out on the same connection, not a new one."""
    data = os.urandom(2 * MiB)
    server = _RangeServer(data, ["whole", "whole"])
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        with remote.range_reader("pack", "ab" * 32, 0, MiB) as reader:
            assert reader.read(MiB - 60_000) == data[: MiB - 60_000]
        with remote.range_reader("pack", "ab" * 32, MiB, 2 * MiB) as reader:
            assert reader.read(MiB) == data[MiB:]
    assert [c for _, _, c in server.asked] == [1, 1]
    server.thread.join(5)


def test_small_pieces_are_read_ahead_and_a_break_resumes_at_the_first_byte_not_read_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A range of 4 KiB blobs is taken off the body READ_AHEAD bytes at a
    time, not a socket read per blob; when the connection breaks half-way,
    the rest is asked for from the first byte not yet read off the body,
    and every piece is exact."""
    monkeypatch.setattr(transport, "_jittered", lambda delay: 0.0)
    sizes: list[int] = []
    real_read = transport.BodyStream.read

    def counted(self: transport.BodyStream, n: int) -> bytes:
        sizes.append(n)
        return real_read(self, n)

    monkeypatch.setattr(transport.BodyStream, "read", counted)
    data = os.urandom(MiB)
    server = _RangeServer(data, ["cut", "whole"])
    pieces = []
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        with remote.range_reader("pack", "ab" * 32, 0, MiB) as reader:
            while reader.position < MiB:
                pieces.append(reader.read(4096))
                reader.skip(0)
    assert b"".join(pieces) == data
    ahead = transport.RangeReader.READ_AHEAD
    assert sizes == [ahead] * (MiB // ahead + 1)  # one of them broke and was asked again
    assert [(first, last) for first, last, _ in server.asked] == [(0, MiB - 1), (MiB // 2, MiB - 1)]
    server.thread.join(5)


def test_a_resumed_range_starts_on_a_boundary_not_where_a_blob_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where a reader resumes would show the server where a blob begins
    (a hostile server can cut connections at will): it asks again from the
    `align` boundary before that, as a range's own start is aligned, and
    drops what it had already."""
    monkeypatch.setattr(transport, "_jittered", lambda delay: 0.0)
    data = os.urandom(2 * MiB)
    server = _RangeServer(data, ["cut", "whole"])
    blob = 300_000  # larger than READ_AHEAD: read straight off the body
    pieces = []
    with Remote(f"http://127.0.0.1:{server.port}") as remote:
        with remote.range_reader("pack", "ab" * 32, 0, len(data), align=65536) as reader:
            while reader.position < len(data):
                pieces.append(reader.read(min(blob, len(data) - reader.position)))
    assert b"".join(pieces) == data
    broke_in = 3 * blob  # the fourth piece spans the cut at 1 MiB
    assert [(first, last) for first, last, _ in server.asked] == [
        (0, len(data) - 1),
        (broke_in - broke_in % 65536, len(data) - 1),
    ]
    server.thread.join(5)

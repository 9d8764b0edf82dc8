"""The HTTP adapter: its transport policy (checked without touching the
network: the constructor decides before any connection exists) and how it
treats a reply cut short."""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from keep.client.engine import collector
from keep.client.remote import InsecureTransportError, Remote
from keep.client.transport import send_file
from keep.protocol.errors import IntegrityError, KeepError
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

"""The HTTP adapter: its transport policy (checked without touching the
network: the constructor decides before any connection exists) and how it
treats a reply cut short."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

import pytest

from keep.client.remote import InsecureTransportError, Remote
from keep.protocol.errors import KeepError


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

"""Neither server names its software or versions to whoever connects: no
Server header (or an empty one) on ordinary replies, errors, or the replies
to malformed requests that no handler sees."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import checkin_server, keep_server

REQUESTS = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /v1/address HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /no/such/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"BREW /\x00 HTTP/9.9\r\n\r\n",  # malformed: answered by the HTTP parser
]


@pytest.fixture(params=["keep-server", "keep-checkin"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int]]:
    starter = keep_server if request.param == "keep-server" else checkin_server
    with starter(tmp_path / "data") as (url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        yield host, int(port)


def raw(address: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_no_server_software_or_version_in_any_reply(base: tuple[str, int]) -> None:
    for request in REQUESTS:
        head = raw(base, request).split(b"\r\n\r\n", 1)[0].decode("latin-1")
        assert head.startswith("HTTP/1."), head
        server = re.findall(r"^server:(.*)$", head, re.IGNORECASE | re.MULTILINE)
        assert all(not value.strip() for value in server), head
        assert not re.search(r"python|aiohttp|/\d+\.\d+", head.split("\r\n", 1)[1], re.IGNORECASE), head

"""When the server cannot be reached, or something that is not a keep-server
answers, `keep` says what is wrong and what to check in one line — never
"HTTP 404", "server error 303" or an exception's class name alone."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from keep.client.remote import Remote
from support.servers import free_port
from tests.client.conftest import Device


@contextmanager
def web_server(status: int, headers: dict[str, str] | None = None) -> Iterator[str]:
    """A web server that is not a keep-server (a default site, a redirect, a
    proxy asking for its own login): every request gets `status`, HTML body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815 (http.server's names)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def login(device: Device, url: str) -> tuple[int, str]:
    result = device.run(
        "login", "--server", url, "--account", "x", "--password-file", str(device.password_file), check=False
    )
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.returncode, result.stderr.strip()


@pytest.mark.parametrize(
    ("status", "headers", "says"),
    [
        (404, {}, "no keep-server answers at {url}: it said 404 (not found) to the API — is the URL right"),
        (303, {"Location": "https://elsewhere.example/"}, "{url} redirects elsewhere (HTTP 303)"),
        (407, {}, "{url} refused the request (HTTP 407) without saying why"),
        (200, {}, "{url} answered HTTP 200, not as a keep-server does — is the URL right?"),
        (502, {}, "{url} answered HTTP 502, not as a keep-server does"),
    ],
)
def test_something_else_answering_is_named(
    device: Device, status: int, headers: dict[str, str], says: str
) -> None:
    with web_server(status, headers) as url:
        code, message = login(device, url)
    assert code != 0
    assert says.format(url=url) in message
    assert "HTTP 404" not in message.replace("(HTTP", "")


def test_nobody_listening_and_unknown_host(device: Device) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, message = login(device, url)
    assert code == 12
    assert f"no keep-server answers at {url} (connection refused) — is the URL right" in message
    code, message = login(device, "https://keep-test.invalid:8443")
    assert code == 12
    assert "cannot resolve the host name 'keep-test.invalid' — is the server address right?" in message
    assert "gaierror" not in message


def test_https_to_a_plain_http_port(device: Device, server: str) -> None:
    code, message = login(device, server.replace("http://", "https://"))
    assert code == 12
    assert "is that port an https server?" in message


@contextmanager
def answering(statuses: list[tuple[int, dict[str, str]]]) -> Iterator[tuple[str, list[float]]]:
    """A server giving these statuses in turn (then 200 with a JSON body);
    yields its URL and the times requests arrived."""
    arrivals: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            arrivals.append(time.monotonic())
            status, headers = statuses.pop(0) if statuses else (200, {})
            body = b'{"bytes": 1}' if status == 200 else b'{"code": "internal", "message": "busy"}'
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", arrivals
    finally:
        server.shutdown()
        server.server_close()


def test_a_busy_server_is_retried_after_its_retry_after() -> None:
    with answering([(503, {"Retry-After": "1"}), (429, {"Retry-After": "1"})]) as (url, arrivals):
        with Remote(url) as remote:
            assert remote.request_json("GET", "/v1/usage") == {"bytes": 1}
    assert len(arrivals) == 3
    assert arrivals[1] - arrivals[0] >= 0.95  # waited as asked
    assert arrivals[2] - arrivals[1] >= 0.95


def test_retries_without_retry_after_are_jittered() -> None:
    gaps = []
    for _ in range(6):
        with answering([(503, {})]) as (url, arrivals), Remote(url) as remote:
            remote.request_json("GET", "/v1/usage")
        gaps.append(arrivals[1] - arrivals[0])
    assert all(0.2 <= g <= 0.9 for g in gaps), gaps  # 0.5 s ± 50%
    assert max(gaps) - min(gaps) > 0.02  # not all the same: spread out

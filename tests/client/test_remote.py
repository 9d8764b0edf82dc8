"""The HTTP adapter's transport policy (checked without touching the network:
the constructor decides before any connection exists)."""

from __future__ import annotations

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

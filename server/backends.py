"""Opens storage backends from URLs: `sqlite:///path`, `file:///path`.

The scale-out issue adds `postgresql://` and `s3://` here; nothing else in the
server knows which backend it runs on.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from keep.protocol.errors import KeepError
from keep.server.storage.directory import DirectoryObjectStore
from keep.server.storage.metadata import MetadataStore
from keep.server.storage.objects import ObjectStore
from keep.server.storage.sqlite import SqliteMetadataStore


class BackendURLError(KeepError):
    """Raised when a storage URL names an unknown scheme or has no path."""


def _local_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path:
        raise BackendURLError(f"{parts.scheme} URL must be {parts.scheme}:///absolute/path")
    return Path(parts.path)


def check_urls(metadata_url: str, objects_url: str) -> None:
    """Raise `BackendURLError` now, rather than when the server starts."""
    for url, known in ((metadata_url, ("sqlite",)), (objects_url, ("file",))):
        scheme = urlsplit(url).scheme
        if scheme not in known:
            raise BackendURLError(
                f"unsupported backend {scheme!r} in {describe(url)} (supported: {', '.join(known)})"
            )
        _local_path(url)


def metadata_store(url: str) -> MetadataStore:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteMetadataStore(_local_path(url))
    raise BackendURLError(f"unsupported metadata backend {scheme!r} (supported: sqlite)")


def object_store(url: str) -> ObjectStore:
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return DirectoryObjectStore(_local_path(url))
    raise BackendURLError(f"unsupported object backend {scheme!r} (supported: file)")


def describe(url: str) -> str:
    """A URL for logs: scheme and path only, never credentials or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}"

"""Opens storage backends from URLs; nothing else in the server knows which
backend it runs on.

- metadata: `sqlite:///path/keep.db` (default) or
  `postgresql://user@host:port/db?pool_max=10` (optional extra `postgres`);
- objects: `file:///path/objects` (default) or
  `s3://BUCKET/PREFIX?endpoint=URL&region=R` (optional extra `s3`).

The optional drivers are imported only when their scheme is used.
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


METADATA_SCHEMES = ("sqlite", "postgresql", "postgres")
OBJECT_SCHEMES = ("file", "s3")


def check_urls(metadata_url: str, objects_url: str) -> None:
    """Raise `BackendURLError` now, rather than when the server starts."""
    for url, known in ((metadata_url, METADATA_SCHEMES), (objects_url, OBJECT_SCHEMES)):
        parts = urlsplit(url)
        if parts.scheme not in known:
            raise BackendURLError(
                f"unsupported backend {parts.scheme!r} in {describe(url)} (supported: {', '.join(known)})"
            )
        if parts.scheme in ("sqlite", "file"):
            _local_path(url)
        elif not parts.netloc:
            raise BackendURLError(f"{describe(url)} names no host (postgresql) or bucket (s3)")


def metadata_store(url: str) -> MetadataStore:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteMetadataStore(_local_path(url))
    if scheme in ("postgresql", "postgres"):
        try:
            from keep.server.storage.postgres import PostgresMetadataStore
        except ImportError:
            raise BackendURLError("PostgreSQL needs the 'postgres' extra (asyncpg)") from None
        return PostgresMetadataStore(url)
    raise BackendURLError(
        f"unsupported metadata backend {scheme!r} (supported: {', '.join(METADATA_SCHEMES)})"
    )


def object_store(url: str) -> ObjectStore:
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return DirectoryObjectStore(_local_path(url))
    if scheme == "s3":
        try:
            from keep.server.storage.s3 import S3ObjectStore
        except ImportError:
            raise BackendURLError("S3 needs the 's3' extra (aiobotocore)") from None
        return S3ObjectStore(url)
    raise BackendURLError(f"unsupported object backend {scheme!r} (supported: {', '.join(OBJECT_SCHEMES)})")


def describe(url: str) -> str:
    """A URL for logs: scheme and path only, never credentials or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}"

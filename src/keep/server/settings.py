"""keep-server settings: one frozen dataclass, built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keep.protocol.limits import OBJECT_MAX


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8420
    registration: str = "open"  # open | invite (keep-server invite NAME) | closed
    metadata_url: str | None = None  # default: sqlite:///<data_dir>/keep.db
    objects_url: str | None = None  # default: file:///<data_dir>/objects
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_ttl: int = 3600  # seconds an owner session lives
    default_quota: int | None = None  # bytes per account; None = unlimited
    object_max: int = OBJECT_MAX
    json_max: int = 1024 * 1024  # client_max_size for JSON bodies
    log_client_addresses: bool = False  # access log with IPs, only if the operator asks
    login_free_attempts: int = 5  # failures of one name from one address before slowing down
    login_free_per_account: int = 20  # failures of one name from anywhere
    login_free_per_address: int = 50  # failures from one address for any names
    login_max_delay: int = 900  # seconds; never a permanent lock-out
    device_touch_interval: int = 60  # seconds between last-seen updates

    @property
    def resolved_metadata_url(self) -> str:
        return self.metadata_url or f"sqlite:///{self.data_dir / 'keep.db'}"

    @property
    def resolved_objects_url(self) -> str:
        return self.objects_url or f"file:///{self.data_dir / 'objects'}"

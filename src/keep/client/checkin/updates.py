"""The signed update check: python-tuf's ngclient with a pinned root.
Expired, rolled-back, badly signed or tampered metadata is an error, never
"up to date". It sends no device id, no token and no query string."""

from __future__ import annotations

import importlib.metadata
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keep.client.checkin.agent import Settings, record, transport
from keep.client.transport import Transport
from keep.protocol.errors import ExitCode, KeepError
from keep.protocol.limits import MiB

DOWNLOAD_MAX = 16 * MiB  # one metadata file or target (python-tuf bounds each far lower)
UPDATE_EVERY = 86400  # one update check a day …
UPDATE_JITTER = 7200  # … at a random time up to 2 h later, so devices do not arrive together


class UpdateVerificationError(KeepError):
    """Raised when update metadata fails verification (possible attack)."""

    exit_code = ExitCode.INTEGRITY


def check_in(settings: Settings, state: dict[str, Any], home: Path, now: float, force: bool = False) -> str:
    """One update check (if due, or `force`); returns a one-line result,
    raises UpdateVerificationError."""
    s = state.setdefault("updates", {})
    if not settings.updates:
        return "off"
    if not force and now < s.get("next_check", 0):
        return f"next check after {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['next_check']))}"
    s["next_check"] = now + UPDATE_EVERY + secrets.randbelow(UPDATE_JITTER)
    if not settings.url:
        return record(s, now, "not configured: set [checkin] url", attempt=False)
    try:
        root = settings.update_root.read_bytes()
    except OSError:
        return record(s, now, f"no trusted update root at {settings.update_root}", attempt=False)
    try:
        version = _latest_version(transport(settings, s), root, home)
    except UpdateVerificationError as exc:
        raise _verification(s, now, str(exc)) from None
    except (KeepError, OSError, ValueError, KeyError) as exc:
        return record(s, now, f"error: {exc}")
    if version is None:
        return record(s, now, "no release published yet")
    current = installed_version()
    s["latest"] = version
    if _newer(version, current):
        return record(s, now, f"update available: {version} (installed {current})")
    return record(s, now, f"up to date ({current})")


def _latest_version(http: Transport, root: bytes, home: Path) -> str | None:
    """The newest released version, from verified metadata; None if nothing
    is released. Verification failures raise UpdateVerificationError, an
    unreachable service OSError."""
    from tuf.api import exceptions as tuf_errors
    from tuf.ngclient import Updater

    metadata_dir = home / "updates" / "metadata"
    targets_dir = home / "updates" / "targets"
    metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    targets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = http.base_url
    try:
        updater = Updater(
            str(metadata_dir),
            f"{url}/updates/metadata/",
            str(targets_dir),
            f"{url}/updates/targets/",
            bootstrap=root,
            fetcher=_fetcher(http),
        )
        updater.refresh()
        info = updater.get_targetinfo("latest.json")
        if info is None:
            return None
        return str(json.loads(Path(updater.download_target(info)).read_text())["version"])
    except tuf_errors.DownloadError as exc:
        raise OSError(f"update service unreachable ({exc})") from None
    except tuf_errors.RepositoryError as exc:  # every verification failure is one of these
        what = next(text for kind, text in _refusals(tuf_errors) if isinstance(exc, kind))
        raise UpdateVerificationError(f"update metadata {what}: {exc}") from None
    finally:
        http.close()


def _fetcher(http: Transport) -> Any:
    """python-tuf's downloads through the device's one HTTP transport: the
    fixed User-Agent the status page shows (python-tuf's own adds its
    version), the configured CA file, bounded reads, and nothing fetched
    from anywhere but below the check-in URL."""
    from tuf.api import exceptions as tuf_errors
    from tuf.ngclient import FetcherInterface

    base = http.base_url + "/"

    class Fetcher(FetcherInterface):
        def _fetch(self, url: str) -> Iterator[bytes]:
            if not url.startswith(base):
                raise tuf_errors.DownloadError(f"not below the check-in URL: {url[:80]!r}")
            try:
                reply = http.request("GET", url[len(http.base_url) :], limit=DOWNLOAD_MAX)
            except KeepError as exc:  # unreachable, or a reply larger than any metadata
                raise tuf_errors.DownloadError(str(exc)) from None
            if reply.status != 200:
                raise tuf_errors.DownloadHTTPError(f"HTTP {reply.status}", reply.status)
            return iter((reply.body,))

    return Fetcher()


def _refusals(tuf_errors: Any) -> list[tuple[type[Exception], str]]:
    """How each kind of verification failure is reported, most specific first."""
    return [
        (tuf_errors.ExpiredMetadataError, "has expired (possible freeze attack)"),
        (tuf_errors.BadVersionNumberError, "was rolled back"),
        (tuf_errors.UnsignedMetadataError, "is not properly signed"),
        (tuf_errors.LengthOrHashMismatchError, "or release does not match its signed hash"),
        (tuf_errors.RepositoryError, "is inconsistent"),
    ]


def installed_version() -> str:
    try:
        return importlib.metadata.version("keep-backup")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _newer(a: str, b: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) if p.isdigit() else 0 for p in v.split("."))

    return parts(a) > parts(b)


def _verification(s: dict[str, Any], now: float, message: str) -> UpdateVerificationError:
    record(s, now, f"REFUSED: {message}")
    return UpdateVerificationError(message)

"""The device agent's two check-ins: DNS pointer (DDNS) and update check.

Each is switched by `[phonehome] ddns` / `updates` in keep.toml (both on by
default). Switched off means no connection at all for it; the one exception
is switching DDNS off, which asks the service once to delete the record.

DDNS etiquette: the agent asks the service which address it comes from and
sends an update only when that changed (at most once per MIN_UPDATE_GAP),
plus a keep-alive every KEEPALIVE; after an error it backs off exponentially;
on badauth, nohost or a taken name it stops and says so until switched off
and on again. Update checks use python-tuf's ngclient with a pinned root:
expired, rolled-back, badly signed or tampered metadata is an error, never
"up to date". They send no device id, no token and no query string.

What each run did is kept in `$KEEP_HOME/phonehome.json` (0600; it holds the
DDNS token) for `keep phonehome status` and the admin page.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keep.client.device.config import PhonehomeSettings, update_config
from keep.client.device.state import read_record, write_private
from keep.protocol.errors import ExitCode, KeepError

STATE_FILE = "phonehome.json"
MIN_UPDATE_GAP = 600  # seconds between two DDNS updates
KEEPALIVE = 7 * 86400  # refresh an unchanged record weekly
BACKOFF_START, BACKOFF_MAX = 300, 86400
TIMEOUT = 20
DEFAULT_ROOT = Path("/etc/keep/update-root.json")
USER_AGENT = "keep"  # every check-in request: fixed, no version (the status page shows it)
FETCH_TIMEOUT = 30  # seconds without progress on an update download
FETCH_CHUNK = 64 * 1024
UPDATE_EVERY = 86400  # one update check a day …
UPDATE_JITTER = 7200  # … at a random time up to 2 h later, so devices do not arrive together


SWITCHES = {"ddns": "DNS pointer updates", "updates": "Update checks"}


def set_switches(config_file: Path, keys: list[str], value: bool) -> None:
    """Set `[phonehome] KEY = value` in keep.toml for each switch in `keys`."""
    for key in keys:
        if key not in SWITCHES:
            raise ValueError(f"unknown switch {key!r}")
    update_config(config_file, "phonehome", dict.fromkeys(keys, value))


class UpdateVerificationError(KeepError):
    """Raised when update metadata fails verification (possible attack)."""

    exit_code = ExitCode.INTEGRITY


@dataclass(frozen=True)
class Settings:
    url: str | None
    ddns: bool
    updates: bool
    name: str | None
    update_root: Path
    ca_file: str | None = None

    @classmethod
    def from_config(cls, table: PhonehomeSettings, ca_file: str | None = None) -> Settings:
        return cls(
            url=table.url.rstrip("/") if table.url else None,
            ddns=table.ddns,
            updates=table.updates,
            name=table.name.lower() if table.name else None,
            update_root=Path(table.update_root) if table.update_root else DEFAULT_ROOT,
            ca_file=ca_file,
        )


def load_state(home: Path) -> dict[str, Any]:
    state = read_record(home / STATE_FILE)
    return state if state is not None else {"ddns": {}, "updates": {}}


def save_state(home: Path, state: dict[str, Any]) -> None:
    write_private(home / STATE_FILE, json.dumps(state, indent=1).encode())


class _Http:
    """Small JSON-over-HTTP(S) helper for the agent (generic User-Agent)."""

    def __init__(self, base: str, ca_file: str | None) -> None:
        self.base = base
        self.context = ssl.create_default_context(cafile=ca_file) if base.startswith("https") else None

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.context) as reply:  # noqa: S310
                raw = reply.read(65536)
                return reply.status, json.loads(raw) if raw else None, dict(reply.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read(65536)
            with contextlib.suppress(ValueError):
                return exc.code, json.loads(raw) if raw else None, dict(exc.headers)
            return exc.code, None, dict(exc.headers)


def ddns_checkin(settings: Settings, state: dict[str, Any], now: float) -> str:
    """One DDNS run; returns a one-line result and updates `state["ddns"]`."""
    s = state.setdefault("ddns", {})
    gate = _ddns_gate(settings, state, now)
    if gate is not None or settings.url is None:  # the gate checked the url
        return gate or "not configured"
    http = _Http(settings.url, settings.ca_file)
    try:
        stop = _claim(http, settings, s)
        if stop:
            s["stopped"] = stop
            return _result(s, now, f"stopped: {stop}")
        status, body, _ = http.call("GET", "/v1/address")
        if status != 200 or not isinstance(body, dict):
            raise OSError(f"address query failed with HTTP {status}")
        address = str(body["address"])
        since = now - s.get("last_sent", 0)
        if address == s.get("last_address") and since < KEEPALIVE:
            s.pop("failures", None)
            return _result(s, now, f"unchanged ({address})")
        if since < MIN_UPDATE_GAP:
            s["next_attempt"] = s.get("last_sent", 0) + MIN_UPDATE_GAP
            return _result(
                s, now, f"address changed to {address}; waiting {MIN_UPDATE_GAP // 60} min between updates"
            )
        field = "ipv6" if ":" in address else "ipv4"
        status, body, headers = http.call(
            "PUT", f"/v1/names/{settings.name}/address", {field: "auto"}, token=s["token"]
        )
    except (OSError, ValueError, KeyError) as exc:
        return _back_off(s, now, f"error: {exc}; retrying later")
    if status == 401:
        s["stopped"] = "the service rejected this device's token (badauth/nohost)"
        return _result(s, now, f"stopped: {s['stopped']}")
    if status == 429:
        s["next_attempt"] = now + int(headers.get("Retry-After", MIN_UPDATE_GAP))
        return _result(s, now, "the service asks to wait (abuse protection)")
    if status != 200:
        return _back_off(s, now, f"error: HTTP {status}; retrying later")
    s.update(last_address=address, last_sent=now)
    s.pop("failures", None)
    s.pop("next_attempt", None)
    return _result(s, now, f"updated {s.get('fqdn', settings.name)} -> {address}")


def _ddns_gate(settings: Settings, state: dict[str, Any], now: float) -> str | None:
    """Why this run opens no connection, or None if it may go ahead."""
    s = state["ddns"]
    if not settings.ddns:
        if s.get("pending_release"):
            release_name(settings, state)
            return "off (asked the service to delete the record)"
        return "off"
    if not settings.url or not settings.name:
        return _result(s, now, "not configured: set [phonehome] url and name", attempt=False)
    if s.get("stopped"):
        return _result(s, now, f"stopped: {s['stopped']} (switch DDNS off and on to retry)", attempt=False)
    if now < s.get("next_attempt", 0):
        return f"waiting until {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['next_attempt']))}"
    return None


def _back_off(s: dict[str, Any], now: float, result: str) -> str:
    failures = s.get("failures", 0) + 1
    s.update(failures=failures, next_attempt=now + min(BACKOFF_MAX, BACKOFF_START * 2 ** (failures - 1)))
    return _result(s, now, result)


def _claim(http: _Http, settings: Settings, s: dict[str, Any]) -> str | None:
    """Claim the configured name if this device holds no token for it; a
    reason to stop, or None."""
    if s.get("token") and s.get("name") == settings.name:
        return None
    status, body, _ = http.call("POST", "/v1/names", {"name": settings.name})
    if status == 409:
        return f"the name {settings.name} is taken"
    if status != 201 or not isinstance(body, dict):
        raise OSError(f"claim failed with HTTP {status}")
    s.update(token=body["token"], name=settings.name, fqdn=body.get("fqdn"))
    return None


def release_name(settings: Settings, state: dict[str, Any]) -> str:
    """Ask the service once to delete the record and forget the token."""
    s = state.setdefault("ddns", {})
    token, name = s.get("token"), s.get("name")
    s.pop("pending_release", None)
    if not token or not name or not settings.url:
        return "no record to delete"
    try:
        status, _, _ = _Http(settings.url, settings.ca_file).call("DELETE", f"/v1/names/{name}", token=token)
    except OSError as exc:
        result = f"could not reach the service to delete the record ({exc}); it expires there unused"
    else:
        result = "record deleted" if status in (204, 401) else f"delete answered HTTP {status}"
    for key in ("token", "name", "fqdn", "last_address", "last_sent", "stopped", "failures", "next_attempt"):
        s.pop(key, None)
    s["result"] = result
    return result


def updates_checkin(
    settings: Settings, state: dict[str, Any], home: Path, now: float, force: bool = False
) -> str:
    """One update check (if due, or `force`); returns a one-line result,
    raises UpdateVerificationError."""
    s = state.setdefault("updates", {})
    if not settings.updates:
        return "off"
    if not force and now < s.get("next_check", 0):
        return f"next check after {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['next_check']))}"
    s["next_check"] = now + UPDATE_EVERY + secrets.randbelow(UPDATE_JITTER)
    if not settings.url:
        return _result(s, now, "not configured: set [phonehome] url", attempt=False)
    try:
        root = settings.update_root.read_bytes()
    except OSError:
        return _result(s, now, f"no trusted update root at {settings.update_root}", attempt=False)
    try:
        version = _latest_version(settings.url, root, home, settings.ca_file)
    except UpdateVerificationError as exc:
        raise _verification(s, now, str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        return _result(s, now, f"error: {exc}")
    if version is None:
        return _result(s, now, "no release published yet")
    current = installed_version()
    s["latest"] = version
    if _newer(version, current):
        return _result(s, now, f"update available: {version} (installed {current})")
    return _result(s, now, f"up to date ({current})")


def _latest_version(url: str, root: bytes, home: Path, ca_file: str | None = None) -> str | None:
    """The newest released version, from verified metadata; None if nothing
    is released. Verification failures raise UpdateVerificationError, an
    unreachable service OSError."""
    from tuf.api import exceptions as tuf_errors
    from tuf.ngclient import Updater

    metadata_dir = home / "updates" / "metadata"
    targets_dir = home / "updates" / "targets"
    metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    targets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        updater = Updater(
            str(metadata_dir),
            f"{url}/updates/metadata/",
            str(targets_dir),
            f"{url}/updates/targets/",
            bootstrap=root,
            fetcher=_fetcher(ca_file),
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


def _fetcher(ca_file: str | None) -> Any:
    """python-tuf's downloads through the standard library, with the fixed
    User-Agent the status page shows (python-tuf's own adds its version) and
    the configured CA file ([server] ca_file / --ca-file)."""
    from tuf.api import exceptions as tuf_errors
    from tuf.ngclient import FetcherInterface

    context = ssl.create_default_context(cafile=ca_file)

    class Fetcher(FetcherInterface):
        def _fetch(self, url: str) -> Iterator[bytes]:
            if not url.startswith(("https://", "http://")):
                raise tuf_errors.DownloadError(f"not an http(s) URL: {url[:80]!r}")
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310 (checked)
            try:
                reply = urllib.request.urlopen(request, timeout=FETCH_TIMEOUT, context=context)  # noqa: S310 (checked)
            except urllib.error.HTTPError as exc:
                exc.close()
                raise tuf_errors.DownloadHTTPError(f"HTTP {exc.code}", exc.code) from None
            except TimeoutError as exc:
                raise tuf_errors.SlowRetrievalError from exc
            return self._chunks(reply)

        @staticmethod
        def _chunks(reply: Any) -> Iterator[bytes]:
            with reply:
                try:
                    while chunk := reply.read(FETCH_CHUNK):
                        yield chunk
                except TimeoutError as exc:
                    raise tuf_errors.SlowRetrievalError from exc

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
    _result(s, now, f"REFUSED: {message}")
    return UpdateVerificationError(message)


def _result(s: dict[str, Any], now: float, result: str, attempt: bool = True) -> str:
    if attempt:
        s["last_attempt"] = now
    s["result"] = result
    return result


def what_is_sent(settings: Settings) -> dict[str, str]:
    """For `keep phonehome status` and the admin page: fields and destination."""
    where = settings.url or "(no [phonehome] url set)"
    return {
        "ddns": f"to {where}: the name {settings.name or '(unset)'}, this device's token (hidden), and the "
        "address the connection comes from; nothing else",
        "updates": f"to {where}/updates/: plain downloads of signed metadata and latest.json; no device id, "
        f"no token, no query string, User-Agent '{USER_AGENT}'",
    }

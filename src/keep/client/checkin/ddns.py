"""The DNS pointer (DDNS) check-in.

Etiquette: the device asks the service which address it comes from and
sends an update only when that changed (at most once per MIN_UPDATE_GAP),
plus a keep-alive every KEEPALIVE; after an error it backs off
exponentially; on badauth, nohost or a taken name it stops and says so
until switched off and on again.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from keep.client.checkin.agent import USER_AGENT, Settings, record

MIN_UPDATE_GAP = 600  # seconds between two DDNS updates
KEEPALIVE = 7 * 86400  # refresh an unchanged record weekly
BACKOFF_START, BACKOFF_MAX = 300, 86400
TIMEOUT = 20


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


def check_in(settings: Settings, state: dict[str, Any], now: float) -> str:
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
            return record(s, now, f"stopped: {stop}")
        status, body, _ = http.call("GET", "/v1/address")
        if status != 200 or not isinstance(body, dict):
            raise OSError(f"address query failed with HTTP {status}")
        address = str(body["address"])
        since = now - s.get("last_sent", 0)
        if address == s.get("last_address") and since < KEEPALIVE:
            s.pop("failures", None)
            return record(s, now, f"unchanged ({address})")
        if since < MIN_UPDATE_GAP:
            s["next_attempt"] = s.get("last_sent", 0) + MIN_UPDATE_GAP
            return record(
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
        return record(s, now, f"stopped: {s['stopped']}")
    if status == 429:
        s["next_attempt"] = now + int(headers.get("Retry-After", MIN_UPDATE_GAP))
        return record(s, now, "the service asks to wait (abuse protection)")
    if status != 200:
        return _back_off(s, now, f"error: HTTP {status}; retrying later")
    s.update(last_address=address, last_sent=now)
    s.pop("failures", None)
    s.pop("next_attempt", None)
    return record(s, now, f"updated {s.get('fqdn', settings.name)} -> {address}")


def _ddns_gate(settings: Settings, state: dict[str, Any], now: float) -> str | None:
    """Why this run opens no connection, or None if it may go ahead."""
    s = state["ddns"]
    if not settings.ddns:
        if s.get("pending_release"):
            release_name(settings, state)
            return "off (asked the service to delete the record)"
        return "off"
    if not settings.url or not settings.name:
        return record(s, now, "not configured: set [checkin] url and name", attempt=False)
    if s.get("stopped"):
        return record(s, now, f"stopped: {s['stopped']} (switch DDNS off and on to retry)", attempt=False)
    if now < s.get("next_attempt", 0):
        return f"waiting until {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['next_attempt']))}"
    return None


def _back_off(s: dict[str, Any], now: float, result: str) -> str:
    failures = s.get("failures", 0) + 1
    s.update(failures=failures, next_attempt=now + min(BACKOFF_MAX, BACKOFF_START * 2 ** (failures - 1)))
    return record(s, now, result)


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

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
import time
from typing import Any

from keep.client.checkin.agent import Settings, record, transport
from keep.client.transport import Transport
from keep.protocol.errors import KeepError

MIN_UPDATE_GAP = 600  # seconds between two DDNS updates
KEEPALIVE = 7 * 86400  # refresh an unchanged record weekly
BACKOFF_START, BACKOFF_MAX = 300, 86400
REPLY_MAX = 65536


def _call(
    http: Transport, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any, float | None]:
    """One JSON request, not retried (a DDNS run backs off across runs, and a
    claim must not be sent twice): status, parsed body, Retry-After."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    reply = http.request(method, path, body=data, headers=headers, limit=REPLY_MAX, retry=False)
    parsed = None
    if reply.body and reply.content_type == "application/json":
        with contextlib.suppress(ValueError):
            parsed = json.loads(reply.body)
    return reply.status, parsed, reply.retry_after


def check_in(settings: Settings, state: dict[str, Any], now: float) -> str:
    """One DDNS run; returns a one-line result and updates `state["ddns"]`."""
    s = state.setdefault("ddns", {})
    gate = _ddns_gate(settings, state, now)
    if gate is not None or settings.url is None:  # the gate checked the url
        return gate or "not configured"
    try:
        http = transport(settings, s)
        stop = _claim(http, settings, s)
        if stop:
            s["stopped"] = stop
            return record(s, now, f"stopped: {stop}")
        status, body, _ = _call(http, "GET", "/v1/address")
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
        status, body, retry_after = _call(
            http, "PUT", f"/v1/names/{settings.name}/address", {field: "auto"}, token=s["token"]
        )
    except (KeepError, ValueError, KeyError) as exc:
        return _back_off(s, now, f"error: {exc}; retrying later")
    if status == 401:
        s["stopped"] = "the service rejected this device's token (badauth/nohost)"
        return record(s, now, f"stopped: {s['stopped']}")
    if status == 429:
        s["next_attempt"] = now + (MIN_UPDATE_GAP if retry_after is None else retry_after)
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


def _claim(http: Transport, settings: Settings, s: dict[str, Any]) -> str | None:
    """Claim the configured name if this device holds no token for it; a
    reason to stop, or None."""
    if s.get("token") and s.get("name") == settings.name:
        return None
    status, body, _ = _call(http, "POST", "/v1/names", {"name": settings.name})
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
        status, _, _ = _call(transport(settings, s), "DELETE", f"/v1/names/{name}", token=token)
    except KeepError as exc:
        result = f"could not reach the service to delete the record ({exc}); it expires there unused"
    else:
        result = "record deleted" if status in (204, 401) else f"delete answered HTTP {status}"
    for key in ("token", "name", "fqdn", "last_address", "last_sent", "stopped", "failures", "next_attempt"):
        s.pop(key, None)
    s["result"] = result
    return result

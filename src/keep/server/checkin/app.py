"""keep-checkin's HTTP side: name registry, DNS pointer updates, update metadata.

- `POST /v1/names {"name"}` claims a name under the zone; the reply carries a
  random token, stored only as SHA-256. `DELETE /v1/names/{name}` (Bearer
  token) releases it.
- `GET /v1/address` tells a client the address it comes from.
- `PUT /v1/names/{name}/address {"ipv4": "auto"|ADDR|"", "ipv6": …}` (Bearer
  token): the agent's update; a field left out stays as it is, "" deletes
  the record, "auto" takes the request's source address.
- `GET /nic/update?hostname=&myip=&myipv6=` with HTTP Basic auth (any user,
  the token as password): the dyndns2 protocol of routers, ddclient and
  inadyn, with its plain-text replies (good, nochg, badauth, notfqdn,
  dnserr, 911).
- `/updates/metadata/*`, `/updates/targets/*`: the TUF repository, static.

Updates of one name closer together than `min_interval` are refused with
HTTP 429 and Retry-After on the JSON API; over dyndns2 (whose clients give up
or go silent on a 429) they are queued and published when the interval ends
(`publish_due`). No address is logged unless the operator asks for an access
log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from keep.server.checkin.dns import Pusher, Zone
from keep.server.checkin.registry import NameTakenError, Record, Registry, registry_from_url
from keep.server.shared.quiet import hide_server_header

log = logging.getLogger("keep.checkin")
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
TOKEN_PREFIX = "kc_"  # noqa: S105 — a public prefix, not a secret
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class CheckinSettings:
    data_dir: Path
    registry_url: str | None = None  # default: sqlite:///DATA_DIR/checkin.db
    zone: str = "dyn.example.test"
    min_interval: int = 60  # seconds between two updates of one name
    allow_private: bool = False  # also private, loopback and documentation addresses (LAN-only zones)
    ns: str | None = None  # the zone's name server (default ns1.ZONE)
    ns_addresses: tuple[str, ...] = ()  # its A/AAAA, served when it is inside the zone
    updates_dir: Path | None = None  # TUF repository (metadata/, targets/)
    clock: Callable[[], int] = lambda: int(time.time())


@dataclass
class Checkin:
    settings: CheckinSettings
    registry: Registry
    zone: Zone
    pusher: Pusher | None


CHECKIN = web.AppKey("checkin", Checkin)


class CheckinError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CheckinError as exc:
        return web.json_response(
            {"code": exc.code, "message": exc.message}, status=exc.status, headers=exc.headers
        )
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 — logged by type only, never with request data
        log.error("internal error: %s", type(exc).__name__)
        return web.json_response({"code": "internal", "message": "internal error"}, status=500)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise CheckinError(401, "unauthorized", "missing token")
    return header[7:]


async def _owned(request: web.Request) -> Record:
    checkin = request.app[CHECKIN]
    record = await checkin.registry.authenticate(request.match_info["name"], _bearer(request))
    if record is None:
        raise CheckinError(401, "unauthorized", "wrong token or no such name")
    return record


def _source(request: web.Request) -> str:
    return str(request.remote or "")


def _parse(value: Any, family: int, source: str, allow_private: bool) -> str | None:
    """An address field: "auto" (the source, if of this family), "" (delete), an address."""
    if value == "":
        return None
    if value == "auto":
        value = source
    address = _address(str(value), allow_private)
    if address.version != family:
        if value == source:
            raise CheckinError(400, "bad_request", f"the request does not come from an IPv{family} address")
        raise CheckinError(400, "bad_request", f"not an IPv{family} address")
    return str(address)


def _address(text: str, allow_private: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A unicast address others can reach: global, or with `allow_private` also
    private, loopback and documentation ranges (a LAN-only zone). Never the
    unspecified, broadcast, multicast, link-local or reserved ones."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise CheckinError(400, "bad_request", f"not an IP address: {text[:64]!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise CheckinError(400, "bad_request", "an IPv4-mapped IPv6 address: send the IPv4 address")
    never = address.is_unspecified or address.is_multicast or address.is_link_local or address.is_reserved
    if never or not (address.is_global or (allow_private and (address.is_private or address.is_loopback))):
        kind = "global unicast" if not allow_private else "unicast"
        raise CheckinError(400, "bad_address", f"{address} is not a usable {kind} address")
    return address


KEEP_AS_IS = "keep"  # an address argument of _apply that leaves the record as it is


async def _apply(
    request: web.Request, record: Record, ipv4: str | None, ipv6: str | None, defer: bool = False
) -> tuple[Record, bool]:
    """Set the addresses (KEEP_AS_IS leaves one unchanged, None deletes it);
    enforce the rate limit; push to the DNS server first if there is one.
    Within the rate limit's interval an update is refused (429), or with
    `defer` (dyndns2) queued and published when the interval ends."""
    checkin = request.app[CHECKIN]
    now = checkin.settings.clock()
    wait = record.last_request + checkin.settings.min_interval - now
    too_early = bool(record.last_request) and wait > 0
    if too_early and not defer:
        raise CheckinError(429, "abuse", "too many updates", {"Retry-After": str(wait)})
    queued = await checkin.registry.pending(record.name) if too_early else None
    base4, base6 = queued if queued is not None else (record.ipv4, record.ipv6)
    new4 = base4 if ipv4 == KEEP_AS_IS else ipv4
    new6 = base6 if ipv6 == KEEP_AS_IS else ipv6
    if too_early:
        if (new4, new6) == (record.ipv4, record.ipv6):
            await checkin.registry.cancel_pending(record.name)  # back to what is published
            return record, queued is not None
        await checkin.registry.defer(record.name, new4, new6, now + wait)
        return Record(record.name, new4, new6, record.updated, record.last_request), True
    await checkin.registry.cancel_pending(record.name)  # this update supersedes a queued one
    if (new4, new6) == (record.ipv4, record.ipv6):
        await checkin.registry.touch(record.name, now)
        return Record(record.name, new4, new6, record.updated, now), False
    await _publish(checkin, record.name, new4, new6, now)
    return Record(record.name, new4, new6, now, now), True


async def _publish(checkin: Checkin, name: str, ipv4: str | None, ipv6: str | None, now: int) -> None:
    if checkin.pusher is not None:
        try:
            await checkin.pusher.push(name, ipv4, ipv6)
        except Exception as exc:  # noqa: BLE001 — any failure of the DNS server is reported alike
            log.error("DNS update failed: %s", type(exc).__name__)
            raise CheckinError(502, "dns_error", "the DNS server did not take the update") from None
    await checkin.registry.set_addresses(name, ipv4, ipv6, now)


async def publish_due(checkin: Checkin) -> int:
    """Publish the deferred dyndns2 updates whose time has come; how many."""
    now = checkin.settings.clock()
    done = 0
    for name, ipv4, ipv6 in await checkin.registry.take_due(now):
        if await checkin.registry.lookup(name) is None:
            continue  # released meanwhile
        try:
            await _publish(checkin, name, ipv4, ipv6, now)
            done += 1
        except CheckinError:
            await checkin.registry.defer(name, ipv4, ipv6, now + checkin.settings.min_interval)  # retry
    return done


DUE_EVERY = 1.0  # seconds between looks at the deferred updates


routes = web.RouteTableDef()


@routes.post("/v1/names")
async def claim(request: web.Request) -> web.Response:
    checkin = request.app[CHECKIN]
    try:
        body = await request.json()
    except ValueError:
        raise CheckinError(400, "bad_request", "body must be JSON") from None
    name = str(body.get("name", "")).lower() if isinstance(body, dict) else ""
    if not NAME_RE.fullmatch(name) or name == "ns1":
        raise CheckinError(400, "bad_request", "a name is 1-63 letters, digits or hyphens")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        await checkin.registry.claim(name, token, checkin.settings.clock())
    except NameTakenError:
        raise CheckinError(409, "name_taken", f"{name} is taken") from None
    return web.json_response(
        {"name": name, "fqdn": f"{name}.{checkin.settings.zone}", "token": token}, status=201
    )


@routes.delete("/v1/names/{name}")
async def release(request: web.Request) -> web.Response:
    record = await _owned(request)
    checkin = request.app[CHECKIN]
    if checkin.pusher is not None and (record.ipv4 or record.ipv6):
        await checkin.pusher.push(record.name, None, None)
    await checkin.registry.release(record.name)
    return web.Response(status=204)


@routes.get("/v1/address")
async def address(request: web.Request) -> web.Response:
    return web.json_response({"address": _source(request)})


@routes.put("/v1/names/{name}/address")
async def update(request: web.Request) -> web.Response:
    record = await _owned(request)
    try:
        body = await request.json()
    except ValueError:
        raise CheckinError(400, "bad_request", "body must be JSON") from None
    if not isinstance(body, dict):
        raise CheckinError(400, "bad_request", "body must be an object")
    source = _source(request)
    private = request.app[CHECKIN].settings.allow_private
    ipv4 = _parse(body["ipv4"], 4, source, private) if "ipv4" in body else KEEP_AS_IS
    ipv6 = _parse(body["ipv6"], 6, source, private) if "ipv6" in body else KEEP_AS_IS
    record, changed = await _apply(request, record, ipv4, ipv6)
    return web.json_response({"ipv4": record.ipv4, "ipv6": record.ipv6, "changed": changed})


@routes.get("/nic/update")
async def dyndns2(request: web.Request) -> web.Response:
    """The dyndns2 protocol: plain-text replies, HTTP 200 except where noted."""
    checkin = request.app[CHECKIN]

    def reply(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(text=text, status=status, headers=headers)

    token = _basic_password(request)
    if token is None:
        return reply("badauth", 401, {"WWW-Authenticate": 'Basic realm="keep-checkin"'})
    hostnames = [h for h in request.query.get("hostname", "").split(",") if h]
    if len(hostnames) != 1:
        return reply("notfqdn")
    host = hostnames[0].lower().rstrip(".")
    suffix = "." + checkin.settings.zone
    if not host.endswith(suffix) or not NAME_RE.fullmatch(host[: -len(suffix)]):
        return reply("notfqdn")
    # The credential first, and one answer for a wrong token and an unknown
    # name: which names exist is not told to whoever asks.
    record = await checkin.registry.authenticate(host[: -len(suffix)], token)
    if record is None:
        return reply("badauth")
    try:
        ipv4, ipv6 = _dyndns2_addresses(request.query, _source(request), checkin.settings.allow_private)
        record, changed = await _apply(request, record, ipv4, ipv6, defer=True)
    except CheckinError as exc:
        # dnserr: the address given was unusable or the DNS server refused it.
        return reply("dnserr" if exc.status < 500 or exc.code == "dns_error" else "911")
    except Exception as exc:  # noqa: BLE001 — dyndns2 clients understand "911" for trouble
        log.error("update failed: %s", type(exc).__name__)
        return reply("911")
    shown = " ".join(a for a in (record.ipv4, record.ipv6) if a)
    return reply(f"{'good' if changed else 'nochg'} {shown}".strip())


def _dyndns2_addresses(query: Any, source: str, allow_private: bool) -> tuple[str | None, str | None]:
    """(IPv4, IPv6) of a dyndns2 update, KEEP_AS_IS for a family it does not
    name. `myip` holds an address of either family or an "IPv4,IPv6" pair; an
    empty `myip`, or none at all, means the request's source address, as
    dyndns2 services do (deleting a record is for the JSON API). `myipv6`
    (some clients) sets the AAAA record; empty deletes it."""
    given = [v for v in query.get("myip", "").split(",") if v.strip()] if "myip" in query else []
    if not given and "myipv6" not in query:
        given = [source]
    addresses = [_address(v, allow_private) for v in given]
    ipv4s = [str(a) for a in addresses if a.version == 4]
    ipv6s = [str(a) for a in addresses if a.version == 6]
    if len(ipv4s) > 1 or len(ipv6s) > 1:
        raise CheckinError(400, "bad_request", "at most one address of each family")
    ipv4: str | None = ipv4s[0] if ipv4s else KEEP_AS_IS
    ipv6: str | None = ipv6s[0] if ipv6s else KEEP_AS_IS
    if "myipv6" in query:
        ipv6 = _parse(query["myipv6"], 6, source, allow_private)
    return ipv4, ipv6


def _basic_password(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None


async def _publish_due_forever(checkin: Checkin) -> None:
    while True:
        await asyncio.sleep(DUE_EVERY)
        try:
            await publish_due(checkin)
        except Exception as exc:  # noqa: BLE001 — logged by type; the next round retries
            log.error("publishing deferred updates failed: %s", type(exc).__name__)


def create_app(
    settings: CheckinSettings, pusher: Pusher | None = None, access_log: bool = False
) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=64 * 1024)
    hide_server_header(app)
    registry = registry_from_url(settings.registry_url or f"sqlite:///{settings.data_dir / 'checkin.db'}")
    app[CHECKIN] = Checkin(
        settings, registry, Zone(settings.zone, registry, settings.ns, settings.ns_addresses), pusher
    )
    app.add_routes(routes)
    if settings.updates_dir is not None:
        app.router.add_static("/updates/metadata", settings.updates_dir / "metadata", follow_symlinks=False)
        app.router.add_static("/updates/targets", settings.updates_dir / "targets", follow_symlinks=False)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await registry.open()
        task = asyncio.get_running_loop().create_task(_publish_due_forever(app[CHECKIN]))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await registry.close()

    app.cleanup_ctx.append(lifecycle)
    return app

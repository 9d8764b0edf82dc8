"""Handlers for accounts, sessions, key slots and devices (docs/server.md).

Handlers parse, call the metadata store, serialise. Which account names
exist is not revealed: the KDF endpoint answers unknown names with a fake salt
(which changes now and then, as a real one does when its owner changes the
password) and the default parameters, in byte-for-byte the same form; a login
fails with the same answer for a wrong credential and an unknown name; and
registration attempts on taken names are throttled like failed logins (or
need an invitation: `--registration invite`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from aiohttp import web

from keep.protocol.api import ACCOUNT_NAME_RE, DEVICE_TOKEN_PREFIX, OBJECT_KINDS, SESSION_TOKEN_PREFIX, Route
from keep.protocol.errors import ErrorCode, FormatError
from keep.protocol.kdf import DEFAULT_PARAMS, SALT_SIZE, KdfParams
from keep.protocol.keyslot import KeySlot, SlotKind
from keep.protocol.limits import DEVICE_NAME_MAX
from keep.server.api_error import ApiError
from keep.server.auth import Principal, Role, authenticate, new_token, require_owner
from keep.server.json_body import b64, b64_field, bad, field, read_json
from keep.server.services import Services, services
from keep.server.storage.metadata import Account, AccountExistsError, Device, Session
from keep.server.throttle import throttle_key, wait_seconds

AUTH_METHOD_DERIVED_KEY = 1  # auth = HKDF(Argon2id(password)); a PAKE would be 2
VERIFIER_SIZE = 32
AUTH_KEY_SIZE = 32
FAKE_SALT_DAYS_MIN = 30
FAKE_SALT_DAYS_SPAN = 701  # periods of 30-730 days
routes = web.RouteTableDef()


def _account_name(value: str) -> str:
    if not ACCOUNT_NAME_RE.fullmatch(value):
        raise bad("account names are 1-64 characters: a-z, 0-9, '.', '_', '-'")
    return value


def _kdf(body: dict[str, Any]) -> dict[str, Any]:
    try:
        return KdfParams.from_json(body.get("kdf")).to_json()
    except FormatError:
        raise bad("field 'kdf' is malformed") from None


def _slot(value: object, kind: SlotKind) -> dict[str, Any]:
    try:
        slot = KeySlot.from_json(value)
    except FormatError:
        raise bad(f"{kind} key slot is malformed") from None
    if slot.kind is not kind:
        raise bad(f"key slot kind must be {kind}")
    return slot.to_json()


@routes.get(Route.KDF)
async def kdf_parameters(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["name"]
    account = await svc.metadata.account_by_name(name) if ACCOUNT_NAME_RE.fullmatch(name) else None
    if account is None:
        params, salt = DEFAULT_PARAMS, fake_salt(svc.secret, name, svc.clock())
    else:
        params, salt = KdfParams.from_json(account.kdf), account.salt
    # One serialisation for both: same key order, same spacing, same length.
    body = json.dumps({"kdf": params.to_json(), "salt": b64(salt)}, sort_keys=True)
    return web.Response(body=body.encode(), content_type="application/json")


def fake_salt(secret: bytes, name: str, now: int) -> bytes:
    """The salt shown for a name that has no account. Each name gets its own
    period (30-730 days) and phase, and a new salt every period, so watching
    a name's salt change tells nothing: real salts change when the password
    does, fake ones on their own schedule."""
    seed = hmac.new(secret, b"fake-salt-period/" + name.encode(), hashlib.sha256).digest()
    period = (FAKE_SALT_DAYS_MIN + int.from_bytes(seed[:4], "big") % FAKE_SALT_DAYS_SPAN) * 86_400
    epoch = (now + int.from_bytes(seed[4:8], "big") % period) // period
    message = b"fake-salt/%s/%d" % (name.encode(), epoch)
    return hmac.new(secret, message, hashlib.sha256).digest()[:SALT_SIZE]


def invitation(secret: bytes, name: str) -> str:
    """The invitation that lets `name` register under `--registration invite`
    (`keep-server invite NAME`): bound to the name, so it opens one account."""
    return b64(hmac.new(secret, b"invite/" + name.encode(), hashlib.sha256).digest()[:18])


@routes.post(Route.ACCOUNTS)
async def create_account(request: web.Request) -> web.Response:
    svc = services(request)
    if svc.settings.registration == "closed":
        raise ApiError(ErrorCode.REGISTRATION_CLOSED, "this server does not accept new accounts")
    body = await read_json(request)
    name = _account_name(field(body, "name", str))
    if svc.settings.registration == "invite":
        offered = body.get("invite")
        if not isinstance(offered, str) or not hmac.compare_digest(offered, invitation(svc.secret, name)):
            raise ApiError(
                ErrorCode.REGISTRATION_CLOSED, "this server accepts new accounts by invitation only"
            )
    # Trying names that are taken is how registration would reveal them: it
    # is slowed down like failed logins from the same address.
    address = throttle_key(svc.secret, "address", _client_address(request))
    await _wait_for_throttle(svc, [(address, svc.settings.login_free_per_address)])
    slots_in = field(body, "keyslots", dict)
    slots = {SlotKind.PASSWORD.value: _slot(slots_in.get("password"), SlotKind.PASSWORD)}
    recovery_verifier = None
    if "recovery" in slots_in:
        slots[SlotKind.RECOVERY.value] = _slot(slots_in["recovery"], SlotKind.RECOVERY)
        recovery_verifier = b64_field(body, "recovery_verifier", VERIFIER_SIZE)
    account = Account(
        id=svc.random(16).hex(),
        name=name,
        created=svc.clock(),
        auth_method=AUTH_METHOD_DERIVED_KEY,
        kdf=_kdf(body),
        salt=b64_field(body, "salt", SALT_SIZE),
        auth_verifier=b64_field(body, "auth_verifier", VERIFIER_SIZE),
        recovery_verifier=recovery_verifier,
        quota=svc.settings.default_quota,
    )
    try:
        await svc.metadata.create_account(account, slots)
    except AccountExistsError:
        await svc.metadata.record_failure(address, svc.clock())
        raise ApiError(ErrorCode.ACCOUNT_EXISTS, "an account with this name exists") from None
    return web.json_response({"id": account.id, "name": name}, status=201)


def _client_address(request: web.Request) -> str:
    return request.remote or "unknown"


async def _check_credential(
    svc: Services, request: web.Request, name: str, method: str, auth: bytes
) -> Account:
    """The account if `auth` proves the credential. Failures slow down three
    scopes: this name from this address (after `login_free_attempts`), this
    name from anywhere (`login_free_per_account`) and this address for any
    name (`login_free_per_address`, which also slows name enumeration). A
    success clears the first two, so one household's typo does not lock out
    another device behind the same address."""
    address = _client_address(request)
    settings = svc.settings
    scopes = [
        (throttle_key(svc.secret, "account+address", f"{name}\0{address}"), settings.login_free_attempts),
        (throttle_key(svc.secret, "account", name), settings.login_free_per_account),
        (throttle_key(svc.secret, "address", address), settings.login_free_per_address),
    ]
    now = svc.clock()
    await _wait_for_throttle(svc, scopes)
    account = await svc.metadata.account_by_name(name)
    digest = hashlib.sha256(auth).digest()
    if account is not None:
        expected = account.auth_verifier if method == "password" else account.recovery_verifier
        if expected is not None and hmac.compare_digest(digest, expected):
            for key, _ in scopes[:2]:
                await svc.metadata.clear_failures(key)
            return account
    for key, _ in scopes:
        await svc.metadata.record_failure(key, now)
    svc.metrics.login_failures.inc()
    # One answer whether the name exists or not.
    raise ApiError(ErrorCode.UNAUTHORIZED, "wrong credential, or no such account")


async def _wait_for_throttle(svc: Services, scopes: list[tuple[bytes, int]]) -> None:
    now = svc.clock()
    for key, free in scopes:
        state = await svc.metadata.throttle(key)
        if state is not None:
            wait = wait_seconds(state.failures, state.last, now, free, svc.settings.login_max_delay)
            if wait > 0:
                raise ApiError(
                    ErrorCode.RATE_LIMITED,
                    "too many failed attempts; wait before trying again",
                    {"Retry-After": str(wait)},
                )


def _method(body: dict[str, Any]) -> str:
    method = field(body, "method", str)
    if method not in ("password", "recovery"):
        raise bad("field 'method' must be 'password' or 'recovery'")
    return method


@routes.post(Route.SESSIONS)
async def login(request: web.Request) -> web.Response:
    svc = services(request)
    body = await read_json(request)
    name = _account_name(field(body, "account", str))
    account = await _check_credential(
        svc, request, name, _method(body), b64_field(body, "auth", AUTH_KEY_SIZE)
    )
    token, digest = new_token(svc, SESSION_TOKEN_PREFIX)
    now = svc.clock()
    expires = now + svc.settings.session_ttl
    await svc.metadata.create_session(Session(digest, account.id, now, expires))
    return web.json_response({"token": token, "expires": expires, "account_id": account.id}, status=201)


@routes.delete(Route.SESSION_CURRENT)
async def logout(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    await services(request).metadata.delete_session(principal.token_hash)
    return web.Response(status=204)


@routes.get(Route.ACCOUNT)
async def account_info(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    account = await _account(request, principal)
    return web.json_response(
        {
            "id": account.id,
            "name": account.name,
            "created": account.created,
            "auth_method": account.auth_method,
            "role": str(principal.role),
            "device_id": principal.device_id,
        }
    )


async def _account(request: web.Request, principal: Principal) -> Account:
    account = await services(request).metadata.account_by_id(principal.account_id)
    if account is None:  # deleted while a token was still in use
        raise ApiError(ErrorCode.UNAUTHORIZED, "the account no longer exists")
    return account


@routes.get(Route.ACCOUNT_EXPORT)
async def export_account(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    svc = services(request)
    account = await _account(request, principal)
    objects = []
    for kind in OBJECT_KINDS:
        after = ""
        while page := await svc.metadata.list_objects(account.id, kind, after, 1000):
            objects += [{"kind": o.kind, "id": o.id, "size": o.size, "created": o.created} for o in page]
            after = page[-1].id
    usage = await svc.metadata.usage(account.id)
    return web.json_response(
        {
            "account": {
                "id": account.id,
                "name": account.name,
                "created": account.created,
                "auth_method": account.auth_method,
                "kdf": account.kdf,
                "salt": b64(account.salt),
                "auth_verifier": b64(account.auth_verifier),
                "recovery_verifier": None
                if account.recovery_verifier is None
                else b64(account.recovery_verifier),
                "quota": account.quota,
            },
            "keyslots": await svc.metadata.keyslots(account.id),
            "devices": [_device_json(d) for d in await svc.metadata.devices(account.id)],
            "locks": [
                {
                    "id": lk.id,
                    "mode": lk.mode,
                    "created": lk.created,
                    "expires": lk.expires,
                }
                for lk in await svc.metadata.locks(account.id, svc.clock())
            ],
            "usage": {"bytes": usage.bytes, "objects": usage.objects, "quota": usage.quota},
            "objects": objects,
        }
    )


@routes.delete(Route.ACCOUNT)
async def delete_account(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    svc = services(request)
    account = await _account(request, principal)
    body = await read_json(request)
    confirmed = await _check_credential(
        svc, request, account.name, _method(body), b64_field(body, "auth", AUTH_KEY_SIZE)
    )
    if confirmed.id != account.id:
        raise ApiError(ErrorCode.FORBIDDEN, "credential does not belong to this account")
    await svc.objects.delete_account(account.id)
    await svc.metadata.delete_account(account.id)
    return web.Response(status=204)


@routes.get(Route.KEYSLOTS)
async def get_keyslots(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    return web.json_response({"keyslots": await services(request).metadata.keyslots(principal.account_id)})


@routes.put(Route.KEYSLOT_PASSWORD)
async def replace_password(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    body = await read_json(request)
    await services(request).metadata.replace_password(
        principal.account_id,
        _kdf(body),
        b64_field(body, "salt", SALT_SIZE),
        b64_field(body, "auth_verifier", VERIFIER_SIZE),
        _slot(body.get("slot"), SlotKind.PASSWORD),
    )
    return web.Response(status=204)


@routes.put(Route.KEYSLOT_RECOVERY)
async def replace_recovery(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    body = await read_json(request)
    await services(request).metadata.replace_recovery(
        principal.account_id,
        b64_field(body, "recovery_verifier", VERIFIER_SIZE),
        _slot(body.get("slot"), SlotKind.RECOVERY),
    )
    return web.Response(status=204)


def _device_json(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "name": device.name,
        "created": device.created,
        "last_seen": device.last_seen,
        "revoked": device.revoked,
    }


@routes.post(Route.DEVICES)
async def enroll_device(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    svc = services(request)
    name = field(await read_json(request), "name", str)
    if not 0 < len(name) <= DEVICE_NAME_MAX or not name.isprintable():
        raise bad(f"device names are 1-{DEVICE_NAME_MAX} printable characters")
    token, digest = new_token(svc, DEVICE_TOKEN_PREFIX)
    now = svc.clock()
    device = Device(svc.random(8).hex(), principal.account_id, name, now, now, None)
    await svc.metadata.create_device(device, digest)
    return web.json_response({**_device_json(device), "token": token}, status=201)


@routes.get(Route.DEVICES)
async def list_devices(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    devices = await services(request).metadata.devices(principal.account_id)
    return web.json_response({"devices": [_device_json(d) for d in devices]})


@routes.delete(Route.DEVICE)
async def revoke_device(request: web.Request) -> web.Response:
    principal = await require_owner(request)
    svc = services(request)
    if not await svc.metadata.revoke_device(
        principal.account_id, request.match_info["device_id"], svc.clock()
    ):
        raise ApiError(ErrorCode.NOT_FOUND, "no such device")
    return web.Response(status=204)


__all__ = ["Role", "routes"]

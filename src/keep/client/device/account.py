"""Account creation and owner login, from the client's side.

`create_account` makes the master key and recovery key, derives the password
key with Argon2id, wraps the master key in two slots, registers the account
(the server receives only the KDF salt and parameters, verifier hashes and
wrapped slots), logs in and enrolls this device. `owner_login` is the reverse:
fetch KDF parameters (checked against the client's floor and ceiling), derive,
log in, unwrap the slot.
"""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from keep.client.device.state import DeviceState
from keep.client.remote import Remote
from keep.protocol.api import Route
from keep.protocol.device_name import seal_device_name
from keep.protocol.envelope import Suite
from keep.protocol.errors import FormatError, IntegrityError, ProtocolViolationError
from keep.protocol.kdf import (
    DEFAULT_PARAMS,
    DEFAULT_POLICY,
    SALT_SIZE,
    KdfParams,
    KdfPolicy,
    derive_password_key,
)
from keep.protocol.keys import Kek, MasterKey, RecoveryKey, RepositoryKeys, credential_keys
from keep.protocol.keyslot import SLOT_SALT_SIZE, KeySlot, SlotKind


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def preferred_suite() -> Suite:
    """AES-256-GCM where the CPU has AES instructions, else ChaCha20-Poly1305."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return Suite.AES_256_GCM
    return Suite.AES_256_GCM if " aes" in flags or "\taes" in flags else Suite.CHACHA20_POLY1305


@dataclass(frozen=True, slots=True)
class NewAccount:
    state: DeviceState
    recovery_key: RecoveryKey
    master: MasterKey  # for the recovery kit; never stored on the device


def create_account(
    remote: Remote,
    account: str,
    password: bytes,
    device_name: str | None = None,
    invite: str | None = None,
    params: KdfParams = DEFAULT_PARAMS,
    policy: KdfPolicy = DEFAULT_POLICY,
) -> NewAccount:
    master = MasterKey(os.urandom(64))
    recovery = RecoveryKey(os.urandom(32))
    salt = os.urandom(SALT_SIZE)
    kek, auth = credential_keys(derive_password_key(password, salt, params, policy))
    slots = {
        "password": KeySlot.wrap(
            kek, master, account, SlotKind.PASSWORD, os.urandom(SLOT_SALT_SIZE)
        ).to_json(),
        "recovery": KeySlot.wrap(
            recovery.kek(), master, account, SlotKind.RECOVERY, os.urandom(SLOT_SALT_SIZE)
        ).to_json(),
    }
    remote.request_json(
        "POST",
        Route.ACCOUNTS,
        {
            "name": account,
            "kdf": params.to_json(),
            "salt": b64(salt),
            "auth_verifier": b64(auth.verifier()),
            "keyslots": slots,
            "recovery_verifier": b64(recovery.auth().verifier()),
            **({"invite": invite} if invite else {}),
        },
        retry=False,
    )
    session = remote.login(account, "password", auth.material)
    state = enroll_device(remote, session, account, master, device_name)
    return NewAccount(state, recovery, master)


def enroll_device(
    remote: Remote, session: str, account: str, master: MasterKey, device_name: str | None
) -> DeviceState:
    keys = RepositoryKeys.from_master(master)
    name = seal_device_name(keys.data, device_name or socket.gethostname() or "device", os.urandom(12))
    reply = remote.request_json("POST", Route.DEVICES, {"name": name}, token=session)
    try:
        device_id, token = str(reply["id"]), str(reply["token"])
    except (KeyError, TypeError):
        raise ProtocolViolationError("the server sent a malformed device enrollment") from None
    return DeviceState(remote.base_url, account, device_id, token, keys, preferred_suite(), remote.ca_file)


def owner_login(
    remote: Remote, account: str, password: bytes, policy: KdfPolicy = DEFAULT_POLICY
) -> tuple[str, MasterKey]:
    """(owner session token, master key) from the password."""
    info = remote.kdf_info(account)
    try:
        params = KdfParams.from_json(info.get("kdf"))
        salt = base64.b64decode(str(info.get("salt")), validate=True)
    except (FormatError, ValueError):
        raise ProtocolViolationError("the server sent malformed KDF parameters") from None
    kek, auth = credential_keys(derive_password_key(password, salt, params, policy))
    session = remote.login(account, "password", auth.material)
    return session, _unwrap(remote, session, account, SlotKind.PASSWORD, kek)


def recovery_login(remote: Remote, account: str, key: RecoveryKey) -> tuple[str, MasterKey]:
    session = remote.login(account, "recovery", key.auth().material)
    return session, _unwrap(remote, session, account, SlotKind.RECOVERY, key.kek())


def _unwrap(remote: Remote, session: str, account: str, kind: SlotKind, kek: Kek) -> MasterKey:
    reply = remote.request_json("GET", Route.KEYSLOTS, token=session)
    try:
        slot = KeySlot.from_json(reply["keyslots"][str(kind)])
    except (KeyError, TypeError, FormatError):
        raise IntegrityError(f"the server did not return a valid {kind} key slot") from None
    return slot.unwrap(kek, account)


def new_password_credential(
    account: str, master: MasterKey, password: bytes, params: KdfParams = DEFAULT_PARAMS
) -> dict[str, object]:
    """The body of `PUT /v1/keyslots/password`: fresh salt, verifier and slot.
    The slot is unwrapped once locally before it is returned, so a broken slot
    is never sent."""
    salt = os.urandom(SALT_SIZE)
    kek, auth = credential_keys(derive_password_key(password, salt, params))
    slot = KeySlot.wrap(kek, master, account, SlotKind.PASSWORD, os.urandom(SLOT_SALT_SIZE))
    if slot.unwrap(kek, account) != master:
        raise IntegrityError("the new key slot does not unwrap; nothing was changed")
    return {
        "kdf": params.to_json(),
        "salt": b64(salt),
        "auth_verifier": b64(auth.verifier()),
        "slot": slot.to_json(),
    }


def new_recovery_credential(account: str, master: MasterKey) -> tuple[RecoveryKey, dict[str, object]]:
    """A fresh recovery key and the body of `PUT /v1/keyslots/recovery`."""
    key = RecoveryKey(os.urandom(32))
    slot = KeySlot.wrap(key.kek(), master, account, SlotKind.RECOVERY, os.urandom(SLOT_SALT_SIZE))
    if slot.unwrap(key.kek(), account) != master:
        raise IntegrityError("the new recovery slot does not unwrap; nothing was changed")
    return key, {"recovery_verifier": b64(key.auth().verifier()), "slot": slot.to_json()}

"""Key slots: the master key wrapped under one credential (docs/format.md §3.2).

    slot_key = HKDF(kek, salt=slot.salt, info="keep/v1/keyslot")
    wrapped  = AES-256-GCM(slot_key, nonce=0^12, master, ad)
    ad       = "keep/v1/keyslot" || u8 kind || u16 len(account) || account

Each slot has a fresh random salt, so its one-time key never repeats and the
zero nonce is safe. The account name in the associated data stops a server from
serving one account's slot for another.
"""

from __future__ import annotations

import base64
import enum
import struct
from dataclasses import dataclass
from typing import Any, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keep.protocol.errors import FormatError, IntegrityError
from keep.protocol.keys import LABEL_KEYSLOT, MASTER_KEY_SIZE, Kek, MasterKey, hkdf

SLOT_VERSION = 1
SLOT_SALT_SIZE = 32
WRAPPED_SIZE = MASTER_KEY_SIZE + 16
_ZERO_NONCE = bytes(12)
_ACCOUNT_LEN = struct.Struct(">H")


class SlotKind(enum.StrEnum):
    PASSWORD = "password"  # noqa: S105 — a slot kind, not a secret
    RECOVERY = "recovery"


_KIND_BYTE = {SlotKind.PASSWORD: 1, SlotKind.RECOVERY: 2}


def _ad(kind: SlotKind, account: str) -> bytes:
    name = account.encode()
    return LABEL_KEYSLOT + bytes([_KIND_BYTE[kind]]) + _ACCOUNT_LEN.pack(len(name)) + name


@dataclass(frozen=True, slots=True)
class KeySlot:
    kind: SlotKind
    salt: bytes
    wrapped: bytes = b""
    version: int = SLOT_VERSION

    @classmethod
    def wrap(cls, kek: Kek, master: MasterKey, account: str, kind: SlotKind, salt: bytes) -> Self:
        if len(salt) != SLOT_SALT_SIZE:
            raise FormatError(f"key slot salt must be {SLOT_SALT_SIZE} bytes")
        key = hkdf(kek.material, LABEL_KEYSLOT, salt=salt)
        wrapped = AESGCM(key).encrypt(_ZERO_NONCE, master.material, _ad(kind, account))
        return cls(kind, salt, wrapped)

    def unwrap(self, kek: Kek, account: str) -> MasterKey:
        """The master key, or `IntegrityError` if this slot was not made with
        `kek` for `account` (the server already accepted the credential, so a
        failure here means the slot was swapped or damaged)."""
        key = hkdf(kek.material, LABEL_KEYSLOT, salt=self.salt)
        try:
            return MasterKey(AESGCM(key).decrypt(_ZERO_NONCE, self.wrapped, _ad(self.kind, account)))
        except InvalidTag:
            raise IntegrityError(f"the {self.kind} key slot does not open with this credential") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "version": self.version,
            "salt": base64.b64encode(self.salt).decode(),
            "wrapped": base64.b64encode(self.wrapped).decode(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        if not isinstance(obj, dict):
            raise FormatError("key slot must be an object")
        try:
            kind = SlotKind(obj["kind"])
            version = obj["version"]
            salt = base64.b64decode(obj["salt"], validate=True)
            wrapped = base64.b64decode(obj["wrapped"], validate=True)
        except (KeyError, ValueError, TypeError):
            raise FormatError("key slot is malformed") from None
        if version != SLOT_VERSION:
            raise FormatError(f"unsupported key slot version {version}")
        if len(salt) != SLOT_SALT_SIZE or len(wrapped) != WRAPPED_SIZE:
            raise FormatError("key slot fields have the wrong length")
        return cls(kind, salt, wrapped, version)

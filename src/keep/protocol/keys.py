"""Typed keys and every HKDF label of the format (docs/format.md §2 "Keys").

Owns: the key types (`MasterKey`, `DataKey`, `IdKey`, `ChunkerKey`,
`PasswordKey`, `Kek`, `AuthKey`, `RecoveryKey`, `ObjectKey`, `OwnerSigningKey`,
`OwnerPublicKey`), the labels they are derived with, and the derivations
themselves. Each key is its own class so a
key cannot be passed where another is expected, and `repr()` never shows bytes.

Does not own: Argon2id (see `kdf.py`) or random number generation — callers pass
random bytes in, so this module stays deterministic and testable.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keep.protocol.errors import FormatError

# Every HKDF `info` label of the format lives here and nowhere else.
LABEL_DATA = b"keep/v1/data"
LABEL_ID = b"keep/v1/id"
LABEL_CHUNKER = b"keep/v1/chunker"
LABEL_KEK = b"keep/v1/kek"
LABEL_AUTH = b"keep/v1/auth"
LABEL_RECOVERY_KEK = b"keep/v1/recovery/kek"
LABEL_RECOVERY_AUTH = b"keep/v1/recovery/auth"
LABEL_OBJECT = b"keep/v1/object/"  # followed by the object kind byte
LABEL_KEYSLOT = b"keep/v1/keyslot"
LABEL_FINGERPRINT = b"keep/v1/fingerprint"
LABEL_OWNER_SIGN = b"keep/v1/owner-sign"

MASTER_KEY_SIZE = 64
SYMMETRIC_KEY_SIZE = 32


def hkdf(ikm: bytes, info: bytes, *, salt: bytes | None = None, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True, slots=True)
class _Key:
    """Key material of a fixed size; the subclass says what it is for."""

    SIZE: ClassVar[int] = SYMMETRIC_KEY_SIZE
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != self.SIZE:
            raise FormatError(f"{type(self).__name__} must be {self.SIZE} bytes")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class DataKey(_Key):
    """Root of every object subkey; derived from the master key."""


class IdKey(_Key):
    """Key of the keyed BLAKE3 that names blobs."""


class ChunkerKey(_Key):
    """Seeds the content-defined chunker's gear table."""


class ObjectKey(_Key):
    """Per-object AEAD key: HKDF(data key, salt=object salt, info=label+kind)."""


class PasswordKey(_Key):
    """Argon2id output for the password; never leaves the client."""


class Kek(_Key):
    """Key-encryption key that wraps the master key in one key slot."""


class AuthKey(_Key):
    """Proves knowledge of a credential to the server; the server stores its hash."""

    def verifier(self) -> bytes:
        """What the server stores: SHA-256 of the auth key."""
        return hashlib.sha256(self.material).digest()


class OwnerPublicKey(_Key):
    """Verifies the owner's signature on records that remove, condemn,
    supersede or forget anything. Devices hold this, never the signing key:
    a stolen device credential cannot sign."""

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.material).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class OwnerSigningKey(_Key):
    """Ed25519 seed derived from the master key: only a holder of the
    password or the recovery key (who can unwrap the master key) has it."""

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.material).sign(message)

    def public(self) -> OwnerPublicKey:
        raw = Ed25519PrivateKey.from_private_bytes(self.material).public_key().public_bytes_raw()
        return OwnerPublicKey(raw)


class RecoveryKey(_Key):
    """256 random bits shown once as the recovery kit."""

    def kek(self) -> Kek:
        return Kek(hkdf(self.material, LABEL_RECOVERY_KEK))

    def auth(self) -> AuthKey:
        return AuthKey(hkdf(self.material, LABEL_RECOVERY_AUTH))


@dataclass(frozen=True, slots=True, repr=False)
class MasterKey(_Key):
    """64 random bytes made at `keep init`; every repository key derives from it."""

    SIZE: ClassVar[int] = MASTER_KEY_SIZE

    def data_key(self) -> DataKey:
        return DataKey(hkdf(self.material, LABEL_DATA))

    def id_key(self) -> IdKey:
        return IdKey(hkdf(self.material, LABEL_ID))

    def chunker_key(self) -> ChunkerKey:
        return ChunkerKey(hkdf(self.material, LABEL_CHUNKER))

    def owner_key(self) -> OwnerSigningKey:
        return OwnerSigningKey(hkdf(self.material, LABEL_OWNER_SIGN))

    def fingerprint(self) -> str:
        """A short public fingerprint shown on the recovery kit to match keys."""
        digest = hkdf(self.material, LABEL_FINGERPRINT, length=8)
        return "-".join(digest.hex()[i : i + 4] for i in range(0, 16, 4))


def credential_keys(pk: PasswordKey) -> tuple[Kek, AuthKey]:
    """Split the password key into the slot KEK and the server auth key."""
    return Kek(hkdf(pk.material, LABEL_KEK)), AuthKey(hkdf(pk.material, LABEL_AUTH))


def object_key(data_key: DataKey, salt: bytes, kind: int) -> ObjectKey:
    """Fresh AEAD key for one object (salt is the object's 32 random bytes)."""
    return ObjectKey(hkdf(data_key.material, LABEL_OBJECT + bytes([kind]), salt=salt))


@dataclass(frozen=True, slots=True)
class RepositoryKeys:
    """What an enrolled device holds: the keys to back up and restore, and
    the owner's public key to check owner records with — not the master key,
    so not the owner's signing key."""

    data: DataKey
    id: IdKey
    chunker: ChunkerKey
    owner: OwnerPublicKey
    fingerprint: str

    @classmethod
    def from_master(cls, master: MasterKey) -> Self:
        return cls(
            master.data_key(),
            master.id_key(),
            master.chunker_key(),
            master.owner_key().public(),
            master.fingerprint(),
        )

    def opened_by(self, master: MasterKey) -> bool:
        """Whether `master` (unwrapped with a credential) is this account's."""
        return hmac.compare_digest(master.owner_key().public().material, self.owner.material)

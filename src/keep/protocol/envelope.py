"""The encrypted envelope shared by every stored object (docs/format.md §4).

Owns: the object header (`HEADER`), object kinds, cipher suites, frame roles,
counter nonces and the associated data that binds every frame to its object
kind, position and — for blobs — blob type, codec and id.

Layout of every object: 40-byte header, then sealed frames. A frame is
`AEAD(object_key, nonce=counter, plaintext, ad)`, ciphertext followed by a
16-byte tag. The object key is `HKDF(data_key, salt=header.salt,
info="keep/v1/object/"+kind)`: each object has its own key, so counter nonces
never repeat under one key, and a frame copied into another object, position
or kind fails authentication.

Does not own: what the frames contain (see `pack.py`, `sealed_record.py`).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from keep.protocol.errors import FormatError, IntegrityError
from keep.protocol.keys import DataKey, ObjectKey, object_key

MAGIC = b"KEEP"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
SALT_SIZE = 32
TAG_SIZE = 16
NONCE_SIZE = 12
BLOB_ID_SIZE = 32

HEADER = struct.Struct(
    ">4s"  # magic b"KEEP"
    "B"  # format version
    "B"  # object kind (ObjectKind)
    "B"  # cipher suite (Suite)
    "B"  # reserved, must be 0
    "32s"  # salt: 32 random bytes, fresh for every object
)
AD = struct.Struct(
    ">B"  # object kind
    "B"  # frame role (Role)
    "Q"  # frame number (also the nonce counter)
    "B"  # blob type (0 for frames that are not blobs)
    "B"  # codec (0 for frames that are not blobs)
    "32s"  # blob id (zeros for frames that are not blobs)
)
NONCE = struct.Struct(">IQ")  # 4 zero bytes, 64-bit frame counter
NO_BLOB_ID = bytes(BLOB_ID_SIZE)
FOOTER_FRAME = 2**64 - 1  # the pack footer's counter, never a blob's


class ObjectKind(enum.IntEnum):
    PACK = 1
    INDEX = 2
    SNAPSHOT = 3
    LOCK = 4

    @property
    def path_name(self) -> str:
        """The name used in `/v1/objects/{kind}/{id}`."""
        return self.name.lower()

    @classmethod
    def from_path_name(cls, name: str) -> ObjectKind:
        try:
            return cls[name.upper()]
        except KeyError:
            raise FormatError(f"unknown object kind {name!r}") from None


class Suite(enum.IntEnum):
    AES_256_GCM = 1
    CHACHA20_POLY1305 = 2


class Role(enum.IntEnum):
    BLOB = 1
    TOC = 2
    FOOTER = 3
    BODY = 4  # the single frame of an index, snapshot or lock object


@dataclass(frozen=True, slots=True)
class Header:
    kind: ObjectKind
    suite: Suite
    salt: bytes
    version: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        return HEADER.pack(MAGIC, self.version, self.kind, self.suite, 0, self.salt)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Self:
        if len(data) < HEADER.size:
            raise FormatError("object is shorter than its header")
        magic, version, kind, suite, reserved, salt = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise FormatError("not a Keep object (bad magic)")
        if version not in SUPPORTED_VERSIONS:
            raise FormatError(f"unsupported object format version {version}")
        if reserved != 0:
            raise FormatError("reserved header byte is not zero")
        try:
            return cls(ObjectKind(kind), Suite(suite), salt, version)
        except ValueError:
            raise FormatError("unknown object kind or cipher suite") from None


def frame_ad(
    kind: ObjectKind,
    role: Role,
    frame: int,
    blob_type: int = 0,
    codec: int = 0,
    blob_id: bytes = NO_BLOB_ID,
) -> bytes:
    return AD.pack(kind, role, frame, blob_type, codec, blob_id)


class ObjectCipher:
    """AEAD for the frames of one object, keyed by its header's salt."""

    __slots__ = ("_aead", "header")

    def __init__(self, data_key: DataKey, header: Header) -> None:
        self.header = header
        key: ObjectKey = object_key(data_key, header.salt, header.kind)
        self._aead: AESGCM | ChaCha20Poly1305 = (
            AESGCM(key.material) if header.suite is Suite.AES_256_GCM else ChaCha20Poly1305(key.material)
        )

    @classmethod
    def new(cls, data_key: DataKey, kind: ObjectKind, suite: Suite, salt: bytes) -> Self:
        if len(salt) != SALT_SIZE:
            raise FormatError(f"object salt must be {SALT_SIZE} bytes")
        return cls(data_key, Header(kind, suite, salt))

    def seal(self, frame: int, plaintext: bytes | memoryview, ad: bytes) -> bytes:
        return self._aead.encrypt(NONCE.pack(0, frame), plaintext, ad)

    def open(self, frame: int, ciphertext: bytes | memoryview, ad: bytes) -> bytes:
        if len(ciphertext) < TAG_SIZE:
            raise FormatError("frame is shorter than its tag")
        try:
            return self._aead.decrypt(NONCE.pack(0, frame), ciphertext, ad)
        except InvalidTag:
            raise IntegrityError(
                f"{self.header.kind.path_name} frame {frame} failed authentication"
            ) from None


def seal_single(data_key: DataKey, kind: ObjectKind, suite: Suite, salt: bytes, body: bytes) -> bytes:
    """An object made of the header and one BODY frame (index, snapshot, lock)."""
    cipher = ObjectCipher.new(data_key, kind, suite, salt)
    return cipher.header.to_bytes() + cipher.seal(0, body, frame_ad(kind, Role.BODY, 0))


def open_single(data_key: DataKey, expected: ObjectKind, data: bytes | memoryview) -> bytes:
    """Verify and decrypt an object written by `seal_single`."""
    header = Header.from_bytes(data)
    if header.kind is not expected:
        raise IntegrityError(f"expected a {expected.path_name} object, found a {header.kind.path_name}")
    cipher = ObjectCipher(data_key, header)
    return cipher.open(0, memoryview(data)[HEADER.size :], frame_ad(expected, Role.BODY, 0))

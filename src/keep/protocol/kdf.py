"""Password key derivation: Argon2id with parameters carried in the account
record (docs/format.md §3 "KDF").

Owns `KdfParams`, the `KdfPolicy` floor and ceiling that every client enforces
before spending memory on parameters a server sent, and `derive_password_key`.

The floor stops a malicious server from downgrading the KDF to make password
guessing cheap; the ceiling stops it from exhausting the device's memory or CPU.
Fast parameters exist only in test fixtures, which pass their own policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from keep.protocol.errors import FormatError, KdfPolicyError
from keep.protocol.keys import PasswordKey

ALGORITHM_ARGON2ID = "argon2id"
SALT_SIZE = 32
PASSWORD_MAX = 4096  # bytes; longer input is refused before hashing


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id parameters: memory in KiB, passes, lanes."""

    memory_kib: int
    iterations: int
    parallelism: int
    algorithm: str = ALGORITHM_ARGON2ID

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "memory_kib": self.memory_kib,
            "iterations": self.iterations,
            "parallelism": self.parallelism,
        }

    @classmethod
    def from_json(cls, obj: object) -> Self:
        if not isinstance(obj, dict):
            raise FormatError("KDF parameters must be an object")
        try:
            algorithm = obj["algorithm"]
            values = [obj["memory_kib"], obj["iterations"], obj["parallelism"]]
        except KeyError as exc:
            raise FormatError(f"KDF parameters lack {exc.args[0]!r}") from None
        if not isinstance(algorithm, str) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise FormatError("KDF parameters have the wrong types")
        return cls(values[0], values[1], values[2], algorithm)


# RFC 9106 §4, second recommended option: 64 MiB, 3 passes, 4 lanes.
DEFAULT_PARAMS = KdfParams(memory_kib=64 * 1024, iterations=3, parallelism=4)


@dataclass(frozen=True, slots=True)
class KdfPolicy:
    """Bounds a client accepts for parameters it did not choose itself."""

    min_memory_kib: int
    min_iterations: int
    max_memory_kib: int
    max_iterations: int
    max_parallelism: int

    def check(self, params: KdfParams) -> None:
        """Raise `KdfPolicyError` unless `params` lie within the policy."""
        if params.algorithm != ALGORITHM_ARGON2ID:
            raise KdfPolicyError(f"unsupported KDF algorithm {params.algorithm!r}")
        if params.memory_kib < self.min_memory_kib or params.iterations < self.min_iterations:
            raise KdfPolicyError(
                "the server offered KDF parameters below the safety floor "
                f"({params.memory_kib} KiB, t={params.iterations}); refusing to derive keys"
            )
        if not 1 <= params.parallelism <= self.max_parallelism:
            raise KdfPolicyError(f"KDF parallelism {params.parallelism} is out of range")
        if params.memory_kib > self.max_memory_kib or params.iterations > self.max_iterations:
            raise KdfPolicyError(
                "the server offered KDF parameters above this device's ceiling "
                f"({params.memory_kib} KiB, t={params.iterations}); refusing to derive keys"
            )
        if params.memory_kib < 8 * params.parallelism:
            raise KdfPolicyError("KDF memory is too small for its parallelism")


DEFAULT_POLICY = KdfPolicy(
    min_memory_kib=DEFAULT_PARAMS.memory_kib,
    min_iterations=DEFAULT_PARAMS.iterations,
    max_memory_kib=4 * 1024 * 1024,  # 4 GiB
    max_iterations=64,
    max_parallelism=64,
)


def derive_password_key(
    password: bytes, salt: bytes, params: KdfParams, policy: KdfPolicy = DEFAULT_POLICY
) -> PasswordKey:
    """Argon2id(password, salt, params) -> 32-byte `PasswordKey`, after the
    parameters pass `policy`."""
    policy.check(params)
    if len(salt) != SALT_SIZE:
        raise FormatError(f"KDF salt must be {SALT_SIZE} bytes")
    if not password:
        raise FormatError("the password is empty")
    if len(password) > PASSWORD_MAX:
        raise FormatError("the password is too long")
    # Imported here: a device's daily work (backup, restore, check-in) never
    # derives a key from the password, and argon2 with its cffi binding adds
    # ~5 ms to the start of every command.
    from argon2.low_level import Type, hash_secret_raw

    raw = hash_secret_raw(
        secret=password,
        salt=salt,
        time_cost=params.iterations,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )
    return PasswordKey(raw)

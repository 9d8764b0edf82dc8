"""The device's credential file: server, account, device token and the
keys to back up and restore.

Stored as JSON in `$KEEP_HOME/device.json`, mode 0600, written atomically
(temp file, fsync, rename). It lets timers run backups without the password.
Whoever can read it can read and add backups — never delete them (the device
token is append-only), and never sign an owner record: the file holds the
data, id and chunker keys and the owner's *public* key, not the master key
(docs/threat-model.md). Version 1 files held the master key; loading one
rewrites it as version 2 without it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keep.protocol.envelope import Suite
from keep.protocol.errors import ExitCode, KeepError
from keep.protocol.keys import ChunkerKey, DataKey, IdKey, MasterKey, OwnerPublicKey, RepositoryKeys

STATE_FILE = "device.json"
STATE_VERSION = 2


class NotInitializedError(KeepError):
    """Raised when the device has no credential yet (`keep init` / `keep login`)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True, slots=True)
class DeviceState:
    server_url: str
    account: str
    device_id: str
    device_token: str
    keys: RepositoryKeys
    suite: Suite
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"DeviceState(account={self.account!r}, server={self.server_url!r}, <secrets redacted>)"

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(home, 0o700)
        body = json.dumps(
            {
                "version": STATE_VERSION,
                "server_url": self.server_url,
                "account": self.account,
                "device_id": self.device_id,
                "device_token": self.device_token,
                "data_key": _b64(self.keys.data.material),
                "id_key": _b64(self.keys.id.material),
                "chunker_key": _b64(self.keys.chunker.material),
                "owner_public_key": _b64(self.keys.owner.material),
                "fingerprint": self.keys.fingerprint,
                "suite": int(self.suite),
                "ca_file": self.ca_file,
            },
            indent=1,
        ).encode()
        write_private(home / STATE_FILE, body, sync=True)

    @classmethod
    def load(cls, home: Path) -> DeviceState:
        path = home / STATE_FILE
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") == 1:  # held the master key: derive, then forget it
                keys = RepositoryKeys.from_master(MasterKey(base64.b64decode(raw["master_key"])))
            else:
                keys = RepositoryKeys(
                    DataKey(base64.b64decode(raw["data_key"])),
                    IdKey(base64.b64decode(raw["id_key"])),
                    ChunkerKey(base64.b64decode(raw["chunker_key"])),
                    OwnerPublicKey(base64.b64decode(raw["owner_public_key"])),
                    str(raw["fingerprint"]),
                )
            state = cls(
                server_url=str(raw["server_url"]),
                account=str(raw["account"]),
                device_id=str(raw["device_id"]),
                device_token=str(raw["device_token"]),
                keys=keys,
                suite=Suite(int(raw["suite"])),
                ca_file=raw.get("ca_file"),
            )
        except FileNotFoundError:
            raise NotInitializedError(
                f"this device is not set up ({path} is missing); run `keep init` or `keep login`"
            ) from None
        except (ValueError, KeyError, TypeError, KeepError):
            raise KeepError(f"{path} is damaged; run `keep login` to enroll this device again") from None
        if raw.get("version") == 1:
            with contextlib.suppress(OSError):
                state.save(home)
        return state


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON object written by `write_private`, or None if it is missing,
    unreadable or not an object (records of the past, never required)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_private(path: Path, data: bytes, sync: bool = False) -> None:
    """Replace `path` atomically with `data`, mode 0600, in a 0700 directory.
    The temp file has a unique name (O_EXCL: never follows a planted link),
    so concurrent writers of one path each replace it whole. With `sync` the
    data is on disk before the rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (for records that
    name the process that wrote them: leases, a running backup)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True

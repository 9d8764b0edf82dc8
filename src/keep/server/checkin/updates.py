"""Signed update metadata (TUF, with python-tuf's Metadata API).

The repository is a directory of static files that keep-checkin serves:
`metadata/` (`N.root.json`, `targets.json`, `snapshot.json`,
`timestamp.json`) and `targets/` (the release artifacts and `latest.json`,
which names the newest version). Keys live in a separate directory that the
service never reads: one Ed25519 key per role, PKCS#8 PEM, mode 0600.

- `init` creates the keys and version 1 of every role;
- `release` adds artifacts and a new `latest.json`, and re-signs targets,
  snapshot and timestamp;
- `refresh` (daily, from a timer) re-signs the timestamp, and every other
  role before it expires (RENEW_LEFT_DAYS): a device that sees any expired
  role reports a possible freeze attack instead of "up to date", so letting
  snapshot or targets lapse would cut every device off from updates.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer, SSlibKey
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = ("root", "targets", "snapshot", "timestamp")
EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1}
# `refresh` re-signs a role once less than this is left of it: daily runs
# (a systemd timer) then keep every role valid with days to spare, and a
# missed day or two is harmless. The timestamp is re-signed on every run.
RENEW_LEFT_DAYS = {"root": 60, "targets": 30, "snapshot": 3, "timestamp": 1}
LATEST = "latest.json"


def _expiry(role: str, now: datetime.datetime) -> datetime.datetime:
    return (now + datetime.timedelta(days=EXPIRY_DAYS[role])).replace(microsecond=0)


def _signer(keys: Path, role: str) -> CryptoSigner:
    public = SSlibKey.from_dict(*_public(keys, role))
    signer = Signer.from_priv_key_uri(f"file2:{keys / f'{role}.pem'}", public)
    if not isinstance(signer, CryptoSigner):
        raise TypeError("unexpected signer type")
    return signer


def _public(keys: Path, role: str) -> tuple[str, dict[str, object]]:
    data = json.loads((keys / f"{role}.pub.json").read_text())
    return str(data["keyid"]), dict(data["key"])


def _write(
    repo: Path, md: Metadata[Root] | Metadata[Targets] | Metadata[Snapshot] | Metadata[Timestamp]
) -> None:
    role = md.signed.type
    name = f"{md.signed.version}.root.json" if role == "root" else f"{role}.json"
    md.to_file(str(repo / "metadata" / name), JSONSerializer(compact=False))


def init(repo: Path, keys: Path, now: datetime.datetime | None = None) -> None:
    now = now or datetime.datetime.now(datetime.UTC)
    if (repo / "metadata").exists() and any((repo / "metadata").iterdir()):
        raise FileExistsError(f"{repo}/metadata is not empty")
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    (repo / "metadata").mkdir(parents=True, exist_ok=True)
    (repo / "targets").mkdir(parents=True, exist_ok=True)
    root = Root(expires=_expiry("root", now), consistent_snapshot=False)
    for role in ROLES:
        signer = CryptoSigner.generate_ed25519()
        fd = os.open(keys / f"{role}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signer.private_bytes)
        key = signer.public_key
        (keys / f"{role}.pub.json").write_text(json.dumps({"keyid": key.keyid, "key": key.to_dict()}))
        root.add_key(key, role)
    md_root = Metadata(root)
    md_root.sign(_signer(keys, "root"))
    _write(repo, md_root)
    _publish(repo, keys, Targets(expires=_expiry("targets", now)), now)


def release(
    repo: Path, keys: Path, version: str, artifacts: list[Path], now: datetime.datetime | None = None
) -> None:
    now = now or datetime.datetime.now(datetime.UTC)
    targets = Metadata[Targets].from_file(str(repo / "metadata" / "targets.json")).signed
    names = []
    for artifact in artifacts:
        shutil.copyfile(artifact, repo / "targets" / artifact.name)
        names.append(artifact.name)
    latest = {"version": version, "artifacts": names, "released": now.isoformat()}
    (repo / "targets" / LATEST).write_text(json.dumps(latest, indent=1))
    for name in [*names, LATEST]:
        targets.targets[name] = TargetFile.from_file(name, str(repo / "targets" / name))
    targets.version += 1
    targets.expires = _expiry("targets", now)
    _publish(repo, keys, targets, now)


def _publish(repo: Path, keys: Path, targets: Targets, now: datetime.datetime) -> None:
    md_targets = Metadata(targets)
    md_targets.sign(_signer(keys, "targets"))
    _write(repo, md_targets)
    _sign_snapshot(repo, keys, targets.version, now)
    _sign_timestamp(repo, keys, now)


def refresh(repo: Path, keys: Path, now: datetime.datetime | None = None) -> list[str]:
    """Keep every role valid (run daily): re-sign the timestamp, and each other
    role once less than RENEW_LEFT_DAYS of it is left — root as a new version
    with the same keys, which devices chain to. Returns the roles re-signed.
    A role that is due while its key is not in `keys` (kept offline) raises
    OfflineKeyNeededError naming it and its expiry, days before it expires."""
    now = now or datetime.datetime.now(datetime.UTC)
    renewed = []
    root = _latest_root(repo)
    if _due("root", root.signed.expires, now):
        _resign(repo, keys, root, now)
        renewed.append("root")
    targets = Metadata[Targets].from_file(str(repo / "metadata" / "targets.json"))
    snapshot = Metadata[Snapshot].from_file(str(repo / "metadata" / "snapshot.json"))
    if _due("targets", targets.signed.expires, now):
        _resign(repo, keys, targets, now)
        renewed.append("targets")
    if renewed[-1:] == ["targets"] or _due("snapshot", snapshot.signed.expires, now):
        _sign_snapshot(repo, keys, targets.signed.version, now)
        renewed.append("snapshot")
    _sign_timestamp(repo, keys, now)
    return [*renewed, "timestamp"]


def _resign(repo: Path, keys: Path, md: Metadata[Root] | Metadata[Targets], now: datetime.datetime) -> None:
    """A new version of an offline role, valid for its full period again."""
    role = md.signed.type
    signer = _signer(_key_at_hand(keys, role, md.signed.expires), role)
    md.signed.version += 1
    md.signed.expires = _expiry(role, now)
    md.signatures.clear()
    md.sign(signer)
    _write(repo, md)


class OfflineKeyNeededError(Exception):
    """A role is due to be re-signed and its key is not in the keys directory."""


def _key_at_hand(keys: Path, role: str, expires: datetime.datetime) -> Path:
    if not (keys / f"{role}.pem").exists():
        raise OfflineKeyNeededError(
            f"the {role} metadata expires on {expires:%Y-%m-%d}: run `keep-checkin release refresh` "
            f"once with its key ({role}.pem) in {keys}"
        )
    return keys


def _due(role: str, expires: datetime.datetime, now: datetime.datetime) -> bool:
    return expires - now < datetime.timedelta(days=RENEW_LEFT_DAYS[role])


def _latest_root(repo: Path) -> Metadata[Root]:
    versions = [int(p.name.split(".", 1)[0]) for p in (repo / "metadata").glob("*.root.json")]
    return Metadata[Root].from_file(str(repo / "metadata" / f"{max(versions)}.root.json"))


def _sign_snapshot(repo: Path, keys: Path, targets_version: int, now: datetime.datetime) -> None:
    path = repo / "metadata" / "snapshot.json"
    snapshot = Metadata[Snapshot].from_file(str(path)).signed if path.exists() else Snapshot()
    snapshot.meta["targets.json"] = MetaFile(version=targets_version)
    snapshot.version += 1 if path.exists() else 0
    snapshot.expires = _expiry("snapshot", now)
    md = Metadata(snapshot)
    md.sign(_signer(keys, "snapshot"))
    _write(repo, md)


def _sign_timestamp(repo: Path, keys: Path, now: datetime.datetime) -> None:
    """A new timestamp pointing at the current snapshot."""
    snapshot = Metadata[Snapshot].from_file(str(repo / "metadata" / "snapshot.json")).signed
    path = repo / "metadata" / "timestamp.json"
    timestamp = Metadata[Timestamp].from_file(str(path)).signed if path.exists() else Timestamp()
    timestamp.snapshot_meta = MetaFile(version=snapshot.version)
    timestamp.version += 1 if path.exists() else 0
    timestamp.expires = _expiry("timestamp", now)
    md = Metadata(timestamp)
    md.sign(_signer(keys, "timestamp"))
    _write(repo, md)

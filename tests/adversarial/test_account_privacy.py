"""Whether an account name exists is not something the server tells: the
KDF reply, the login answer and registration behave the same for known and
unknown names (or are throttled and can be closed to all but invitations);
owner sessions end when a credential changes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from keep.client.device.account import owner_login
from keep.client.remote import Remote
from keep.protocol.kdf import DEFAULT_PARAMS
from keep.protocol.keys import Kek, MasterKey
from keep.protocol.keyslot import KeySlot, SlotKind
from keep.server.http_accounts import fake_salt
from support.servers import keep_server
from tests.client.conftest import Device

KEEP_SERVER = str(Path(sys.executable).with_name("keep-server"))


def http(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 — loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_kdf_reply_of_a_known_name_looks_like_that_of_an_unknown_one(device: Device) -> None:
    device.init()
    known = http(f"{device.server}/v1/accounts/{device.account}/kdf")
    unknown = http(f"{device.server}/v1/accounts/{device.account}-not/kdf")
    assert known[0] == unknown[0] == 200
    assert len(known[1]) == len(unknown[1])
    shape = [(k, sorted(v) if isinstance(v, dict) else None) for k, v in json.loads(known[1]).items()]
    assert shape == [
        (k, sorted(v) if isinstance(v, dict) else None) for k, v in json.loads(unknown[1]).items()
    ]
    assert known[1].split(b'"salt"')[0] == unknown[1].split(b'"salt"')[0]  # same parameters, byte for byte


def test_a_fake_salt_changes_now_and_then_as_a_real_one_does() -> None:
    secret = bytes(32)
    day = 86_400
    for name in ("alice", "bob", "carol"):
        salts = [fake_salt(secret, name, t * day) for t in range(2 * 365)]
        assert salts[0] == salts[1]  # stable from one day to the next...
        assert 2 <= len(set(salts)) <= 2 * 365 // 30 + 1  # ...but not for ever


def test_login_answers_alike_for_a_wrong_password_and_an_unknown_name(device: Device, tmp_path: Path) -> None:
    device.init()
    auth = "A" * 43 + "="
    wrong = http(
        f"{device.server}/v1/sessions",
        "POST",
        {"account": device.account, "method": "password", "auth": auth},
    )
    nobody = http(
        f"{device.server}/v1/sessions", "POST", {"account": "nobody-xyz", "method": "password", "auth": auth}
    )
    assert wrong == nobody
    assert wrong[0] == 401
    results = []
    for account in (device.account, "nobody-xyz"):
        other = Device(device.server, tmp_path / f"h-{account}", account, tmp_path / "wrong")
        other.password_file.write_text("not the password")
        r = other.login(check=False)
        results.append((r.returncode, r.stderr.replace(account, "NAME")))
    assert results[0] == results[1]
    assert results[0][0] == 10


def test_registration_on_taken_names_is_throttled(tmp_path: Path) -> None:
    with keep_server(tmp_path / "data") as (url, _):
        device = Device(url, tmp_path / "h", "taken", tmp_path / "pw")
        device.password_file.write_text("correct horse battery staple\n")
        device.init()
        statuses = []
        for _ in range(60):
            statuses.append(http(f"{url}/v1/accounts", "POST", _valid_registration("taken"))[0])
        assert statuses[:50] == [409] * 50
        assert set(statuses[50:]) == {429}  # from then on, one answer per wait


def _valid_registration(name: str) -> dict[str, Any]:
    slot = KeySlot.wrap(
        Kek(os.urandom(32)), MasterKey(os.urandom(64)), name, SlotKind.PASSWORD, os.urandom(32)
    )
    return {
        "name": name,
        "kdf": DEFAULT_PARAMS.to_json(),
        "salt": base64.b64encode(os.urandom(32)).decode(),
        "auth_verifier": base64.b64encode(os.urandom(32)).decode(),
        "keyslots": {"password": slot.to_json()},
    }


def test_invite_only_registration(tmp_path: Path) -> None:
    with keep_server(tmp_path / "data", "--registration", "invite") as (url, _):
        device = Device(url, tmp_path / "h", "invited", tmp_path / "pw")
        device.password_file.write_text("correct horse battery staple\n")
        refused = device.run(
            "init",
            "--server",
            url,
            "--account",
            "invited",
            "--password-file",
            str(device.password_file),
            check=False,
        )
        assert refused.returncode != 0
        assert "invitation only" in refused.stderr
        code = subprocess.run(
            [KEEP_SERVER, "invite", "invited", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        other = Device(url, tmp_path / "h2", "someone-else", device.password_file)
        wrong = other.run(
            "init",
            "--server",
            url,
            "--account",
            "someone-else",
            "--invite",
            code,
            "--password-file",
            str(device.password_file),
            check=False,
        )
        assert wrong.returncode != 0  # an invitation opens its own name only
        # and a refused registration says nothing about whether the name is taken
        assert http(f"{url}/v1/accounts", "POST", _valid_registration("invited"))[0] == 403
        device.run(
            "init",
            "--server",
            url,
            "--account",
            "invited",
            "--invite",
            code,
            "--password-file",
            str(device.password_file),
            "--recovery-kit",
            str(tmp_path / "kit"),
        )
        device.run("snapshots")


def test_owner_sessions_end_when_the_password_or_recovery_key_changes(device: Device, tmp_path: Path) -> None:
    device.init()
    password = device.password_file.read_text().strip().encode()
    for change in ("passwd", "recovery-kit"):
        with Remote(device.server) as remote:
            session, _ = owner_login(remote, device.account, password)
            assert http(f"{device.server}/v1/account", token=session)[0] == 200
        if change == "passwd":
            new = tmp_path / "pw2"
            new.write_text("an entirely new passphrase 42\n")
            device.run(
                "key", "passwd", "--password-file", str(device.password_file), "--new-password-file", str(new)
            )
            device.password_file = new
            password = new.read_text().strip().encode()
        else:
            device.run(
                "key",
                "recovery-kit",
                "--password-file",
                str(device.password_file),
                "--output",
                str(tmp_path / "kit2"),
            )
        assert http(f"{device.server}/v1/account", token=session)[0] == 401

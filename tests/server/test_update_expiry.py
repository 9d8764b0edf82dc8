"""Update metadata stays valid under daily `release refresh` — across every
role's expiry, the root's included — and lapses without it. The device here
is python-tuf's own ngclient, run under libfaketime (Debian's `faketime`) so
that its clock is the simulated day's, keeping its trusted metadata from one
day to the next as a device does."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keep.server.checkin import updates
from support.servers import checkin_server
from tests.conftest import require_tool

DAYS = 400  # past root's 365 days, so every role expires at least once

CLIENT = textwrap.dedent(
    """
    import json, shutil, sys
    from pathlib import Path
    from tuf.ngclient import Updater
    from tuf.api import exceptions

    url, home = sys.argv[1], Path(sys.argv[2])
    (home / "metadata").mkdir(parents=True, exist_ok=True)
    (home / "targets").mkdir(exist_ok=True)
    if not (home / "metadata" / "root.json").exists():
        shutil.copyfile(sys.argv[3], home / "metadata" / "root.json")
    try:
        updater = Updater(str(home / "metadata"), url + "/updates/metadata/", str(home / "targets"),
                          url + "/updates/targets/", bootstrap=None)
        updater.refresh()
        info = updater.get_targetinfo("latest.json")
        print(json.loads(Path(updater.download_target(info)).read_text())["version"])
    except exceptions.RepositoryError as exc:
        print("REFUSED", type(exc).__name__, exc)
        sys.exit(15)
    """
)


def device_check(url: str, home: Path, root: Path, day: datetime.datetime) -> tuple[int, str]:
    """python-tuf's ngclient, its clock set to `day` (libfaketime)."""
    at = day.strftime("@%Y-%m-%d %H:%M:%S")
    result = subprocess.run(
        ["faketime", "-f", at, sys.executable, "-c", CLIENT, url, str(home), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )
    return result.returncode, (result.stdout + result.stderr).strip()


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, Path, datetime.datetime]:
    """A repository created and released DAYS ago (its clock: then)."""
    require_tool("faketime")
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(days=DAYS)
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    updates.init(repo, keys, now=start)
    artifact = tmp_path / "keep-2.0.0.tar.gz"
    artifact.write_bytes(b"release")
    updates.release(repo, keys, "2.0.0", [artifact], now=start)
    return repo, keys, start


def test_daily_refresh_keeps_every_role_valid_for_devices(
    published: tuple[Path, Path, datetime.datetime], tmp_path: Path
) -> None:
    repo, keys, start = published
    root = tmp_path / "pinned-root.json"
    shutil.copyfile(repo / "metadata" / "1.root.json", root)
    renewed: dict[str, int] = {}
    with checkin_server(tmp_path / "checkin", "--updates", str(repo)) as (url, _):
        for day in range(DAYS + 1):
            now = start + datetime.timedelta(days=day)
            for role in updates.refresh(repo, keys, now=now):
                renewed[role] = renewed.get(role, 0) + 1
            if day % 20 == 0 or day == DAYS:
                # Late in the day, just before the next refresh.
                late = now + datetime.timedelta(hours=23, minutes=30)
                code, said = device_check(url, tmp_path / "device", root, late)
                assert (code, said) == (0, "2.0.0"), f"day {day}: {said}"
    assert renewed["timestamp"] == DAYS + 1
    assert renewed["snapshot"] >= DAYS // 7
    assert renewed["targets"] >= DAYS // 90
    assert renewed["root"] == 1  # one new root version, which the device chained to
    assert (repo / "metadata" / "2.root.json").exists()
    assert json.loads((tmp_path / "device" / "metadata" / "root.json").read_text())["signed"]["version"] == 2


def test_without_refresh_devices_refuse_and_an_offline_key_is_asked_for(
    published: tuple[Path, Path, datetime.datetime], tmp_path: Path
) -> None:
    repo, keys, start = published
    root = repo / "metadata" / "1.root.json"
    with checkin_server(tmp_path / "checkin", "--updates", str(repo)) as (url, _):
        code, said = device_check(url, tmp_path / "a", root, start + datetime.timedelta(hours=12))
        assert (code, said) == (0, "2.0.0")
        code, said = device_check(url, tmp_path / "b", root, start + datetime.timedelta(days=2))
        assert code == 15
        assert "ExpiredMetadataError" in said  # a freeze, as far as the device can tell
    # Targets kept offline: refresh says, days before it expires, what it needs.
    (keys / "targets.pem").rename(tmp_path / "offline-targets.pem")
    updates.refresh(repo, keys, now=start + datetime.timedelta(days=30))  # not due yet
    expires = start + datetime.timedelta(days=updates.EXPIRY_DAYS["targets"])
    with pytest.raises(
        updates.OfflineKeyNeededError, match=f"targets metadata expires on {expires:%Y-%m-%d}"
    ):
        updates.refresh(repo, keys, now=start + datetime.timedelta(days=61))

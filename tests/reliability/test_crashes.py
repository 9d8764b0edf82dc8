"""Crashes and cut connections, with real processes: the client killed (-9)
at seeded random moments of a backup, the server killed during a prune,
connections cut at random by a proxy. Each time the repository stays
consistent (`keep check` passes) and a later backup restores exactly."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from keep.client.device.account import owner_login
from keep.client.device.state import DeviceState
from keep.client.remote import Remote
from support.byte_proxy import byte_proxy
from support.servers import free_port, keep_server
from tests.client.conftest import KEEP, Device
from tests.client.test_faults import random_tree, restored
from tests.client.tree_builder import describe

MiB = 1024 * 1024
KILLS = int(os.environ.get("KEEP_RELIABILITY_KILLS", "20"))  # seeded iterations; longer runs set more


def env_of(dev: Device) -> dict[str, str]:
    return {**os.environ, "KEEP_HOME": str(dev.home), "KEEP_CONFIG": str(dev.home / "none.toml"), **dev.env}


def churn(root: Path, rng: random.Random) -> None:
    """Change a few files, add one, remove one."""
    files = sorted(root.glob("*.bin"))
    for path in rng.sample(files, min(3, len(files))):
        path.write_bytes(rng.randbytes(rng.randint(1, 3 * MiB)))
    (root / f"new{rng.randint(0, 10**9)}.bin").write_bytes(rng.randbytes(rng.randint(1000, 2 * MiB)))
    victim = rng.choice(sorted(root.glob("*.bin")))
    victim.unlink()


def test_client_killed_at_random_points(device: Device, tmp_path: Path) -> None:
    device.init()
    src = random_tree(tmp_path / "src", 12, 2 * MiB)
    start = time.monotonic()
    device.json("backup", str(src))
    typical = max(0.3, time.monotonic() - start)
    rng = random.Random(20261123)
    for i in range(KILLS):
        churn(src, rng)
        backup = subprocess.Popen(
            [KEEP, "backup", str(src)],
            env=env_of(device),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0, typical * 1.5))
        backup.send_signal(signal.SIGKILL)
        backup.wait()
        check = device.run("--json", "check", check=False)
        assert check.returncode == 0, f"iteration {i}: {check.stdout}{check.stderr}"
    final = device.json("backup", str(src))
    target = tmp_path / "restore"
    device.run("restore", final["snapshot"], "--target", str(target))
    assert describe(restored(target, src)) == describe(src)
    assert device.json("check", "--read-data")["ok"]


def test_server_killed_during_prune(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "server"
    dev = Device(f"http://127.0.0.1:{port}", tmp_path / "home", "prunecrash", tmp_path / "pw")
    dev.password_file.write_text("prune crash drill\n")
    src = random_tree(tmp_path / "src", 8, 2 * MiB)
    rng = random.Random(7)
    with keep_server(data, port=port):
        dev.init()
        for _ in range(6):
            churn(src, rng)
            dev.json("backup", str(src))
        dev.json("forget", "--keep-last", "2", "--password-file", str(dev.password_file))
    for attempt in range(3):
        with keep_server(data, port=port) as (_, server):
            prune = subprocess.Popen(
                [KEEP, "prune", "--repack-below", "0.9", "--password-file", str(dev.password_file)],
                env=env_of(dev),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(rng.uniform(0.2, 0.9))  # the owner login takes ~0.15 s, then the prune works
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
            _, err = prune.communicate(timeout=120)
            # Finished, or a clear "cannot reach the server", or (after an earlier
            # kill) "locked" while the dead prune's lease runs out.
            assert prune.returncode in (0, 12, 14), err
            assert "Traceback" not in err
        with keep_server(data, port=port):
            no_temp = [p for p in (data / "objects").rglob("tmp/*") if p.is_file()]
            assert no_temp == [], f"attempt {attempt}: partial uploads visible"
            check = dev.run("--json", "check", "--read-data", check=False)
            assert check.returncode == 0, f"attempt {attempt}: {check.stdout}"
    with keep_server(data, port=port):
        snap = dev.json("backup", str(src))["snapshot"]
        target = tmp_path / "restore"
        dev.run("restore", snap, "--target", str(target))
        assert describe(restored(target, src)) == describe(src)


def test_connections_cut_at_random(device: Device, tmp_path: Path) -> None:
    """A proxy that resets connections at random: the client retries; a run
    either succeeds or stops with the unreachable exit code, and never
    leaves a snapshot that does not restore."""
    src = random_tree(tmp_path / "src", 10, 3 * MiB)
    port = int(device.server.rsplit(":", 1)[1])
    with byte_proxy(port, seed=11) as proxy:
        dev = Device(f"http://127.0.0.1:{proxy.port}", device.home, device.account, device.password_file)
        dev.init()
        proxy.cut_probability = 0.4
        proxy.cut_within = 256 * 1024  # a cut connection is cut within its first pack
        outcomes = []
        snapshot = ""
        for attempt in range(10):
            result = dev.run("--json", "backup", str(src), check=False)
            outcomes.append(result.returncode)
            assert result.returncode in (0, 12), result.stderr
            assert "Traceback" not in result.stderr
            if result.returncode == 0:
                snapshot = json.loads(result.stdout)["snapshot"]
                if proxy.cuts:
                    break
                # A backup's few connections all escaped the dice: give the
                # next one more to upload, so that the test sees cuts.
                snapshot = ""
                (src / f"more{attempt}.bin").write_bytes(os.urandom(4 * MiB))
        assert proxy.cuts > 0, outcomes
        assert snapshot, outcomes  # a backup finished after connections were cut
        proxy.cut_probability = 0.0
        target = tmp_path / "restore"
        dev.run("restore", snapshot, "--target", str(target))
        assert describe(restored(target, src)) == describe(src)
        assert dev.json("check", "--read-data")["ok"]


def test_a_backup_whose_lease_was_lost_writes_no_snapshot(device: Device, tmp_path: Path) -> None:
    """If the lease lapsed (here: the owner unlocked it), the backup stops
    before its snapshot instead of trusting data a prune may have deleted."""
    device.init()
    src = random_tree(tmp_path / "src", 24, 2 * MiB)
    state = DeviceState.load(device.home)
    backup = subprocess.Popen(
        [KEEP, "backup", str(src)],
        env=env_of(device),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with Remote(state.server_url, state.device_token) as remote:
        deadline = time.monotonic() + 60
        while not remote.request_json("GET", "/v1/locks")["locks"]:
            assert backup.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.002)
        os.kill(backup.pid, signal.SIGSTOP)
        remote.token, _ = owner_login(
            remote, state.account, device.password_file.read_text().strip().encode()
        )
        for lease in remote.request_json("GET", "/v1/locks")["locks"]:
            remote.request_json("DELETE", f"/v1/locks/{lease['id']}", ok=(204,))
    os.kill(backup.pid, signal.SIGCONT)
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 14, err
    assert "lease expired" in err
    assert device.json("snapshots") == []
    assert device.json("check")["ok"]

"""What the admin pages show, gathered from the state dir, keep.toml, systemd
and the storage server. Plain blocking functions: the web handlers run them
on a worker thread."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keep.client.admin import charts, health
from keep.client.checkin import agent, ddns, updates
from keep.client.device.account import owner_login
from keep.client.device.backup_record import backup_history, last_backup, record_last_backup, running_backup
from keep.client.device.config import load_config, update_tables
from keep.client.device.connection import Endpoint
from keep.client.device.state import DeviceState
from keep.client.engine import drill, explore
from keep.client.engine.lease import Lease
from keep.client.engine.repository import Repository, snapshot_by_id
from keep.client.engine.restorer import OVERWRITE, Restorer
from keep.client.remote import Usage
from keep.client.text import display_path, human_bytes
from keep.protocol.api import Route, route_path
from keep.protocol.device_name import open_device_name
from keep.protocol.errors import IntegrityError, KeepError, NotFoundError
from keep.protocol.tree import Node, NodeType, Tree


@dataclass(frozen=True)
class Paths:
    home: Path
    config: Path
    endpoint: Endpoint = field(default_factory=Endpoint)  # TLS settings `keep admin serve` was given


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


@contextmanager
def repository(paths: Paths) -> Iterator[Repository]:
    with paths.endpoint.repository(paths.home) as (_, repo):
        yield repo


def next_backup() -> tuple[str, bool]:
    """(when the timer runs next, in words; whether it is active)."""
    if not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return "not scheduled here (install the timer with `keep schedule install`)", False
    out = subprocess.run(
        ["systemctl", "show", "keep-backup.timer", "--property=NextElapseUSecRealtime", "--value"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (out, True) if out else ("the backup timer is not active", False)


def status(paths: Paths, days: int = charts.PERIODS[0]) -> dict[str, Any]:
    last = last_backup(paths.home)
    drilled = drill.last(paths.home)
    usage: dict[str, Any] | str
    reply: Usage | None = None
    try:
        with repository(paths) as repo:
            reply = repo.remote.usage()
        usage = {"bytes": human_bytes(reply.bytes), "objects": reply.objects}
    except (KeepError, OSError) as exc:
        usage = f"unavailable: {exc}"
    when_next, scheduled = next_backup()
    try:
        sources_set = bool(load_config(paths.config).backup.sources)
    except KeepError:
        sources_set = False
    facts = health.Facts(
        now=time.time(),
        last_backup=last,
        last_success=(last or {}).get("last_success"),
        last_drill=drilled,
        sources_set=sources_set,
        timer_active=scheduled,
        stored_bytes=reply.bytes if reply is not None else None,
        quota=reply.quota if reply is not None else None,
    )
    running = running_backup(paths.home)
    total = (running or {}).get("bytes_total")
    return {
        "running": running,
        "running_since": _when(running["started"]) if running else "",
        "running_bytes": human_bytes(int(running.get("bytes_done") or 0)) if running else "",
        "running_total": human_bytes(int(total)) if total else "",
        "verdict": health.verdict(facts),
        "last": last,
        "last_when": _when(last["time"]) if last else "never",
        "last_added": human_bytes(int(last.get("bytes_added", 0))) if last else "",
        "drill": drilled,
        "drill_when": _when(drilled["time"]) if drilled else "never",
        "usage": usage,
        "next": when_next,
        "days": days,
        "periods": charts.PERIODS,
        "charts": history_charts(paths, days, facts.now),
    }


def history_charts(paths: Paths, days: int, now: float) -> list[charts.Chart]:
    """The status page's pictures of the last `days` days."""
    history = backup_history(paths.home)
    by_day = agent.attempts_by_day(agent.load_state(paths.home))
    return [
        charts.backups(history, now, days),
        charts.repository_size(history, now, days),
        charts.checkins(by_day, now, days),
    ]


def start_backup(paths: Paths) -> str:
    """Start a backup in the background: through systemd when it runs the
    timer (the unit has the right privileges), else as a child process."""
    if not load_config(paths.config).backup.sources:
        record_last_backup(
            paths.home,
            {"time": time.time(), "result": "failed", "error": "nothing to back up: no sources are set"},
        )
        return "Backup not started: nothing to back up (no sources are set in keep.toml)."
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        result = subprocess.run(
            ["systemctl", "start", "--no-block", "keep-backup.service"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            return "Backup started (keep-backup.service)."
    keep = shutil.which("keep") or "keep"
    env = {**os.environ, "KEEP_HOME": str(paths.home), "KEEP_CONFIG": str(paths.config)}
    subprocess.Popen(
        [keep, "backup"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return "Backup started."


def _checkin_settings(paths: Paths) -> agent.Settings:
    config = load_config(paths.config)
    return agent.Settings.from_config(config.checkin, config.ca_file)


def connections(paths: Paths) -> list[dict[str, Any]]:
    settings = _checkin_settings(paths)
    state = agent.load_state(paths.home)
    sent = agent.what_is_sent(settings)
    consequences = {
        "ddns": "the device's name stops following its address, so it cannot be reached by name "
        "from outside once the address changes",
        "updates": "you are not told about new versions, including security fixes",
    }
    schedule = {
        "ddns": "with every check-in (every 15 minutes); an update is sent only when the address changed",
        "updates": "once a day, at a random time within 2 hours",
    }
    rows = []
    for key, label in agent.SWITCHES.items():
        s = state.get(key, {})
        on = bool(getattr(settings, key))
        rows.append(
            {
                "key": key,
                "label": label,
                "on": on,
                "sends": sent[key] if on else "nothing",
                "schedule": schedule[key] if on else "never (switched off)",
                "off_means": consequences[key],
                "last_attempt": _when(s.get("last_attempt")),
                "result": s.get("result") or "no result yet",
                "last_request": "\n".join(agent.request_lines(s)),
            }
        )
    return rows


def set_connection(paths: Paths, key: str, on: bool) -> str:
    agent.set_switches(paths.config, [key], on)
    if key == "ddns" and not on:
        settings = _checkin_settings(paths)
        state = agent.load_state(paths.home)
        if state.get("ddns", {}).get("token"):
            note = ddns.release_name(settings, state)
            agent.save_state(paths.home, state)
            return f"{agent.SWITCHES[key]} switched off; DNS record: {note}."
    return f"{agent.SWITCHES[key]} switched {'on' if on else 'off'}."


def check_now(paths: Paths, key: str) -> str:
    settings = _checkin_settings(paths)
    state = agent.load_state(paths.home)
    now = time.time()
    try:
        if key == "ddns":
            state.setdefault("ddns", {}).pop("next_attempt", None)
            result = ddns.check_in(settings, state, now)
        else:
            result = updates.check_in(settings, state, paths.home, now, force=True)
    except updates.UpdateVerificationError as exc:
        result = f"REFUSED: {exc}"
    agent.save_state(paths.home, state)
    return f"{agent.SWITCHES[key]}: {result}"


def snapshots(paths: Paths) -> list[dict[str, Any]]:
    """Every snapshot, newest first, grouped by local day (a timeline: day,
    rows), with what each added to the repository drawn as a bar."""
    with repository(paths) as repo:
        snaps = repo.snapshots()
    added = [int(s.snapshot.summary.get("bytes_added", 0)) for s in snaps]
    most = max(added, default=0) or 1
    days: dict[str, dict[str, Any]] = {}
    for info, new in zip(reversed(snaps), reversed(added), strict=True):
        moment = info.snapshot.time_ns / 1e9
        day = days.setdefault(
            time.strftime("%Y-%m-%d", time.localtime(moment)),
            {"day": time.strftime("%A %d %B %Y", time.localtime(moment)), "rows": []},
        )
        day["rows"].append(
            {
                "id": info.id,
                "short": info.id[:12],
                "when": time.strftime("%H:%M:%S", time.localtime(moment)),
                "host": info.snapshot.host,
                "paths": ", ".join(os.fsdecode(p) for p in info.snapshot.paths),
                "tags": ", ".join(info.snapshot.tags),
                "size": human_bytes(int(info.snapshot.summary.get("bytes_total", 0))),
                "added": human_bytes(new),
                "bar": round(100 * new / most, 1),
            }
        )
    return list(days.values())


def snapshot_diff(paths: Paths, first: str, second: str, path: str) -> dict[str, Any]:
    """`keep diff` on the page: the same engine code (explore.diff)."""
    with repository(paths) as repo:
        snaps = repo.snapshots()
        a, b = (snapshot_by_id(ref, snaps) for ref in (first, second))
        repo.ensure_index()  # the sizes of what was added and removed
        difference = explore.diff(repo, a.snapshot.tree, b.snapshot.tree, os.fsencode(path.rstrip("/")))
    words = {
        "+": "added",
        "-": "removed",
        "M": "content changed",
        "U": "metadata changed",
        "T": "type changed",
    }
    return {
        "first": a.id,
        "second": b.id,
        "path": path,
        "changes": [
            {"kind": words[kind], "mark": kind, "path": os.fsdecode(p), "type": node.type.name.lower()}
            for kind, p, node in difference.changes
        ],
        "bytes_added": human_bytes(difference.bytes_added),
        "bytes_removed": human_bytes(difference.bytes_removed),
    }


def path_ref(path: bytes) -> str:
    """A snapshot path as the page carries it in links and forms: itself if
    it is UTF-8, else `b64:` and its bytes (a name need not be UTF-8, and a
    page cannot carry what is not)."""
    try:
        return path.decode()
    except UnicodeDecodeError:
        return "b64:" + base64.urlsafe_b64encode(path).decode()


def path_from_ref(ref: str) -> bytes:
    if ref.startswith("b64:"):
        try:
            return base64.urlsafe_b64decode(ref[4:].encode())
        except ValueError:
            raise NotFoundError("not a path of this snapshot") from None
    return ref.encode("utf-8", "surrogateescape")


def _node_at(repo: Repository, tree_id: bytes, path: bytes) -> tuple[Node | None, bytes]:
    """The node at `path` (b"/a/b") below the root tree, and the tree to list
    (the root for "/")."""
    if not path.strip(b"/"):
        return None, tree_id
    node = explore.node_at(repo, tree_id, path)
    if node is None:
        raise NotFoundError(f"no {display_path(path)!r} in this snapshot")
    return node, node.subtree if node.type is NodeType.DIR and node.subtree is not None else tree_id


def browse(paths: Paths, snapshot_id: str, ref: str) -> dict[str, Any]:
    path = path_from_ref(ref)
    with repository(paths) as repo:
        info = repo.find_snapshot(snapshot_id)
        node, tree_id = _node_at(repo, info.snapshot.tree, path)
        if node is not None and node.type is not NodeType.DIR:
            raise NotFoundError(f"{display_path(path)} is not a directory")
        tree = Tree.from_bytes(repo.read_tree_bytes(tree_id))
    base = path.rstrip(b"/")
    return {
        "snapshot": info.id,
        "short": info.id[:12],
        "path": display_path(path or b"/"),
        "ref": path_ref(path or b"/"),
        "parent": path_ref(base.rsplit(b"/", 1)[0] or b"/") if base else None,
        "parent_shown": display_path(base.rsplit(b"/", 1)[0] or b"/") if base else None,
        "entries": [
            {
                "name": display_path(n.name),
                "ref": path_ref(base + b"/" + n.name),
                "dir": n.type is NodeType.DIR,
                "file": n.type is NodeType.FILE,
                "size": human_bytes(n.size) if n.type is NodeType.FILE else "",
                "when": _when(n.mtime_ns / 1e9),
            }
            for n in tree.nodes
        ],
    }


def restore_to(paths: Paths, snapshot_id: str, chosen: list[str], target: str, overwrite: str) -> str:
    """Restore `chosen` paths of a snapshot (all of it if none) into the
    directory `target` on this device, as `keep restore --verify` does: the
    same engine, the same overwrite choices, every file read back after.
    One line for the page, saying what happened or why not."""
    if not target.startswith("/") or "\0" in target:
        return "Restore not started: the target must be an absolute directory path, like /srv/restored."
    if overwrite not in OVERWRITE:
        return f"Restore not started: overwrite must be one of {', '.join(OVERWRITE)}."
    try:
        with repository(paths) as repo, Lease(repo, purpose="restore"):
            repo.load_index()
            info = repo.find_snapshot(snapshot_id)
            includes = tuple(p for p in map(path_from_ref, chosen) if p.strip(b"/"))
            restorer = Restorer(repo, os.fsencode(target), includes, overwrite=overwrite)
            stats = restorer.run(info.snapshot.tree)
            mismatches = restorer.verify()
    except (KeepError, OSError) as exc:
        return f"Restore failed: {exc}"
    if includes and not stats.matched:
        return "Restore failed: the snapshot holds none of the chosen paths."
    if mismatches:
        return f"Restore failed: {len(mismatches)} restored file(s) differ from the snapshot."
    kept = f", {stats.files_kept} existing left as they were" if stats.files_kept else ""
    problems = f"; {len(stats.warnings)} entries could not be restored" if stats.warnings else ""
    return (
        f"Restored {stats.files} files ({human_bytes(stats.bytes_written)}) and {stats.dirs} directories "
        f"to {target}{kept}{problems}; every file read back and verified."
    )


def file_blobs(paths: Paths, snapshot_id: str, ref: str) -> tuple[str, int, list[bytes]]:
    path = path_from_ref(ref)
    with repository(paths) as repo:
        info = repo.find_snapshot(snapshot_id)
        node, _ = _node_at(repo, info.snapshot.tree, path)
    if node is None or node.type is not NodeType.FILE:
        raise NotFoundError(f"{display_path(path)} is not a file")
    return display_path(node.name), node.size, list(node.content)


def devices(paths: Paths) -> list[dict[str, Any]]:
    state = DeviceState.load(paths.home)
    with paths.endpoint.device_remote(state) as remote:
        reply = remote.request_json("GET", Route.DEVICES)
    return [
        {
            "id": d.get("id"),
            "name": open_device_name(state.keys.data, str(d.get("name", ""))),
            "enrolled": _when(d.get("created")),
            "last_seen": _when(d.get("last_seen")),
            "revoked": _when(d["revoked"]) if d.get("revoked") else None,
            "this": d.get("id") == state.device_id,
        }
        for d in reply.get("devices", [])
    ]


def revoke(paths: Paths, device_id: str, password: str) -> str:
    state = DeviceState.load(paths.home)
    with paths.endpoint.device_remote(state) as remote:
        session, master = owner_login(remote, state.account, password.encode())
        if not state.keys.opened_by(master):
            raise IntegrityError("that password opens a different key than this device's")
        remote.request_json("DELETE", route_path(Route.DEVICE, device_id=device_id), token=session)
    return f"Device {device_id} revoked."


# Settings ---------------------------------------------------------------------------
RETENTION_NUMBERS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def settings(paths: Paths, browse_dir: str = "/") -> dict[str, Any]:
    """What the settings page shows: keep.toml's backup and retention
    settings, and the directories below `browse_dir` on the device to pick
    sources from."""
    config = load_config(paths.config)
    where = os.path.abspath(browse_dir or "/")
    try:
        with os.scandir(where) as entries:
            dirs = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
        problem = ""
    except OSError as exc:
        dirs, problem = [], f"cannot list {where}: {exc.strerror}"
    return {
        "sources": "\n".join(config.backup.sources),
        "excludes": "\n".join(config.backup.excludes),
        "schedule": config.backup.schedule,
        "retention": {k: getattr(config.retention, k) for k in RETENTION_NUMBERS},
        "keep_within": config.retention.keep_within or "",
        "browse": where,
        "browse_parent": os.path.dirname(where) if where != "/" else None,
        "browse_dirs": [{"name": n, "path": os.path.join(where, n)} for n in dirs if n.isprintable()],
        "browse_problem": problem,
    }


def save_settings(paths: Paths, form: dict[str, str]) -> str:
    """Write the settings page's form into keep.toml through the typed,
    validated configuration code (all at once, or nothing: one line says
    what was wrong)."""
    sources = [line.strip() for line in form.get("sources", "").splitlines() if line.strip()]
    excludes = [line.strip() for line in form.get("excludes", "").splitlines() if line.strip()]
    if any(not s.startswith("/") for s in sources):
        return "Not saved: every source must be an absolute path, like /srv/photos."
    retention: dict[str, Any] = {}
    for key in RETENTION_NUMBERS:
        text = form.get(key, "").strip() or "0"
        if not text.isdigit():
            return f"Not saved: {key.replace('_', ' ')} must be a whole number."
        retention[key] = int(text)
    retention["keep_within"] = form.get("keep_within", "").strip() or None
    schedule = form.get("schedule", "").strip() or "daily"
    try:
        update_tables(
            paths.config,
            {
                "backup": {"sources": tuple(sources), "excludes": tuple(excludes), "schedule": schedule},
                "retention": retention,
            },
        )
    except KeepError as exc:
        return f"Not saved: {exc}"
    timer = (
        "the backup timer follows within seconds (keep-schedule.path)"
        if Path("/etc/systemd/system/keep-schedule.path").exists()
        else "the backup timer runs on it once `keep schedule install` (as root) has set up the units"
    )
    return f"Saved: {len(sources)} sources, {len(excludes)} excludes, schedule {schedule!r}; {timer}."

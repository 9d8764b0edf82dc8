"""The project's architecture rules (which package may import which), enforced on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "src" / "keep"
PURE_FORBIDDEN = {
    "socket",
    "asyncio",
    "aiohttp",
    "os",
    "pathlib",
    "io",
    "time",
    "datetime",
    "random",
    "secrets",
    "subprocess",
    "threading",
    "sqlite3",
    "shutil",
    "tempfile",
}


def imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((path, node.module))
    return found


def test_protocol_is_pure() -> None:
    bad = [
        (p.name, m)
        for p, m in imports("protocol")
        if m.split(".")[0] in PURE_FORBIDDEN or m.startswith(("keep.client", "keep.server"))
    ]
    assert bad == []


@pytest.mark.parametrize(("package", "other"), [("client", "keep.server"), ("server", "keep.client")])
def test_client_and_server_never_import_each_other(package: str, other: str) -> None:
    assert [(p.name, m) for p, m in imports(package) if m.startswith(other)] == []


def test_no_grab_bag_modules() -> None:
    banned = {"utils.py", "helpers.py", "common.py", "misc.py"}
    offenders = [
        p for pkg in ("protocol", "client", "server") for p in (ROOT / pkg).rglob("*.py") if p.name in banned
    ]
    assert offenders == []


def test_no_assert_in_shipped_code() -> None:
    offenders = []
    for pkg in ("protocol", "client", "server"):
        for path in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text())
            offenders += [f"{path.name}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    assert offenders == []


PLANNERS = ("restore_plan", "prune_plan", "retention", "locations", "blob_index")


@pytest.mark.parametrize("planner", PLANNERS)
def test_planners_are_pure(planner: str) -> None:
    """The planners decide from plain values: they import no I/O, and of the
    client only other pure modules."""
    path = ROOT / "client" / "engine" / f"{planner}.py"
    found = [m for p, m in imports("client") if p == path]
    io = PURE_FORBIDDEN - {"datetime"}  # calendar arithmetic (retention's days and weeks) is not I/O
    impure = [
        m
        for m in found
        if m.split(".")[0] in io
        or (m.startswith("keep.client.") and m.rsplit(".", 1)[-1] not in PLANNERS)
        or m.startswith("keep.server")
    ]
    assert impure == []


# keep.client's rooms (docs/architecture.md) and which others each may use:
# the engine and the device's state never reach up into what drives them.
ROOMS = {
    "engine": {"engine", "device", "remote"},
    "device": {"device", "engine", "remote", "transport"},
    "checkin": {"checkin", "device", "transport"},
    "admin": {"admin", "checkin", "device", "engine", "remote", "text"},
    "cli": {"admin", "checkin", "cli", "device", "engine", "remote", "text"},
}


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_client_rooms_import_only_what_they_may(room: str) -> None:
    used = {
        m.split(".")[2]
        for p, m in imports(f"client/{room}")
        if m.startswith("keep.client.") and len(m.split(".")) > 2
    }
    assert used - ROOMS[room] == set()


def test_client_is_only_rooms() -> None:
    loose = {p.stem for p in (ROOT / "client").glob("*.py")} - {"__init__"}
    rooms = {p.name for p in (ROOT / "client").iterdir() if (p / "__init__.py").is_file()}
    assert (rooms, loose) == (set(ROOMS), {"remote", "text", "transport"})

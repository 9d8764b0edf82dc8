"""One pattern syntax everywhere — git's ignore rules on absolute paths
(client/engine/patterns.py): pure cases first, then backup, restore and find
of a real tree against a real keep-server agreeing on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keep.client.engine.patterns import PatternError, Patterns
from tests.client.conftest import Device

DIR = True


@pytest.mark.parametrize(
    ("patterns", "path", "is_dir", "selected"),
    [
        (["*.tmp"], "/home/a/x.tmp", False, True),  # no "/": a name at any depth
        (["*.tmp"], "/home/a/x.tmp.keep", False, False),
        (["cache"], "/srv/www/cache", DIR, True),
        (["/srv/cache"], "/srv/cache", DIR, True),  # anchored at the root
        (["/srv/cache"], "/home/srv/cache", DIR, False),
        (["srv/cache"], "/home/srv/cache", DIR, False),  # a "/" in the middle anchors too
        (["/srv/cache"], "/srv/cache/deep/file", False, True),  # everything below
        (["/home/*.log"], "/home/a/b.log", False, False),  # "*" stays in one name
        (["/home/**/*.log"], "/home/a/b/c.log", False, True),  # "**" crosses
        (["**/node_modules"], "/x/y/node_modules", DIR, True),
        (["build/"], "/src/build", DIR, True),  # trailing "/": directories only
        (["build/"], "/src/build", False, False),
        (["*.tmp", "!keep.tmp"], "/a/keep.tmp", False, False),  # negation selects again
        (["*.tmp", "!keep.tmp"], "/a/other.tmp", False, True),
        (["f[0-9].txt"], "/d/f7.txt", False, True),
        (["caf\udce9"], "/d/caf\udce9", False, True),  # a non-UTF-8 name, byte for byte
        ([r"\#notes"], "/d/#notes", False, True),  # a name starting with "#"
        (["#comment"], "/d/#comment", False, False),
    ],
)
def test_git_rules_on_absolute_paths(patterns: list[str], path: str, is_dir: bool, selected: bool) -> None:
    assert Patterns(patterns).match(os.fsencode(path), lambda: is_dir) is selected


def test_case_blind_patterns_and_bad_ones() -> None:
    assert Patterns(["THUMBS.DB"], ignore_case=True).match(b"/p/Thumbs.db")
    assert not Patterns(["THUMBS.DB"]).match(b"/p/Thumbs.db")
    assert not Patterns([])
    with pytest.raises(PatternError, match="not a pattern git's rules can read"):
        Patterns(["!"])


def test_backup_restore_and_find_agree_on_the_rules(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in [
        "app/main.py",
        "app/build/out.o",  # build/: a directory
        "app/notes/build",  # … but a file named build stays
        "app/x.log",
        "app/deep/er/y.log",
        "app/deep/er/keep.log",  # !keep.log selects it again
        "cache/blob",  # anchored to the source: /…/src/cache
        "app/cache/blob",  # not anchored there: stays
    ]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    device.init()
    excludes = ["build/", "*.log", "!keep.log", f"{src}/cache"]
    device.run("backup", str(src), *[a for e in excludes for a in ("--exclude", e)])
    held = {os.path.relpath(e["path"], src) for e in device.json("ls", "latest") if e["type"] == "file"}
    assert held == {"app/main.py", "app/notes/build", "app/deep/er/keep.log", "app/cache/blob"}

    device.run("backup", str(src))  # everything, then the same rules choose what to restore
    out = tmp_path / "out"
    device.run("restore", "latest", "--target", str(out), "--exclude", "**/app/**/er", "--exclude", "build/")
    got = {str(p.relative_to(out / str(src).lstrip("/"))) for p in out.rglob("*") if p.is_file()}
    assert "app/deep/er/keep.log" not in got
    assert "app/build/out.o" not in got
    assert "app/notes/build" in got
    assert "app/x.log" in got
    anchored = tmp_path / "anchored"  # "app/**/er" is anchored at the root: nothing there
    device.run("restore", "latest", "--target", str(anchored), "--exclude", "app/**/er")
    assert (anchored / str(src).lstrip("/") / "app/deep/er/keep.log").exists()

    found = device.json("find", "**/deep/**/*.log", "--snapshot", device.json("snapshots")[-1]["id"])
    assert {Path(m["path"]).name for m in found[0]["matches"]} == {"y.log", "keep.log"}
    bad = device.run("backup", str(src), "--exclude", "!", check=False)
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "keep: not a pattern git's rules can read: Invalid git pattern: '!'",
    )

"""keep find, keep diff and keep dump against a real keep-server, on a tree
with non-UTF-8 names, hardlinks, a sparse file, xattrs, a FIFO and 1,000
nested directories; a dumped directory, unpacked by GNU tar (and Python's
zipfile), equals the source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import Device
from tests.client.tree_builder import describe, make_deep_tree, make_rich_tree

DEPTH = 1000


@pytest.fixture(autouse=True)
def deep_recursion(tmp_path: Path) -> Iterator[None]:
    """Python 3.11's os.walk and shutil.rmtree recurse once per level; the
    1,000-level trees (source, unpacked copies) go with the test, as pytest's
    own later clean-up would recurse too deep."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 20 * DEPTH))
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)
    sys.setrecursionlimit(before)


@pytest.fixture
def backed_up(device: Device, tmp_path: Path) -> tuple[Device, Path, list[str]]:
    """A rich tree backed up twice, with changes in between; (device, source,
    [first, second] snapshot ids)."""
    src = tmp_path / "src"
    make_rich_tree(src)
    make_deep_tree(src, DEPTH)
    device.init()
    first = device.json("backup", str(src))["snapshot"]
    (src / "docs" / "readme.txt").write_text("changed content\n")  # M
    os.chmod(src / "docs" / "empty.txt", 0o600)  # U
    (src / "added.txt").write_text("new file\n" * 100)  # +
    shutil.rmtree(src / "empty-dir")  # -
    (src / "link-dangling").unlink()
    (src / "link-dangling").mkdir()  # T (symlink -> dir)
    second = device.json("backup", str(src))["snapshot"]
    return device, src, [first, second]


def test_find_by_name_path_case_and_time(backed_up: tuple[Device, Path, list[str]]) -> None:
    device, src, (first, second) = backed_up
    found = device.json("find", "*.txt")
    assert [f["snapshot"] for f in found] == [first, second]
    in_second = {m["path"] for m in found[1]["matches"]}
    assert str(src / "added.txt") in in_second
    assert str(src / "added.txt") not in {m["path"] for m in found[0]["matches"]}
    assert os.fsdecode(os.fsencode(str(src)) + b"/caf\xe9-latin1.txt") in in_second  # not UTF-8
    bottoms = [p for p in in_second if p.endswith("/bottom.txt")]
    assert len(bottoms) == 1, sorted(in_second)[:5]
    assert bottoms[0].split("/").count("d") == DEPTH
    readme = next(m for m in found[0]["matches"] if m["path"].endswith("docs/readme.txt"))
    assert readme["size"] == len("hello keep\n" * 1000)
    assert readme["mtime"].startswith("2020-09-13T")  # 1_600_000_000 s, RFC 3339
    assert device.json("find", "README.TXT", "-i")[0]["matches"][0]["path"].endswith("readme.txt")
    assert device.run("find", "README.TXT", check=False).returncode == 1  # case matters by default
    # git's rules: "*" stays within one name, "**" crosses directories.
    assert device.run("find", "*/docs/*", "--snapshot", first, check=False).returncode == 1
    by_path = device.json("find", "**/docs/*", "--snapshot", first)
    assert [f["snapshot"] for f in by_path] == [first]
    assert {Path(m["path"]).name for m in by_path[0]["matches"]} == {"readme.txt", "big.bin", "empty.txt"}
    old = device.json("find", "hard-*", "--newest", "2021-01-01")  # mtime 2020-09-13
    assert {Path(m["path"]).name for m in old[0]["matches"]} == {"hard-a", "hard-b"}
    assert device.run("find", "hard-*", "--oldest", "2021-01-01", check=False).returncode == 1
    result = device.run("find", "no-such-name-*", check=False)
    assert result.returncode == 1
    assert "nothing matches" in result.stderr


def test_diff_names_every_kind_of_change(backed_up: tuple[Device, Path, list[str]]) -> None:
    device, src, (first, second) = backed_up
    out = device.json("diff", first, second, "--metadata")
    changes = {(c["kind"], c["path"]) for c in out["changes"]}
    assert ("content", str(src / "docs" / "readme.txt")) in changes
    assert ("metadata", str(src / "docs" / "empty.txt")) in changes
    assert ("added", str(src / "added.txt")) in changes
    assert ("removed", str(src / "empty-dir")) in changes
    assert ("type", str(src / "link-dangling")) in changes
    assert not any("/deep/" in p for _, p in changes)  # an unchanged subtree is not even read
    assert out["counts"] == {"added": 1, "removed": 1, "content": 1, "metadata": 1, "type": 1}
    assert out["bytes_added"] >= len("new file\n" * 100) + len("changed content\n")
    assert out["bytes_removed"] >= len("hello keep\n" * 1000)
    plain = device.json("diff", first, second)  # metadata-only changes need --metadata
    assert "metadata" not in {c["kind"] for c in plain["changes"]}
    below = device.json("diff", first, second, str(src / "docs"), "--metadata")
    assert {Path(c["path"]).name for c in below["changes"]} == {"readme.txt", "empty.txt"}
    assert device.json("diff", second, second)["changes"] == []
    text = device.run("diff", first, second).stdout
    assert f"+    {src / 'added.txt'}" in text


def test_dump_a_file_and_a_directory_as_tar_and_zip(
    backed_up: tuple[Device, Path, list[str]], tmp_path: Path
) -> None:
    device, src, (first, _) = backed_up
    sparse = device.run("dump", first, str(src / "sparse.img"), timeout=120)
    assert len(sparse.stdout.encode("utf-8", "surrogateescape")) == 12 * 1024 * 1024
    target = tmp_path / "big.bin"
    device.run("dump", "latest", str(src / "docs" / "big.bin"), "--target", str(target))
    assert target.read_bytes() == (src / "docs" / "big.bin").read_bytes()
    result = device.run("dump", "latest", str(src / "docs" / "big.bin"), "--target", str(target), check=False)
    assert result.returncode == 2  # never over an existing file
    assert target.read_bytes() == (src / "docs" / "big.bin").read_bytes()

    # The whole second snapshot's tree, as a tar stream, unpacked by GNU tar.
    archive = tmp_path / "src.tar"
    device.run("dump", "latest", str(src), "--target", str(archive), timeout=300)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(
        ["tar", "-xf", str(archive), "-C", str(unpacked), "--xattrs", "--xattrs-include=user.*"], check=True
    )
    assert describe(unpacked / "src") == describe(src)

    # zip: files, directories and symlinks (no FIFOs or devices in a zip)
    archive_zip = tmp_path / "docs.zip"
    device.run("dump", "latest", str(src / "docs"), "--archive", "zip", "--target", str(archive_zip))
    with zipfile.ZipFile(archive_zip) as z:
        assert z.read("docs/big.bin") == (src / "docs" / "big.bin").read_bytes()
        assert z.read("docs/readme.txt") == b"changed content\n"
        assert z.getinfo("docs/readme.txt").external_attr >> 16 & 0o777 == 0o640
    missing = device.run("dump", "latest", str(src / "nope"), check=False)
    assert missing.returncode == 1
    assert "holds nothing at" in missing.stderr


def test_stats_modes(backed_up: tuple[Device, Path, list[str]]) -> None:
    device, src, (first, second) = backed_up
    files = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink()]
    restore = device.json("stats", "latest", "--mode", "restore-size")
    assert restore["files"] == len(files)  # hard-a and hard-b count as two, as a restore writes both
    assert restore["bytes"] == sum(p.stat().st_size for p in files)
    both = device.json("stats", first, second, "--mode", "restore-size")
    assert both["snapshots"] == 2
    assert both["files"] > restore["files"]
    by_contents = device.json("stats", "--mode", "files-by-contents")
    assert by_contents["snapshots"] == 2
    assert by_contents["files"] < both["files"]  # unchanged files count once; hardlinks and empty files share
    raw = device.json("stats", "--mode", "raw-data")
    assert raw["blobs"] > 0
    one, other = (device.json("stats", s, "--mode", "raw-data") for s in (first, second))
    assert raw["blobs"] < one["blobs"] + other["blobs"]  # what both snapshots hold counts once
    assert max(one["bytes"], other["bytes"]) <= raw["bytes"] < one["bytes"] + other["bytes"]
    assert raw["stored_bytes"] > 0
    text = device.run("stats", "latest").stdout
    assert text.startswith("restore-size of 1 snapshot(s):")

"""Daily use says what happened: a missing source does not stop the others
from being backed up, and asking for paths that are not in a snapshot is an
error, not an empty success."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.client.conftest import Device
from tests.client.tree_builder import describe


def test_a_missing_source_is_a_warning_and_the_rest_is_backed_up(device: Device, tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.mkdir()
    (present / "a.txt").write_text("kept\n")
    missing = tmp_path / "gone"
    device.init()
    result = device.run("--json", "backup", str(present), str(missing), check=False)
    assert result.returncode == 3, result.stderr
    assert str(missing) in result.stdout
    target = tmp_path / "out"
    device.run("restore", "latest", "--target", str(target))
    assert describe(target / str(present).lstrip("/")) == describe(present)
    result = device.run("backup", str(missing), check=False)
    assert result.returncode != 0
    assert "no backup source exists" in result.stderr


def test_paths_that_match_nothing_are_an_error(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    device.init()
    device.run("backup", str(src))
    for command in (
        ("ls", "latest", str(src / "missing")),
        ("restore", "latest", "--target", str(tmp_path / "out"), "--include", str(src / "missing")),
    ):
        result = device.run(*command, check=False)
        assert result.returncode == 1, (command, result.stderr)
        assert "nothing in snapshot" in result.stderr


def test_overwrite_policies_leave_or_replace_what_the_target_holds(device: Device, tmp_path: Path) -> None:
    """restic's --overwrite names: always (default), if-changed, if-newer,
    never; the summary counts what was replaced and what was left."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("edited", "older", "same", "deleted"):
        (src / name).write_text(f"{name} as backed up\n")
    os.symlink("same", src / "link")
    os.link(src / "same", src / "same-too")
    past = 1_600_000_000 * 10**9
    for p in src.iterdir():
        os.utime(p, ns=(past, past), follow_symlinks=False)
    device.init()
    device.run("backup", str(src))
    target = tmp_path / "out"
    device.run("restore", "latest", "--target", str(target))
    out = target / str(src).lstrip("/")

    def edit_locally() -> None:
        (out / "edited").write_text("edited by the owner after the backup\n")  # mtime now: newer
        (out / "older").write_text("an older local version\n")
        os.utime(out / "older", ns=(past - 10**12, past - 10**12))  # older than the snapshot's
        (out / "deleted").unlink(missing_ok=True)

    def restore(policy: str) -> dict[str, int]:
        summary = device.json("restore", "latest", "--target", str(target), "--overwrite", policy, "--verify")
        assert summary["mismatches"] == []
        return {k: summary[k] for k in ("files", "files_kept", "files_overwritten", "files_skipped")}

    edit_locally()
    # never: every existing entry stays (edited, older, same, same-too, link); only the missing one is made
    assert restore("never") == {"files": 1, "files_kept": 5, "files_overwritten": 0, "files_skipped": 0}
    assert (out / "edited").read_text().startswith("edited by the owner")
    assert (out / "older").read_text() == "an older local version\n"
    assert (out / "deleted").read_text() == "deleted as backed up\n"

    edit_locally()
    # if-newer: the owner's newer edit stays; the older local file is replaced
    counts = restore("if-newer")
    assert (out / "edited").read_text().startswith("edited by the owner")
    assert (out / "older").read_text() == "older as backed up\n"
    assert counts["files_kept"] == 4  # edited, and same/same-too/link (not older than the snapshot's)
    assert counts["files_overwritten"] == 1

    edit_locally()
    os.utime(out / "same", ns=(past + 10**9, past + 10**9))  # touched, content unchanged
    # if-changed: content decides; an unchanged file is not rewritten, whatever its mtime
    counts = restore("if-changed")
    assert counts["files_skipped"] == 2  # same and same-too (one inode): not rewritten
    assert counts["files_overwritten"] == 3  # edited, older, and the symlink (remade)
    assert describe(out) == describe(src)

    edit_locally()
    counts = restore("always")
    assert counts == {"files": 3, "files_kept": 0, "files_overwritten": 3, "files_skipped": 2}
    assert describe(out) == describe(src)
    result = device.run("restore", "latest", "--target", str(target), "--overwrite", "sometimes", check=False)
    assert result.returncode == 2


def test_latest_is_this_devices_own_and_filters_choose_others(device: Device, tmp_path: Path) -> None:
    """A one-off backup of another folder, or another host's backup, never
    becomes what `restore latest` restores; --host/--path/--tag choose."""
    sources, docs = tmp_path / "srv", tmp_path / "docs"
    for folder in (sources, docs):
        folder.mkdir()
        (folder / "f.txt").write_text(f"{folder.name}\n")
    device.run(*device.init_args(), "--source", str(sources))
    device.run("backup")  # the timer's backup of [backup] sources
    own = device.json("snapshots")[-1]["id"]
    device.run("backup", str(docs), "--tag", "one-off")  # newer, but not the device's own set
    device.run("backup", str(sources), "--host", "laptop")  # newer still, another host

    target = tmp_path / "out"
    summary = device.json("restore", "latest", "--target", str(target))
    assert summary["snapshot"] == own
    assert describe(target / str(sources).lstrip("/")) == describe(sources)  # every byte and entry
    assert not (target / str(docs).lstrip("/")).exists()
    assert {e["path"] for e in device.json("ls", "latest")} >= {str(sources / "f.txt")}
    assert device.json("ls", "latest", "--path", str(docs))[-1]["path"] == str(docs / "f.txt")
    assert device.json("ls", "latest", "--tag", "one-off")[-1]["path"] == str(docs / "f.txt")
    laptop = device.json("snapshots", "--host", "laptop")
    assert [s["host"] for s in laptop] == ["laptop"]
    assert (
        device.json("restore", "latest", "--host", "laptop", "--target", str(tmp_path / "l"))["snapshot"]
        == laptop[0]["id"]
    )
    assert describe(tmp_path / "l" / str(sources).lstrip("/")) == describe(sources)
    assert len(device.json("snapshots")) == 3  # the listing shows every host
    result = device.run("ls", "latest", "--host", "nas", check=False)
    assert result.returncode == 1
    assert "no snapshot matches host nas" in result.stderr

    # forget with a filter touches only the snapshots it selects
    device.run("backup", str(sources), "--host", "laptop")
    pw = ("--password-file", str(device.password_file))
    device.run("forget", "--host", "laptop", "--keep-last", "1", *pw)
    assert [s["host"] for s in device.json("snapshots")].count("laptop") == 1
    assert len(device.json("snapshots")) == 3


def test_latest_on_a_new_machine_falls_back_to_the_newest_and_says_so(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("from the lost device\n")
    device.init()
    device.run("backup", str(src), "--host", "lost-device")
    newest = device.json("snapshots")[-1]["id"]
    result = device.run("--json", "restore", "latest", "--target", str(tmp_path / "out"))
    assert json.loads(result.stdout)["snapshot"] == newest
    assert "no snapshot of this device" in result.stderr
    assert "from host lost-device" in result.stderr
    assert describe(tmp_path / "out" / str(src).lstrip("/")) == describe(src)


def test_backup_selection_options(device: Device, tmp_path: Path) -> None:
    """--iexclude, --exclude-if-present, --exclude-larger-than, --files-from
    (lines and -0) and --verbose, checked in what the snapshot holds."""
    src = tmp_path / "src"
    (src / "project" / "build").mkdir(parents=True)
    (src / "project" / "build" / ".nobackup").write_text("")
    (src / "project" / "build" / "out.o").write_bytes(b"object")
    (src / "project" / "main.c").write_text("int main;\n")
    (src / "Thumbs.DB").write_bytes(b"thumbs")
    (src / "huge.iso").write_bytes(os.urandom(300_000))
    (src / "small.txt").write_text("small\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "listed.txt").write_text("listed\n")
    weird = tmp_path / os.fsdecode(b"caf\xe9 dir")
    weird.mkdir()
    (weird / "f").write_text("latin-1 named directory\n")
    device.init()
    listing = tmp_path / "paths.txt"
    listing.write_text(f"# what to back up\n{src}\n\n  {other}  \n")
    raw = tmp_path / "paths.bin"
    raw.write_bytes(os.fsencode(weird) + b"\0")
    result = device.run(
        "backup",
        "--files-from",
        str(listing),
        "--iexclude",
        "thumbs.db",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "100K",
        "--verbose",
    )
    printed = result.stdout
    assert f"new      {src / 'small.txt'} (6 B)" in printed
    assert "huge.iso" not in printed
    held = {e["path"] for e in device.json("ls", "latest")}
    assert str(src / "project" / "main.c") in held
    assert str(src / "project" / "build" / ".nobackup") in held  # the marker is kept …
    assert str(src / "project" / "build" / "out.o") not in held  # … the rest is not
    assert str(src / "Thumbs.DB") not in held  # case does not matter to --iexclude
    assert str(src / "huge.iso") not in held
    assert str(other / "listed.txt") in held
    device.run("backup", "--files-from", str(raw), "-0")  # NUL-separated, verbatim bytes
    assert os.fsdecode(os.fsencode(weird) + b"/f") in {e["path"] for e in device.json("ls", "latest")}
    bad = device.run("backup", str(src), "--exclude-larger-than", "lots", check=False)
    assert bad.returncode == 2
    assert "is not a size" in bad.stderr


def test_restore_globs_excludes_and_dry_run(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "docs" / "old").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("a\n")
    (src / "docs" / "old" / "b.txt").write_text("b\n")
    (src / "docs" / "c.pdf").write_bytes(b"%PDF")
    (src / "photos").mkdir()
    (src / "photos" / "p.jpg").write_bytes(os.urandom(5000))
    device.init()
    device.run("backup", str(src))
    out = tmp_path / "out"

    preview = device.json("restore", "latest", "--target", str(out), "--dry-run", "--exclude", "photos")
    above = len(src.parts) - 1  # /tmp/…/src: the directories that lead to the source
    assert (preview["files"], preview["dirs"], preview["replaced"]) == (3, above + 2, 0)  # docs, docs/old
    assert not out.exists()  # nothing was written

    device.run("restore", "latest", "--target", str(out), "--include", "*.txt", "--exclude", "old")
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == [str(src / "docs" / "a.txt").lstrip("/")]

    device.run("restore", "latest", "--target", str(out), "--include", f"{src}/photos/*")
    assert (out / str(src).lstrip("/") / "photos" / "p.jpg").read_bytes() == (
        src / "photos" / "p.jpg"
    ).read_bytes()
    again = device.json("restore", "latest", "--target", str(out), "--dry-run", "--overwrite", "never")
    assert again["kept"] >= 2  # a.txt and p.jpg are there already
    result = device.run("restore", "latest", "--target", str(out), "--include", "*.nothing", check=False)
    assert result.returncode == 1
    assert "matches *.nothing" in result.stderr


def test_backup_dry_run_says_what_would_be_read_and_stores_nothing(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a\n" * 100)
    (src / "sub" / "b.bin").write_bytes(os.urandom(10_000))
    (src / "skip.tmp").write_text("excluded\n")
    device.init()
    first = device.json("backup", str(src), "--dry-run", "--exclude", "*.tmp")
    assert (first["files_new"], first["bytes_new"], first["files_unchanged"]) == (2, 200 + 10_000, 0)
    assert first["parent"] is None
    assert device.json("snapshots") == []  # nothing stored
    device.run("backup", str(src), "--exclude", "*.tmp")
    (src / "a.txt").write_text("changed\n")
    (src / "new.txt").write_text("new\n")
    result = device.run("backup", str(src), "--dry-run", "--exclude", "*.tmp", "-v")
    assert f"changed  {src / 'a.txt'} (8 B)" in result.stdout
    assert f"new      {src / 'new.txt'} (4 B)" in result.stdout
    second = device.json("backup", str(src), "--dry-run", "--exclude", "*.tmp")
    assert (second["files_new"], second["files_changed"], second["files_unchanged"]) == (1, 1, 1)
    assert second["bytes_unchanged"] == 10_000
    assert len(device.json("snapshots")) == 1
    # what a real backup then does agrees
    real = device.json("backup", str(src), "--exclude", "*.tmp")
    assert (real["files_new"], real["files_changed"], real["files_unchanged"]) == (1, 1, 1)

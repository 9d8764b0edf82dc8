"""One file of a content-addressed local cache: read without following a
link or reading more than a tree can hold; created exclusively, never through
a link or over a file already there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from keep.client.engine import cache_file


def test_read_gives_the_bytes_or_none_for_what_the_cache_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "ab" / "abcd"
    path.parent.mkdir()
    assert cache_file.read(str(path), 10) is None  # missing
    path.write_bytes(b"0123456789")
    assert cache_file.read(str(path), 10) == b"0123456789"
    assert cache_file.read(str(path), 9) is None  # larger than anything cached under this limit
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    path.unlink()
    path.symlink_to(secret)
    assert cache_file.read(str(path), 10) is None  # a planted link is not followed


def test_write_new_creates_private_files_and_never_replaces_or_follows(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "ab" / "abcd"
    cache_file.write_new(str(path), b"tree")
    assert path.read_bytes() == b"tree"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    cache_file.write_new(str(path), b"other")  # there already: left as it is
    assert path.read_bytes() == b"tree"
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    link = path.parent / "abce"
    link.symlink_to(victim)
    cache_file.write_new(str(link), b"tree")
    assert victim.read_bytes() == b"untouched"
    assert os.readlink(link) == str(victim)

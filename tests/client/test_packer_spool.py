"""A pack's spool file holds exactly the sealed bytes, whatever writev does,
and the id the upload thread computes from it is the SHA-256 of those bytes."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import blake3
import pytest

from keep.client import remote
from keep.client.engine import packer


class _Writer:
    header = b"HEADER"


def _spooled(tmp_path: Path, frames: list[bytes]) -> packer._Open:
    pack = packer._Open(_Writer(), b"salt", tmp_path)  # type: ignore[arg-type]
    for frame in frames:
        pack.write(frame)
    pack.drain()
    return pack


def test_short_writes_lose_and_repeat_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """writev may write less than asked (a signal, a nearly full disk): the
    rest, including the tail of a frame cut in two, follows in order."""
    rng = random.Random(5)
    real_writev = os.writev
    calls = []

    def short_writev(fd: int, parts: list[bytes]) -> int:
        # Write only part of what was asked, cutting inside a frame.
        total = sum(len(p) for p in parts)
        limit = max(1, rng.randint(1, total)) if total > 1 else total
        data = b"".join(parts)[:limit]
        calls.append(limit)
        return real_writev(fd, [data])

    monkeypatch.setattr(packer.os, "writev", short_writev)
    monkeypatch.setattr(packer, "SPOOL_PARTS", 7)
    frames = [rng.randbytes(rng.randint(1, 3000)) for _ in range(400)]
    pack = _spooled(tmp_path, frames)
    expected = b"HEADER" + b"".join(frames)
    assert pack.size == len(expected)
    assert os.pread(pack.spool.fileno(), pack.size + 1, 0) == expected
    assert len(calls) > 400 // 7  # short writes did happen and were resumed
    pack.close()


def test_large_frames_are_written_when_a_megabyte_is_gathered(tmp_path: Path) -> None:
    frames = [os.urandom(300 * 1024) for _ in range(10)]
    pack = packer._Open(_Writer(), b"salt", tmp_path)  # type: ignore[arg-type]
    for frame in frames[:3]:
        pack.write(frame)
    assert os.fstat(pack.spool.fileno()).st_size == 0  # 900 KiB gathered, not yet written
    pack.write(frames[3])
    assert os.fstat(pack.spool.fileno()).st_size == 6 + 4 * 300 * 1024
    for frame in frames[4:]:
        pack.write(frame)
    pack.drain()
    assert os.pread(pack.spool.fileno(), pack.size, 0) == b"HEADER" + b"".join(frames)
    pack.close()


@pytest.mark.parametrize("size", [0, 1, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024 + 17])
def test_spool_digest_is_the_blake3_of_the_first_size_bytes(size: int) -> None:
    data = os.urandom(size + 100)  # bytes past `size` are not part of the pack
    with tempfile.TemporaryFile() as spool:
        spool.write(data)
        spool.seek(5)  # the file's position does not matter
        assert remote._spool_digest(spool, size) == blake3.blake3(data[:size]).hexdigest()


def test_spool_digest_refuses_a_spool_shorter_than_its_pack() -> None:
    with tempfile.TemporaryFile() as spool:
        spool.write(b"x" * 1000)
        spool.flush()
        with pytest.raises(OSError, match="ends at 1000 of its 1001 bytes"):
            remote._spool_digest(spool, 1001)

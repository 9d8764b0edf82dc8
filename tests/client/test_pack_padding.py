"""Packs end where padding them wastes little: a data pack past its target
takes more blobs until PADMÉ would pad it by at most PAD_SLACK, or until it
has grown by PACK_STRETCH (the backup's end closes the packs still open
wherever they are); every pack is still padded to a PADMÉ length.
Checked on the packs a real backup stored on a real keep-server: each pack's
TOC tells where the rule would have closed it, blob by blob."""

from __future__ import annotations

import os
from pathlib import Path

from keep.client.engine.packer import PACK_STRETCH, PAD_SLACK
from keep.protocol import msgcodec
from keep.protocol.blob import BlobType
from keep.protocol.envelope import TAG_SIZE
from keep.protocol.limits import OPEN_PACKS, PACK_MIN_PADDED, PACK_TARGET, MiB
from keep.protocol.pack import FOOTER_SEALED_SIZE, TOC_LENGTH, TOC_VERSION, TocEntry
from keep.protocol.padding import padded_pack_size, padme
from tests.client.conftest import Device, device_repository


def _unpadded(entries: tuple[TocEntry, ...]) -> int:
    """The pack's length before padding had it been closed after `entries`."""
    toc = msgcodec.pack([TOC_VERSION, [e.to_list() for e in entries]])
    frames_end = entries[-1].offset + entries[-1].length
    return frames_end + TAG_SIZE + TOC_LENGTH.size + len(toc) + FOOTER_SEALED_SIZE


def _rule_closes(entries: tuple[TocEntry, ...]) -> bool:
    """Whether the packer's rule closes a data pack holding `entries`."""
    frames_end = entries[-1].offset + entries[-1].length
    unpadded = _unpadded(entries)
    padding = padded_pack_size(unpadded, PACK_MIN_PADDED) - unpadded
    return frames_end >= PACK_TARGET and (frames_end >= PACK_TARGET + PACK_STRETCH or padding <= PAD_SLACK)


def test_full_packs_are_closed_where_padding_wastes_little(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for n in range(64):  # 192 MiB that does not compress: ~190 chunks over 4 open packs
        (src / f"f{n:02}.bin").write_bytes(os.urandom(3 * MiB))
    device.init()
    device.run("backup", str(src))
    remote, repo = device_repository(device, device.home / "c2")
    with remote:
        repo.load_index()
        data_packs = []
        for pack_id, pack in repo.packs.items():
            size = repo.pack_sizes[pack_id]
            entries = tuple(sorted(pack.entries, key=lambda e: e.offset))
            assert size == padded_pack_size(_unpadded(entries), PACK_MIN_PADDED)
            assert padme(size) == size or size == PACK_MIN_PADDED
            if entries[0].blob_type is BlobType.DATA:
                data_packs.append(entries)
    assert sum(e[-1].offset + e[-1].length for e in data_packs) > 190 * MiB
    for entries in data_packs:
        # No pack took a blob after the rule had closed it...
        closed_before = [k for k in range(1, len(entries)) if _rule_closes(entries[:k])]
        assert not closed_before, (entries[-1].offset, closed_before)
    # ...and only the packs still open at the backup's end were closed by it.
    closed_at_end = [entries for entries in data_packs if not _rule_closes(entries)]
    assert len(closed_at_end) <= OPEN_PACKS, [e[-1].offset for e in closed_at_end]
    assert len(data_packs) - len(closed_at_end) >= 5

"""Packs end where padding them wastes little: a data pack past its target
takes more blobs until PADMÉ would pad it by at most PAD_SLACK, or until it
has grown by PACK_STRETCH (the backup's end closes the packs still open
wherever they are); every pack is still padded to a PADMÉ length.
Checked on the packs a real backup stored on a real keep-server."""

from __future__ import annotations

import os
from pathlib import Path

from keep.client.engine.packer import PACK_STRETCH, PAD_SLACK
from keep.protocol import msgcodec
from keep.protocol.blob import BlobType
from keep.protocol.envelope import TAG_SIZE
from keep.protocol.limits import OPEN_PACKS, PACK_MIN_PADDED, PACK_TARGET, MiB
from keep.protocol.pack import FOOTER_SEALED_SIZE, TOC_LENGTH, TOC_VERSION
from keep.protocol.padding import padded_pack_size, padme
from tests.client.conftest import Device, device_repository


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
        full = []
        for pack_id, pack in repo.packs.items():
            size = repo.pack_sizes[pack_id]
            frames_end = max(e.offset + e.length for e in pack.entries)
            toc = msgcodec.pack([TOC_VERSION, [e.to_list() for e in pack.entries]])
            unpadded = frames_end + TAG_SIZE + TOC_LENGTH.size + len(toc) + FOOTER_SEALED_SIZE
            assert size == padded_pack_size(unpadded, PACK_MIN_PADDED)
            assert padme(size) == size or size == PACK_MIN_PADDED
            if pack.entries[0].blob_type is BlobType.DATA and frames_end >= PACK_TARGET:
                full.append((frames_end, size - unpadded))
    # The backup's end closes its open packs wherever they are (at most OPEN_PACKS).
    closed_early = [(end, padding) for end, padding in full if padding <= PAD_SLACK]
    stretched = [(end, padding) for end, padding in full if end >= PACK_TARGET + PACK_STRETCH]
    assert len(full) - len(closed_early) - len(stretched) <= OPEN_PACKS, full
    assert len(closed_early) >= 4, full
    # Closed at the first blob past the target, they padded ~256 KiB each.
    assert sum(padding for _, padding in full) / len(full) < 128 * 1024, full

"""A real, small file system for disk-full tests: a tmpfs mounted for the
length of a test (root only; CI runs as root, elsewhere the test skips)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.client.conftest import IN_CI


@contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    mount.mkdir()
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the disk-full test needs root to mount a tmpfs (CI runs as root)")
        pytest.skip("needs root to mount a tmpfs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)

"""What every helper process promises (`keep.client.engine.helper_process`):
the restore's file writers and the backup's source reader alike."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from keep.client.engine import file_writer, helper_process, source_reader
from keep.protocol.compression import DATA_LEVEL


class Started(NamedTuple):
    proc: subprocess.Popen[bytes]
    answers_an_empty_batch: Callable[[], bool]
    end: Callable[[], int]  # close its stdin; its exit status


def file_writer_helper(tmp_path: Path) -> Started:
    proc = file_writer._start_helper(os.fsencode(tmp_path))
    stdin, stdout = helper_process.pipes(proc)

    def answers() -> bool:
        helper_process.write_frame(stdin, [])
        return bool(helper_process.read_frame(stdout) == ((), ()))

    def end() -> int:
        stdin.close()
        return proc.wait(timeout=30)

    return Started(proc, answers, end)


def source_reader_helper(tmp_path: Path) -> Started:
    reader = source_reader.SourceReader(DATA_LEVEL)

    def end() -> int:
        reader.close()
        return reader._proc.wait(timeout=30)

    return Started(reader._proc, lambda: reader.read([]).result() == (), end)


@pytest.mark.parametrize(
    ("start", "module"),
    [
        (file_writer_helper, b"keep.client.engine.file_writer"),
        (source_reader_helper, b"keep.client.engine.source_reader"),
    ],
    ids=["file_writer", "source_reader"],
)
def test_a_helper_gets_no_secret_and_no_terminal_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: Callable[[Path], Started], module: bytes
) -> None:
    """Its command line names no file and no secret, its environment holds
    none of keep's settings (a password may be among them), and it is in a
    process group of its own."""
    monkeypatch.setenv("KEEP_PASSWORD", "correct horse battery staple")
    monkeypatch.setenv("KEEP_PASSWORD_COMMAND", "pass show keep")
    helper = start(tmp_path)
    try:
        # Popen returns once the exec began, before the kernel has set the new
        # command line and environment: one empty batch answered means it ran.
        assert helper.answers_an_empty_batch()
        environ = Path(f"/proc/{helper.proc.pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{helper.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"KEEP_" not in environ
        assert b"correct horse" not in environ
        assert cmdline[1:3] == [b"-m", module]
        assert os.fsencode(tmp_path) not in b" ".join(cmdline)
        assert os.getpgid(helper.proc.pid) == helper.proc.pid != os.getpgid(0)
    finally:
        assert helper.end() == 0

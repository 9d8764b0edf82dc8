"""`keep` holds glibc's malloc to one arena (`malloc_arena`): threads started
afterwards allocate from the main heap instead of arenas of their own.
Counted in a fresh interpreter from /proc/self/maps, where each further arena
is an anonymous region aligned to and spanning glibc's 64 MiB heap size."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from keep.client.engine import malloc_arena

HEAP_MAX = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit

COUNT_ARENAS = f"""
import threading

def work():
    bytes(200_000)  # a malloc on the thread

threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
regions = []
with open("/proc/self/maps") as maps:
    for line in maps:
        fields = line.split()
        if len(fields) == 5:  # anonymous
            start, end = (int(x, 16) for x in fields[0].split("-"))
            regions.append((start, end))
arenas = 0
for start, end in regions:
    if start % {HEAP_MAX} == 0:
        reach = end
        for s, e in regions:
            if s == reach:
                reach = e
        arenas += reach - start == {HEAP_MAX}
print(arenas)
"""


def arenas_after(setup: str, **env: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", setup + COUNT_ARENAS],
        env={k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")} | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(not malloc_arena.is_glibc(), reason="glibc's malloc only")


def test_threads_get_arenas_of_their_own_by_default() -> None:
    """The count sees glibc's arenas (so the tests below can fail)."""
    assert arenas_after("") >= 1


def test_one_arena_after_use_one_arena() -> None:
    setup = "from keep.client.engine import malloc_arena\nassert malloc_arena.use_one_arena()\n"
    assert arenas_after(setup) == 0


def test_the_keep_program_uses_one_arena() -> None:
    setup = (
        "import sys\n"
        "from keep.client.cli import program\n"
        "sys.argv = ['keep', '--version']\n"
        "try:\n"
        "    program.main()\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    assert arenas_after(setup) == 0


def test_an_operators_own_setting_is_left_alone() -> None:
    setup = "from keep.client.engine import malloc_arena\nassert not malloc_arena.use_one_arena()\n"
    assert arenas_after(setup, MALLOC_ARENA_MAX="4") >= 1
    assert arenas_after(setup, GLIBC_TUNABLES="glibc.malloc.arena_max=4") >= 1

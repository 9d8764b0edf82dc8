"""`python -m demo` (what `make demo` runs): start a keep-server on 127.0.0.1
with directory storage and SQLite in a temp dir, create an account, back up a
generated tree of mixed files, change a file, back up again, list snapshots,
restore into an empty dir (keep reads every file back: --verify), compare
every byte and every entry's type, mode, owner, size and mtime with the
source, print the figures, stop."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support.servers import keep_server
from support.verify import verify_restore

KEEP = str(Path(sys.executable).with_name("keep"))


def make_sample(root: Path) -> None:
    rng = random.Random(42)  # noqa: S311 — reproducible sample data, not a secret
    words = [
        "backup",
        "restore",
        "chunk",
        "pack",
        "index",
        "snapshot",
        "tree",
        "key",
        "server",
        "device",
        "owner",
    ]
    for d in range(6):
        sub = root / f"project-{d}" / "src"
        sub.mkdir(parents=True)
        for f in range(25):
            lines = (" ".join(rng.choice(words) for _ in range(10)) for _ in range(rng.randint(20, 400)))
            (sub / f"module_{f}.py").write_text("\n".join(lines) + "\n")
    media = root / "photos"
    media.mkdir()
    for i in range(3):
        (media / f"IMG_{i:04}.jpg").write_bytes(rng.randbytes(1_500_000))
    (root / "notes.txt").write_text("Keep demo notes\n" * 5000)
    os.symlink("notes.txt", root / "notes-link")


def keep(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run([KEEP, "--json", *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode not in (0,):
        sys.exit(f"keep {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="keep-demo-") as tmp:
        base = Path(tmp)
        source = base / "source"
        make_sample(source)
        size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())
        (base / "password").write_text("demo password, never use it\n")
        env = {**os.environ, "KEEP_HOME": str(base / "device"), "KEEP_CONFIG": str(base / "keep.toml")}
        with keep_server(base / "server") as (url, proc):
            print(f"keep-server {url} (pid {proc.pid}), data in {base / 'server'}")
            keep(
                env,
                "init",
                "--server",
                url,
                "--account",
                "demo",
                "--password-file",
                str(base / "password"),
                "--recovery-kit",
                str(base / "recovery-kit.txt"),
            )
            print("account 'demo' created; recovery kit written")
            t0 = time.monotonic()
            first = keep(env, "backup", str(source))
            t1 = time.monotonic()
            assert isinstance(first, dict)
            print(
                f"backup 1: {size / 1e6:.1f} MB in {t1 - t0:.2f} s, {first['files_new']} files, "
                f"{int(first['bytes_added']) / 1e6:.1f} MB uploaded"
            )
            with open(source / "notes.txt", "a") as f:
                f.write("one more line\n")
            t0 = time.monotonic()
            second = keep(env, "backup", str(source))
            t1 = time.monotonic()
            assert isinstance(second, dict)
            print(
                f"backup 2: {second['files_changed']} changed, {second['files_unchanged']} unchanged, "
                f"{int(second['bytes_read']) / 1e3:.1f} kB read, in {t1 - t0:.2f} s"
            )
            snaps = keep(env, "snapshots")
            print(f"snapshots: {', '.join(str(s['id'])[:12] for s in snaps)}")
            target = base / "restore"
            t0 = time.monotonic()
            restored = keep(env, "restore", "latest", "--target", str(target), "--verify")
            t1 = time.monotonic()
            assert isinstance(restored, dict)
            written = int(str(restored["bytes_written"])) / 1e6
            print(
                f"restore: {restored['files']} files, {written:.1f} MB in {t1 - t0:.2f} s, "
                f"{restored['verified']} read back and verified by keep"
            )
        problems = verify_restore(source, target / str(source).lstrip("/"))
        for problem in problems:
            print(f"verify: MISMATCH: {problem}")
        if problems:
            sys.exit(1)
        print("verify: the restored tree equals the source, every byte and every piece of metadata")


if __name__ == "__main__":
    main()

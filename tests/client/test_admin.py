"""The admin page's handlers and guards, in process (the browser test is
test_admin_browser.py): login and its slow-down, CSRF token, Origin and Host
checks, cookie flags and headers, and the stylesheet's contrast."""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
import pytest
from aiohttp.test_utils import TestClient, TestServer

from keep.client.admin import app as admin_app
from keep.client.admin.app import PATHS, create_app
from keep.client.admin.data import Paths, status
from keep.client.admin.security import set_password
from keep.client.text import human_bytes
from support.servers import free_port
from tests.client.conftest import KEEP, Device

PASSWORD = "admin password 1"
CSS = Path(__file__).resolve().parents[2] / "src" / "keep" / "client" / "admin" / "static" / "admin.css"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    home = tmp_path / "home"
    set_password(home, PASSWORD)
    config = tmp_path / "keep.toml"
    config.write_text("# owner's comment\n[checkin]\nddns = true\nupdates = true\n")
    port = free_port()
    app = create_app(home, config, {f"127.0.0.1:{port}"})
    c = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await c.start_server()
    yield c
    await c.close()


def read(path: Path) -> str:
    return path.read_text()


def origin(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{client.port}"}


async def log_in(client: TestClient[Any, Any]) -> str:
    r = await client.post(
        "/login", data={"password": PASSWORD}, headers=origin(client), allow_redirects=False
    )
    assert r.status == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    page = await (await client.get("/connections")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    return token.group(1)


async def test_pages_need_a_login_and_failures_slow_down(client: TestClient[Any, Any]) -> None:
    r = await client.get("/", allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/login")
    for _ in range(3):
        r = await client.post("/login", data={"password": "wrong"}, headers=origin(client))
        assert r.status == 401
    start = time.monotonic()
    r = await client.post("/login", data={"password": "wrong"}, headers=origin(client))
    assert r.status == 401
    assert time.monotonic() - start >= 1.0  # the 4th failure waited
    await log_in(client)
    r = await client.get("/")
    assert r.status == 200
    assert "Content-Security-Policy" in r.headers
    assert r.headers["X-Frame-Options"] == "DENY"


async def test_changes_need_same_origin_and_the_csrf_token(client: TestClient[Any, Any]) -> None:
    csrf = await log_in(client)
    config = client.app[PATHS].config
    form = {"key": "ddns", "state": "off", "csrf": csrf}
    r = await client.post("/connections", data=form)  # no Origin, no Referer
    assert r.status == 403
    r = await client.post("/connections", data=form, headers={"Origin": "http://evil.example"})
    assert r.status == 403
    r = await client.post("/connections", data={**form, "csrf": "guess"}, headers=origin(client))
    assert r.status == 403
    assert "ddns = true" in read(config)
    r = await client.post("/connections", data=form, headers=origin(client), allow_redirects=False)
    assert r.status == 303
    assert "ddns = false" in read(config)
    assert "# owner's comment" in read(config)


async def test_wrong_host_header_is_refused(client: TestClient[Any, Any]) -> None:
    r = await client.get("/login", headers={"Host": "rebind.evil.example"})
    assert r.status == 421


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_every_text_colour_has_enough_contrast() -> None:
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", CSS.read_text()))
    pairs = [("fg", "bg"), ("muted", "bg"), ("link", "bg"), ("accent-fg", "accent-bg"), ("accent-bg", "bg")]
    pairs += [("ok", "bg"), ("warn", "bg"), ("bad", "bg")]
    for fg, bg in pairs:
        assert contrast(colours[fg], colours[bg]) >= 4.5, (fg, bg)


@asynccontextmanager
async def admin_of(device: Device) -> AsyncIterator[TestClient[Any, Any]]:
    """The admin page of `device`, logged in."""
    set_password(device.home, PASSWORD)
    port = free_port()
    app = create_app(device.home, device.home / "none.toml", {f"127.0.0.1:{port}"})
    client = TestClient(TestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    try:
        await log_in(client)
        yield client
    finally:
        await client.close()


async def test_revoke_is_disabled_with_a_reason_when_nothing_can_be_revoked(
    device: Device, tmp_path: Path
) -> None:
    device.init()
    async with admin_of(device) as client:
        page = await (await client.get("/devices")).text()
        assert "Nothing to revoke: this is the account's only device" in page
        assert re.search(r'<button type="submit" disabled aria-describedby="nothing-to-revoke">', page)
        device.another(tmp_path / "laptop", "--device-name", "laptop")
        page = await (await client.get("/devices")).text()
        assert "Nothing to revoke" not in page
        assert re.search(r'<option value="[0-9a-f-]+">laptop \(', page)
        assert '<button type="submit">Revoke device</button>' in page


async def test_status_page_leads_with_the_verdict(device: Device) -> None:
    device.init()  # no sources set
    async with admin_of(device) as client:
        page = await (await client.get("/")).text()
        assert page.index('id="verdict"') < page.index('id="last"')  # first thing on the page
        assert "Backups: failing" in page
        assert "verdict-failing" in page
        assert "no sources are set" in page
        assert "add [backup] sources to keep.toml" in page


def test_a_running_backup_shows_on_the_status_page(device: Device, tmp_path: Path) -> None:
    """As the timer or "Back up now" runs it (no terminal): the status page
    shows files and bytes done and refreshes itself; when the backup ends —
    or is killed — the running section goes."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(3)
    words = [bytes(rng.choices(b"abcdefghijklmnop", k=rng.randint(2, 9))) for _ in range(4000)]
    device.init()
    paths = Paths(device.home, device.home / "none.toml")
    env = device.environ()
    for kill in (False, True):
        for i in range(4):  # new text each round: zstd level 19 takes seconds over it
            (src / f"{i}.txt").write_bytes(b" ".join(rng.choice(words) for _ in range(2_000_000)))
        proc = subprocess.Popen(
            [KEEP, "backup", str(src), "--compression", "19"], env=env, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while (running := status(paths)["running"]) is None or not running["bytes_done"]:
            assert proc.poll() is None, "the backup ended before a running record was seen"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert running["pid"] == proc.pid
        assert running["bytes_done"] > 0
        assert str(src) in running["current"]
        page = render("status.html", s=status(paths))
        assert '<meta http-equiv="refresh" content="5">' in page  # a plain refresh: no script
        assert "Backup running" in page
        assert str(src) in page
        if kill:
            proc.kill()
            proc.wait()
            assert status(paths)["running"] is None  # a dead process is not "running"
        else:
            assert proc.wait(timeout=300) == 0
            assert status(paths)["running"] is None
            assert not (device.home / "backup-running.json").exists()


def render(template: str, **context: Any) -> str:
    """A page as the admin app renders it (same templates, autoescaped)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(admin_app.__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    return env.get_template(template).render(active="status", csrf="", flash="", **context)


async def test_snapshots_timeline_and_diff_use_the_engines_diff(device: Device, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("first\n")
    (src / "big.bin").write_bytes(random.randbytes(6_000_000))
    device.init()
    device.run("backup", str(src))
    (src / "a.txt").write_text("second\n")
    (src / "new.txt").write_text("new\n")
    device.run("backup", str(src))
    old, new = (s["id"] for s in device.json("snapshots"))
    async with admin_of(device) as client:
        page = await (await client.get("/snapshots")).text()
        assert len(re.findall(r'<section aria-labelledby="day-\d+" class="day">', page)) == 1  # both today
        bars = [float(w) for w in re.findall(r'<rect class="bar bar-ok" x="0" y="0" width="([\d.]+)"', page)]
        assert len(bars) == 2
        assert bars[1] == 100.0 > bars[0]  # the first backup added the most (newest is listed first)
        assert page.index(new[:12]) < page.index(old[:12])
        reply = await client.get(f"/snapshots/diff?first={old}&second={new}&path=")
        page = await reply.text()
    shown = set(
        re.findall(r'<tr><td><span aria-hidden="true">(.)</span> [a-z ]+</td><td><code>([^<]+)</code>', page)
    )
    letters = {"added": "+", "removed": "-", "content": "M", "metadata": "U", "type": "T"}
    listed = device.json("diff", old, new, "--metadata")
    engine = {(letters[c["kind"]], c["path"]) for c in listed["changes"]}
    assert shown == engine
    assert ("+", str(src / "new.txt")) in shown
    assert ("M", str(src / "a.txt")) in shown
    assert f"{human_bytes(listed['bytes_added'])} of data added" in page


async def test_restore_to_a_directory_from_the_page(device: Device, tmp_path: Path) -> None:
    """Files and folders ticked on the browse page are restored into a
    directory on the device by the restore engine, with the CLI's overwrite
    choices, and read back; the page says what happened in one line."""
    from tests.client.test_faults import restored
    from tests.client.tree_builder import describe, make_rich_tree

    src = tmp_path / "src"
    make_rich_tree(src)
    device.init()
    device.run("backup", str(src))
    snapshot = device.json("snapshots")[0]["id"]
    target = tmp_path / "restored"
    async with admin_of(device) as client:
        page = await (await client.get(f"/snapshots/{snapshot}?path={src}")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        # A name that is not UTF-8 is shown escaped and reached by its bytes.
        assert "caf\\xe9-latin1.txt" in page
        latin = re.search(r'href="(/snapshots/[0-9a-f]+/file\?path=b64%3A[^"]+)"', page)
        assert latin is not None
        download = await client.get(latin.group(1).replace("&amp;", "&"))
        assert await download.read() == b"latin-1 name"
        form = [("csrf", csrf.group(1)), ("path", str(src)), ("target", str(target)), ("overwrite", "never")]
        picks = [("include", f"{src}/docs"), ("include", f"{src}/hard-a"), ("include", f"{src}/hard-b")]
        reply = await client.post(
            f"/snapshots/{snapshot}/restore", data=form + picks, headers=origin(client), allow_redirects=False
        )
        assert reply.status == 303
        shown = await (await client.get(reply.headers["Location"])).text()
        assert "every file read back and verified" in shown
        got = describe(restored(target, src))
        whole = describe(src)
        assert got == {k: v for k, v in whole.items() if k.split(b"/")[0] in (b"docs", b"hard-a", b"hard-b")}
        # never: a file already there is left as it is
        (restored(target, src) / "docs" / "readme.txt").write_text("mine\n")
        reply = await client.post(
            f"/snapshots/{snapshot}/restore", data=form + picks, headers=origin(client), allow_redirects=False
        )
        shown = await (await client.get(reply.headers["Location"])).text()
        assert "existing left as they were" in shown
        assert (restored(target, src) / "docs" / "readme.txt").read_text() == "mine\n"
        # a relative target is refused before anything is written
        bad = [*form[:2], ("target", "relative/dir"), ("overwrite", "always")]
        reply = await client.post(
            f"/snapshots/{snapshot}/restore", data=bad, headers=origin(client), allow_redirects=False
        )
        shown = await (await client.get(reply.headers["Location"])).text()
        assert "Restore not started: the target must be an absolute directory path" in shown
        # without the page's token, nothing happens
        reply = await client.post(
            f"/snapshots/{snapshot}/restore", data=[("csrf", "forged"), *form[1:]], headers=origin(client)
        )
        assert reply.status == 403


async def test_setup_without_a_shell(device: Device, tmp_path: Path) -> None:
    """The settings page writes what to back up, the schedule and the
    retention policy into keep.toml through the typed configuration (the
    owner's comments kept); the next `keep backup` — as the timer runs it,
    with no paths — backs up exactly that. Wrong input changes nothing."""
    photos, cache = tmp_path / "photos", tmp_path / "photos" / "thumbs"
    cache.mkdir(parents=True)
    (photos / "a.jpg").write_bytes(b"jpeg")
    (cache / "t.jpg").write_bytes(b"thumb")
    (photos / "x.tmp").write_bytes(b"tmp")
    device.init()
    config = device.home / "none.toml"
    config.write_text("# the owner's note\n" + config.read_text())
    async with admin_of(device) as client:
        page = await (await client.get(f"/settings?browse={tmp_path}")).text()
        assert f"<code>{photos}</code>" in page  # the device's folders, to pick from
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        good = {
            "csrf": csrf.group(1),
            "sources": f"{photos}\n",
            "excludes": "*.tmp\nthumbs/\n",
            "schedule": "*-*-* 03:30:00",
            "keep_daily": "7",
            "keep_weekly": "4",
            "keep_within": "30d",
        }

        async def save(form: dict[str, str]) -> str:
            reply = await client.post("/settings", data=form, headers=origin(client), allow_redirects=False)
            return await (await client.get(reply.headers["Location"])).text()

        assert "Saved: 1 sources, 2 excludes" in await save(good)
        text = config.read_text()
        assert "# the owner's note" in text
        before = config.read_text()
        for bad, says in [
            ({**good, "sources": "photos"}, "every source must be an absolute path"),
            ({**good, "keep_daily": "seven"}, "keep daily must be a whole number"),
            ({**good, "schedule": "daily\nExecStartPre=/bin/sh"}, "schedule must be one OnCalendar"),
            ({**good, "excludes": "!"}, "Not saved"),
        ]:
            shown = await save(bad)
            assert says in shown, shown[:2000]
            assert config.read_text() == before  # nothing half-written
    backup = device.json("backup")  # no paths: what the page set
    assert backup["files_new"] == 1
    held = {e["path"] for e in device.json("ls", "latest")}
    assert str(photos / "a.jpg") in held
    assert str(photos / "x.tmp") not in held
    assert not any("thumbs" in p for p in held)
    forget = device.json("forget", "--dry-run")  # [retention] from the page
    assert forget["forget"] == []

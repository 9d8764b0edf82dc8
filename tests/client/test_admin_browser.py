"""The admin page in a real browser: Debian's chromium driven by Playwright,
against a real `keep admin serve`, a real keep-server (session fixture) and a
real keep-checkin behind a connection-counting proxy. A screenshot of every
page goes to the artifacts dir ($KEEP_TEST_ARTIFACTS, default .artifacts/)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.byte_proxy import ByteProxy, byte_proxy
from support.servers import checkin_server, free_port, stop, wait_for_port
from tests.client.conftest import KEEP, Device
from tests.client.test_faults import random_tree

CHROMIUM = "/usr/bin/chromium"
ADMIN_PASSWORD = "admin password 1"
ARTIFACTS = (
    Path(os.environ.get("KEEP_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / ".artifacts")) / "admin"
)


@pytest.fixture
def admin_page(device: Device, tmp_path: Path) -> Iterator[tuple[str, Device, ByteProxy, Path]]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium missing (scripts/test-services.sh installs it)")
    device.init()
    src = random_tree(tmp_path / "photos", 2, 300_000)
    device.json("backup", str(src))
    with checkin_server(tmp_path / "checkin", "--min-update-interval", "0", "--allow-private-addresses") as (
        checkin_url,
        _,
    ):
        with byte_proxy(int(checkin_url.rsplit(":", 1)[1])) as proxy:
            config = tmp_path / "keep.toml"
            config.write_text(
                "# the owner's notes stay\n[checkin]\n"
                f'url = "http://127.0.0.1:{proxy.port}"\nname = "cottage"\nddns = true\nupdates = false\n'
            )
            device.env["KEEP_CONFIG"] = str(config)
            pw = tmp_path / "admin-pw"
            pw.write_text(ADMIN_PASSWORD + "\n")
            device.run("admin", "set-password", "--password-file", str(pw))
            port = free_port()
            env = {**os.environ, "KEEP_HOME": str(device.home), "KEEP_CONFIG": str(config)}
            proc = subprocess.Popen(
                [KEEP, "admin", "serve", "--listen", f"127.0.0.1:{port}"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for_port(port, proc)
                yield f"http://127.0.0.1:{port}", device, proxy, src
            finally:
                stop(proc)


def switch_look(switch: Any) -> dict[str, Any]:
    """How a switch is drawn: its knob's offset, its track's colour and the
    button's own background."""
    return dict(
        switch.evaluate(
            """el => ({
                knob_left: parseFloat(getComputedStyle(el, "::after").left),
                track: getComputedStyle(el, "::before").backgroundColor,
                button: getComputedStyle(el).backgroundColor,
            })"""
        )
    )


@pytest.fixture
def evil_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Another origin on 127.0.0.1 serving a page with a form aimed at the admin page."""
    root = tmp_path / "evil"
    root.mkdir()
    port = free_port()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_admin_page_in_chromium(
    admin_page: tuple[str, Device, ByteProxy, Path], evil_site: tuple[str, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, device, proxy, src = admin_page
    config = Path(device.env["KEEP_CONFIG"])
    shots = ARTIFACTS
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        external: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))

        page.goto(url + "/")
        expect(page).to_have_url(url + "/login")
        page.screenshot(path=shots / "login.png", full_page=True)
        page.get_by_label("Admin password").fill("not it")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong password.")
        page.get_by_label("Admin password").fill(ADMIN_PASSWORD)
        page.keyboard.press("Enter")  # keyboard operable
        expect(page.get_by_role("heading", name="Backup status")).to_be_visible()
        expect(page.get_by_text("Succeeded", exact=True)).to_be_visible()
        # The history as a picture with its words, and as a table opened from the keyboard.
        picture = page.get_by_role("img", name=re.compile(r"^Backups, last 30 days 1 backup in the last 30"))
        expect(picture).to_be_visible()
        assert picture.bounding_box()["width"] > 500  # type: ignore[index]
        summary = page.get_by_text("Backups, last 30 days as a table")
        summary.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("cell", name="succeeded")).to_be_visible()
        page.screenshot(path=shots / "status.png", full_page=True)

        page.get_by_role("link", name="Connections").click()
        ddns = page.get_by_role("switch", name="DNS pointer updates")
        expect(ddns).to_have_attribute("aria-checked", "true")
        expect(page.get_by_text("Currently ON — press to switch off").first).to_be_visible()
        on_look = switch_look(ddns)
        page.screenshot(path=shots / "connections.png", full_page=True)
        ddns.click()
        expect(page.get_by_role("status")).to_contain_text("DNS pointer updates switched off")
        expect(page.get_by_role("switch", name="DNS pointer updates")).to_have_attribute(
            "aria-checked", "false"
        )
        off_look = switch_look(page.get_by_role("switch", name="DNS pointer updates"))
        # Drawn as a switch: the knob moves left and the track empties; the
        # button around it looks the same in both states.
        assert off_look["knob_left"] < on_look["knob_left"]
        assert on_look["track"] == "rgb(11, 79, 168)"
        assert off_look["track"] == "rgb(255, 255, 255)"
        assert on_look["button"] == off_look["button"]
        page.screenshot(path=shots / "connections-off.png", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=shots / "connections-390.png", full_page=True)
        page.set_viewport_size({"width": 1280, "height": 720})
        text = config.read_text()
        assert "ddns = false" in text
        assert "# the owner's notes stay" in text
        proxy.reset()
        out = device.run("--json", "checkin", "run", "--now")
        assert '"ddns": "off"' in out.stdout
        assert proxy.connections == 0  # no DNS pointer request at all
        page.get_by_role("switch", name="DNS pointer updates").click()
        expect(page.get_by_role("switch", name="DNS pointer updates")).to_have_attribute(
            "aria-checked", "true"
        )
        assert "ddns = true" in config.read_text()
        page.get_by_role("button", name="Check now: DNS pointer updates").click()
        expect(page.get_by_role("status")).to_contain_text("updated cottage")
        sent = page.locator("pre.request").first
        expect(sent).to_contain_text("PUT /v1/names/cottage/address HTTP/1.1")
        expect(sent).to_contain_text("Authorization: Bearer (this device's token, not shown)")
        page.screenshot(path=shots / "connections-sent.png", full_page=True)
        page.goto(url + "/?days=90")
        expect(
            page.get_by_role("img", name=re.compile(r"^Check-in attempts per day, last 90 days"))
        ).to_be_visible()

        page.get_by_role("link", name="Snapshots").click()
        page.screenshot(path=shots / "snapshots.png", full_page=True)
        page.get_by_label("Newer").focus()  # the comparison, from the keyboard
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="What changed")).to_be_visible()
        page.screenshot(path=shots / "diff.png", full_page=True)
        page.go_back()
        page.locator("tbody a").first.click()
        for part in [p for p in str(src).split("/") if p]:
            page.get_by_role("link", name=f"{part}/").click()
        page.screenshot(path=shots / "browse.png", full_page=True)
        with page.expect_download() as download:
            page.get_by_role("link", name="Download f0.bin").click()
        saved = tmp_path / "downloaded.bin"
        download.value.save_as(saved)
        assert saved.read_bytes() == (src / "f0.bin").read_bytes()

        browse_url = page.url
        page.get_by_role("link", name="Devices").click()
        expect(page.get_by_text("(this device)")).to_be_visible()
        page.screenshot(path=shots / "devices.png", full_page=True)

        # Every page on a phone: nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        page.get_by_role("link", name="Settings").click()
        expect(page.get_by_role("heading", name="What to back up, when, and for how long")).to_be_visible()
        page.screenshot(path=shots / "settings.png", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        for name, path in [
            ("status", "/"),
            ("snapshots", "/snapshots"),
            ("devices", "/devices"),
            ("settings", "/settings"),
        ]:
            page.goto(url + path)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
            page.screenshot(path=shots / f"{name}-390.png", full_page=True)
        page.goto(browse_url)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "browse"
        page.screenshot(path=shots / "browse-390.png", full_page=True)
        page.set_viewport_size({"width": 1280, "height": 720})
        assert external == []  # the page itself loads nothing from anywhere else

        # A cross-site form post, from a page on another origin, is refused.
        evil_url, evil_root = evil_site
        (evil_root / "index.html").write_text(
            f'<form method="post" action="{url}/connections"><input type="hidden" name="key" value="ddns">'
            '<input type="hidden" name="state" value="off"><input type="hidden" name="csrf" value="guess">'
            '<button type="submit">Win a prize</button></form>'
        )
        page.goto(evil_url + "/index.html")
        page.get_by_role("button", name="Win a prize").click()
        page.wait_for_load_state()
        assert "ddns = true" in config.read_text()
        assert "Refused" in page.content() or page.url.endswith("/login")

        # A wrong Host header (DNS rebinding) is refused.
        reply = context.request.get(url + "/", headers={"Host": "rebind.evil.example"})
        assert reply.status == 421
        browser.close()


KEYBOARD_WALK = """() => {
  const focusable = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]),'
    + ' select:not([disabled]), textarea:not([disabled]), summary, [tabindex="0"]';
  return Array.from(document.querySelectorAll(focusable))
    .filter(e => e.offsetParent !== null || e.tagName === 'SUMMARY')
    .map(e => e.outerHTML.slice(0, 80));
}"""
FOCUSED = """() => {
  const e = document.activeElement;
  const style = getComputedStyle(e);
  return [e.outerHTML.slice(0, 80), style.outlineStyle, style.outlineWidth];
}"""


def test_every_control_on_every_page_is_reached_by_the_keyboard(
    admin_page: tuple[str, Device, ByteProxy, Path],
) -> None:
    """Tab alone reaches every link, button, field, switch and table view on
    every page, in order, and each shows where the focus is (an outline)."""
    from playwright.sync_api import sync_playwright

    url, device, _, src = admin_page
    snapshot = device.json("snapshots")[0]["id"]
    pages = ["/", "/connections", "/snapshots", f"/snapshots/{snapshot}?path={src}", "/devices", "/settings"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/login")
        page.get_by_label("Admin password").fill(ADMIN_PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(url + "/")
        for path in pages:
            page.goto(url + path)
            controls = page.evaluate(KEYBOARD_WALK)
            assert controls, path
            reached = []
            for _ in range(len(controls)):
                page.keyboard.press("Tab")
                html, outline, width = page.evaluate(FOCUSED)
                reached.append(html)
                assert (outline, width) != ("none", "0px"), (path, html)
                assert outline != "none", (path, html)
            assert reached == controls, path
        browser.close()

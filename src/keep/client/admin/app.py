"""`keep admin serve`: the device's admin web page (aiohttp + Jinja2).

Server-rendered pages and plain HTML forms: no JavaScript, no third-party
assets, nothing loaded from anywhere but this page itself (the CSP says so).
Guards are in `security.py`; what the pages show comes from `data.py`, run
on worker threads so the event loop never waits on the network or Argon2.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import web

from keep.client.admin import charts, data
from keep.client.admin.security import COOKIE, SESSION_IDLE, Guard, Session, check_password
from keep.client.device.connection import Endpoint
from keep.protocol.errors import KeepError

HERE = Path(__file__).resolve().parent
PATHS = web.AppKey("paths", data.Paths)
GUARD = web.AppKey("guard", Guard)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/login", "/static/")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _refuse(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=f"Refused: {message}\n", headers=HEADERS)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    g = request.app[GUARD]
    if not g.host_allowed(request.headers.get("Host")):
        return _refuse(421, "this page is not served under that host name (DNS rebinding protection)")
    session = g.session(request.cookies.get(COOKIE))
    if request.method == "POST":
        if not g.same_origin(request.headers.get("Origin"), request.headers.get("Referer"), request.host):
            return _refuse(403, "the form was not sent from this page (cross-site request)")
        if session is not None and request.path != "/login":
            form = await request.post()
            if form.get("csrf") != session.csrf:
                return _refuse(403, "the form's security token is missing or stale; reload the page")
    if session is None and not request.path.startswith(PUBLIC):
        raise web.HTTPSeeOther("/login")
    response = await handler(request)
    response.headers.update(HEADERS)
    return response


def _flash(request: web.Request) -> str:
    return request.query.get("done", "")


def _back(where: str, message: str, **query: str) -> web.HTTPSeeOther:
    more = "".join(f"&{k}={quote(v)}" for k, v in query.items())
    return web.HTTPSeeOther(f"{where}?done={quote(message)}{more}")


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def _ctx(request: web.Request, active: str, **more: Any) -> dict[str, Any]:
    session: Session | None = request.app[GUARD].sessions.get(request.cookies.get(COOKIE, ""))
    return {"active": active, "csrf": session.csrf if session else "", "flash": _flash(request), **more}


routes = web.RouteTableDef()


@routes.get("/login")
@aiohttp_jinja2.template("login.html")
async def login_page(request: web.Request) -> dict[str, Any]:
    return _ctx(request, "login", error="")


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    g = request.app[GUARD]
    address = request.remote or ""
    await g.slow_down(address)
    form = await request.post()
    if await _run(check_password, request.app[PATHS].home, str(form.get("password", ""))):
        g.succeeded(address)
        g.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE,
            g.new_session(),
            httponly=True,
            samesite="Strict",
            secure=g.secure,
            path="/",
            max_age=SESSION_IDLE,
        )
        raise response
    g.failed(address)
    return aiohttp_jinja2.render_template(
        "login.html", request, _ctx(request, "login", error="Wrong password."), status=401
    )


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    request.app[GUARD].end(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


@routes.get("/")
@aiohttp_jinja2.template("status.html")
async def status_page(request: web.Request) -> dict[str, Any]:
    days = int(request.query.get("days", "0")) if request.query.get("days", "").isdigit() else 0
    days = days if days in charts.PERIODS else charts.PERIODS[0]
    return _ctx(request, "status", s=await _run(data.status, request.app[PATHS], days))


@routes.post("/backup-now")
async def backup_now(request: web.Request) -> web.StreamResponse:
    raise _back("/", await _run(data.start_backup, request.app[PATHS]))


@routes.get("/settings")
@aiohttp_jinja2.template("settings.html")
async def settings_page(request: web.Request) -> dict[str, Any]:
    where = request.query.get("browse", "/")
    try:
        shown = await _run(data.settings, request.app[PATHS], where)
    except KeepError as exc:
        return _ctx(request, "settings", s=None, error=str(exc))
    return _ctx(request, "settings", s=shown, error="")


@routes.post("/settings")
async def save_settings(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    values = {k: str(v) for k, v in form.items() if k != "csrf"}
    raise _back("/settings", await _run(data.save_settings, request.app[PATHS], values))


@routes.get("/connections")
@aiohttp_jinja2.template("connections.html")
async def connections_page(request: web.Request) -> dict[str, Any]:
    return _ctx(request, "connections", rows=await _run(data.connections, request.app[PATHS]))


@routes.post("/connections")
async def set_connection(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    key, state = str(form.get("key", "")), str(form.get("state", ""))
    if key not in ("ddns", "updates") or state not in ("on", "off"):
        raise web.HTTPBadRequest(text="unknown switch")
    raise _back("/connections", await _run(data.set_connection, request.app[PATHS], key, state == "on"))


@routes.post("/connections/check")
async def check_now(request: web.Request) -> web.StreamResponse:
    key = str((await request.post()).get("key", ""))
    if key not in ("ddns", "updates"):
        raise web.HTTPBadRequest(text="unknown switch")
    raise _back("/connections", await _run(data.check_now, request.app[PATHS], key))


@routes.get("/snapshots")
@aiohttp_jinja2.template("snapshots.html")
async def snapshots_page(request: web.Request) -> dict[str, Any]:
    try:
        days, error = await _run(data.snapshots, request.app[PATHS]), ""
    except KeepError as exc:
        days, error = [], str(exc)
    return _ctx(request, "snapshots", days=days, error=error)


@routes.get("/snapshots/diff")
@aiohttp_jinja2.template("diff.html")
async def diff_page(request: web.Request) -> dict[str, Any]:
    first, second = request.query.get("first", ""), request.query.get("second", "")
    path = request.query.get("path", "") or "/"
    if not first or not second:
        raise _back("/snapshots", "Choose two snapshots to compare.")
    try:
        result = await _run(data.snapshot_diff, request.app[PATHS], first, second, path)
    except KeepError as exc:
        raise _back("/snapshots", f"Cannot compare: {exc}") from None
    return _ctx(request, "snapshots", d=result)


@routes.get("/snapshots/{id}")
@aiohttp_jinja2.template("browse.html")
async def browse_page(request: web.Request) -> dict[str, Any]:
    path = request.query.get("path", "/")
    try:
        listing = await _run(data.browse, request.app[PATHS], request.match_info["id"], path)
    except KeepError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    return _ctx(request, "snapshots", b=listing)


@routes.post("/snapshots/{id}/restore")
async def restore(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    snapshot_id = request.match_info["id"]
    where = str(form.get("path", "/"))
    chosen = [str(v) for v in form.getall("include", [])] or [where]
    message = await _run(
        data.restore_to,
        request.app[PATHS],
        snapshot_id,
        chosen,
        str(form.get("target", "")).strip(),
        str(form.get("overwrite", "")),
    )
    raise _back(f"/snapshots/{snapshot_id}", message, path=where)


@routes.get("/snapshots/{id}/file")
async def download(request: web.Request) -> web.StreamResponse:
    paths = request.app[PATHS]
    try:
        name, size, blobs = await _run(
            data.file_blobs, paths, request.match_info["id"], request.query["path"]
        )
    except (KeepError, KeyError) as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        }
    )
    response.content_length = size
    # The repository and its connection live on one thread of their own: if
    # the handler is cancelled while a read runs there, closing the
    # connection queues behind that read instead of closing its socket under
    # it (whose descriptor number the kernel could hand to the next socket).
    own = ThreadPoolExecutor(1, thread_name_prefix="keep-admin-download")
    loop = asyncio.get_running_loop()
    opened = data.repository(paths)
    try:
        repo = await loop.run_in_executor(own, opened.__enter__)
        try:
            await loop.run_in_executor(own, repo.load_index)
            await response.prepare(request)
            for blob in blobs:  # decrypted and verified here, on the device, one blob at a time
                await response.write(await loop.run_in_executor(own, repo.read_blob, blob))
            await response.write_eof()
        finally:
            closing = loop.run_in_executor(own, opened.__exit__, None, None, None)
            await asyncio.shield(closing)
    finally:
        own.shutdown(wait=False)  # queued work (the close) still runs
    return response


@routes.get("/devices")
@aiohttp_jinja2.template("devices.html")
async def devices_page(request: web.Request) -> dict[str, Any]:
    try:
        rows, error = await _run(data.devices, request.app[PATHS]), ""
    except KeepError as exc:
        rows, error = [], str(exc)
    return _ctx(request, "devices", rows=rows, error=error)


@routes.post("/devices/revoke")
async def revoke(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    try:
        message = await _run(
            data.revoke, request.app[PATHS], str(form.get("device", "")), str(form.get("password", ""))
        )
    except KeepError as exc:
        message = f"Not revoked: {exc}"
    raise _back("/devices", message)


def create_app(
    home: Path, config: Path, allowed_hosts: set[str], secure: bool = False, endpoint: Endpoint | None = None
) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[PATHS] = data.Paths(home, config, endpoint or Endpoint())
    app[GUARD] = Guard(frozenset(h.lower() for h in allowed_hosts), secure)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    app.add_routes(routes)
    app.router.add_static("/static", HERE / "static", follow_symlinks=False)
    return app

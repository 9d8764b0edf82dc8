"""`create_app(settings) -> web.Application` for keep-server.

One middleware is the single translation point from errors to HTTP: `ApiError`
becomes its code's status and a JSON body; router 404/405 become JSON too;
anything unexpected is logged by type and location only and answered 500
`internal`. The same middleware records Prometheus metrics by route template.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from keep.protocol.api import ERROR_STATUS, Route
from keep.protocol.errors import ErrorCode
from keep.server import http_accounts, http_objects
from keep.server.api_error import ApiError
from keep.server.backends import metadata_store, object_store
from keep.server.metrics import Metrics
from keep.server.openapi import openapi_document
from keep.server.services import SERVICES, SETTINGS, Services
from keep.server.settings import Settings
from keep.server.shared.quiet import hide_server_header
from keep.server.storage.objects import StorageFullError

log = logging.getLogger("keep.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECRET_SIZE = 32


def _error(code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"code": str(code), "message": message}, status=ERROR_STATUS[code], headers=headers
    )


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[SERVICES].metrics
    route = _route_name(request)
    start = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _error(exc.code, exc.message, exc.headers)
    except web.HTTPNotFound:
        response = _error(ErrorCode.NOT_FOUND, "no such endpoint")
    except web.HTTPMethodNotAllowed:
        response = web.json_response(
            {"code": str(ErrorCode.BAD_REQUEST), "message": "method not allowed"}, status=405
        )
    except web.HTTPRequestEntityTooLarge:
        response = _error(ErrorCode.TOO_LARGE, "request body is too large")
    except StorageFullError:
        log.error("storage is full on %s %s", request.method, route)
        response = _error(ErrorCode.STORAGE_FULL, "the server is out of storage space")
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 — the one place unexpected errors become a 500
        # Type and location only: exception messages may quote request data.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
        log.error("internal error %s at %s on %s %s", type(exc).__name__, where, request.method, route)
        response = _error(ErrorCode.INTERNAL, "internal server error")
    metrics.requests.labels(request.method, route, str(response.status)).inc()
    metrics.latency.labels(request.method, route).observe(time.perf_counter() - start)
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], int] | None = None,
    random: Callable[[int], bytes] | None = None,
) -> web.Application:
    """The keep-server application. `clock` (epoch seconds) and `random` are
    injectable so tests can pin time and randomness."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.json_max)
    hide_server_header(app)
    app[SETTINGS] = settings

    async def storage(app: web.Application) -> AsyncIterator[None]:
        meta = metadata_store(settings.resolved_metadata_url)
        objects = object_store(settings.resolved_objects_url)
        await meta.open()
        await objects.open()
        rand = random or os.urandom
        app[SERVICES] = Services(
            settings=settings,
            metadata=meta,
            objects=objects,
            metrics=Metrics(),
            secret=await meta.server_secret(rand(SECRET_SIZE)),
            clock=clock or (lambda: int(time.time())),
            random=rand,
        )
        yield
        await objects.close()
        await meta.close()

    app.cleanup_ctx.append(storage)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(Route.OPENAPI, openapi)
    app.add_routes(http_accounts.routes)
    app.add_routes(http_objects.routes)
    return app

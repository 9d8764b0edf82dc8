"""What keep-server and keep-checkin say about themselves and their clients.

- No `Server` header: aiohttp sends `Python/3.x aiohttp/3.y` by default, which
  tells a scanner exactly which known bugs to try. Responses of the apps drop
  it; aiohttp's own answers to requests it cannot parse (which never reach an
  app) get an empty value instead, through the module default they read.
- No client address in any log line unless the operator asked for them
  (`--log-client-addresses`): aiohttp logs "Error handling request from
  <address>" with a traceback for malformed requests and cut connections;
  those become one line without the address.
"""

from __future__ import annotations

import logging

from aiohttp import web, web_response

AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.internal", "aiohttp.access")


def hide_server_header(app: web.Application) -> None:
    web_response.SERVER_SOFTWARE = ""  # the default of responses no app sees (malformed requests)
    app.on_response_prepare.append(_drop_server_header)


async def _drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.popall("Server", None)


class _WithoutAddresses(logging.Filter):
    """Rewrites aiohttp's log records to one line that names no peer."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = "refused a malformed or broken HTTP request (%s)"
        record.args = (type(exc).__name__ if exc else "no details",)
        record.exc_info = None
        record.exc_text = None
        return True


def quiet_logs(log_client_addresses: bool) -> None:
    if log_client_addresses:
        return
    for name in AIOHTTP_LOGGERS:
        logging.getLogger(name).addFilter(_WithoutAddresses())

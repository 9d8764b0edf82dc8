"""`ApiError`: the one exception handlers raise to answer with an error.

The middleware in `app.py` turns it into the status of its `ErrorCode`
(`keep.protocol.api.ERROR_STATUS`) and a JSON body `{"code", "message"}`.
Messages are fixed texts chosen by the server: never a token, salt, key or
object content.
"""

from __future__ import annotations

from keep.protocol.errors import ErrorCode, KeepError


class ApiError(KeepError):
    """Raised by a handler or service to answer with a stable error code."""

    def __init__(self, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}

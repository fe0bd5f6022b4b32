"""The distribution spec's error answers: a status, a code from the spec's table, a message."""

from __future__ import annotations

import json

from aiohttp import web

__all__ = ["ApiError", "error_response", "json_response"]


class ApiError(Exception):
    """A request answered with the spec's error body (`{"errors": [{code, message}]}`)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(error: ApiError) -> web.Response:
    """The response for `error` (JSON body, its headers)."""
    body = {"errors": [{"code": error.code, "message": error.message, "detail": None}]}
    return json_response(body, status=error.status, headers=error.headers)


def json_response(
    body: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer (`application/json`)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(body=data, status=status, headers=headers, content_type="application/json")

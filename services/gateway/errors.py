"""The one place that knows HTTP statuses: error codes become `{"detail": ...}` replies."""

from __future__ import annotations

from aiohttp import web

from common.codec import encode
from common.errors import ErrorCode

STATUS_BY_CODE: dict[ErrorCode, int] = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "unsupported": 415,
    "rate_limited": 429,
    "over_quota": 507,  # WebDAV's Insufficient Storage: retrying the same upload won't help
    "internal": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "timeout": 504,
}

REASON_BY_STATUS = {405: "Method Not Allowed", 404: "Not Found"}


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=encode({"detail": detail}),
        content_type="application/json",
        headers=headers,
    )


def status_for(code: ErrorCode) -> int:
    return STATUS_BY_CODE.get(code, 500)

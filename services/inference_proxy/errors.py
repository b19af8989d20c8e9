"""How model-backend failures become ragway errors with a detail a person can act on."""

from __future__ import annotations

from typing import Any

import msgspec

from common.errors import RagwayError
from inference_proxy.backend_http import (
    BackendConnectError,
    BackendDisconnected,
    BackendProtocolError,
)
from inference_proxy.settings import Backend


class StreamFailure(Exception):
    """The backend broke off or sent something unusable in the middle of a stream."""


def backend_message(body: bytes) -> str:
    """The human part of a backend error body (OpenAI, Ollama or FastAPI shapes)."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:300].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", "")
        if isinstance(error, str | int | float):
            return str(error)[:500]
    return ""


def error_for_status(backend: Backend, status: int, body: bytes) -> RagwayError:
    if 300 <= status < 400:  # not followed: a POST must not silently change its target
        return RagwayError(
            "bad_gateway",
            f"{backend.label} answered with a redirect (HTTP {status}): "
            "configure the URL it redirects to",
        )
    message = backend_message(body)
    if status in (401, 403):
        return RagwayError(
            "bad_gateway",
            f"{backend.label} rejected ragway's credentials (HTTP {status})",
        )
    if status == 404:
        return RagwayError("not_found", message or "Model not found")
    if status == 429:
        return RagwayError("rate_limited", message or "The model backend is rate limiting")
    if 400 <= status < 500:
        return RagwayError(
            "invalid", message or f"The model backend refused the request ({status})"
        )
    detail = f"Model backend error (HTTP {status})"
    return RagwayError("bad_gateway", f"{detail}: {message}" if message else detail)


def error_for_exception(backend: Backend, exc: BaseException, timeout: float) -> RagwayError:
    """Map a transport failure while waiting for the backend's answer."""
    if isinstance(exc, TimeoutError):
        return RagwayError("timeout", f"{backend.label} did not answer within {timeout:g}s")
    if isinstance(exc, BackendConnectError):
        return RagwayError("bad_gateway", f"{backend.label} is unreachable")
    if isinstance(exc, BackendDisconnected):
        return RagwayError("bad_gateway", f"{backend.label} closed the connection")
    if isinstance(exc, BackendProtocolError):  # our own words: malformed HTTP, an encoding
        return RagwayError("bad_gateway", f"{backend.label}: {exc}")
    return RagwayError("bad_gateway", f"{backend.label} failed")

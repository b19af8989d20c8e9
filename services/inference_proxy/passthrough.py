"""The Ollama pass-through: forward one HTTP request to an Ollama backend and relay its
reply, bytes unchanged, to the caller's NATS inbox as they arrive (see contracts.ollama).

Status codes and bodies of the backend come through as they are (a 404 for an unknown
model is Ollama's own); only transport failures become ragway errors: no backend at that
index (not_found), unreachable or silent backend (bad_gateway/timeout).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from nats.aio.client import Client

from common.errors import RagwayError
from contracts.ollama import (
    METERED_PATHS,
    OllamaProxyAccepted,
    OllamaProxyEnd,
    OllamaProxyRequest,
    path_level,
)
from inference_proxy.backend_http import BackendHTTPError, BackendPool, BackendResponse
from inference_proxy.cancels import CancelRegistry
from inference_proxy.catalog import ModelCatalog
from inference_proxy.errors import error_for_exception
from inference_proxy.relay import Outbox, Relay, Relays, backend_reading, release_for_reuse
from inference_proxy.routing import Lease, Router
from inference_proxy.settings import Backend, Settings

MAX_PIECE = 256 * 1024  # well under any NATS max_payload
TAIL_BYTES = 64 * 1024  # kept of a model's reply, for the tokens it reports at its end


class _Named(msgspec.Struct):
    model: str | None = None
    name: str | None = None


_decode_named = msgspec.json.Decoder(_Named).decode


class OllamaPassthrough:
    def __init__(
        self,
        nc: Client,
        pool: BackendPool,
        backends: list[Backend],
        catalog: ModelCatalog,
        settings: Settings,
        cancels: CancelRegistry,
        router: Router,
    ) -> None:
        self._nc = nc
        self._router = router
        self._pool = pool  # the connect timeout is the pool's
        self._backends = backends
        self._catalog = catalog
        self._settings = settings
        self._relays = Relays(cancels)

    async def open(self, request: OllamaProxyRequest) -> OllamaProxyAccepted:
        """Send the request; once the backend answered, relay its body in the background."""
        level = path_level(request.path)
        if level is None:
            raise RagwayError("not_found", f"Unknown Ollama API path: {request.path}")
        if level == "admin" and request.principal.role != "admin":
            raise RagwayError("forbidden", "Only administrators may do this")
        backend = await self._backend(request)
        lease = self._router.take(backend)  # in flight until the relay ends
        try:
            # a caller gone while the backend is still thinking stops it too
            response, cancel = await self._relays.open(
                request.stream_id, lambda: self._send(backend, request)
            )
        except BaseException:
            lease.release()
            raise
        relay = _PassthroughRelay(backend, request, response, self._settings, lease)
        self._relays.start(relay, Outbox(self._nc, request.stream_inbox), cancel)
        return OllamaProxyAccepted(
            status=response.status, content_type=response.headers.get("content-type", "")
        )

    async def _backend(self, request: OllamaProxyRequest) -> Backend:
        if not self._backends:
            raise RagwayError("not_found", "No Ollama backend is configured")
        if request.url_idx is not None:
            if not 0 <= request.url_idx < len(self._backends):
                raise RagwayError(
                    "not_found", f"Ollama backend index {request.url_idx} is not configured"
                )
            return self._backends[request.url_idx]
        # Like Open WebUI: without an index, a request naming a model goes where it lives
        model = _model_of(request.body)
        if model:
            route = await self._catalog.route(model)
            if route is not None and route.backends[0].kind == "ollama":
                return self._router.pick(route.backends)
        return self._backends[0]

    async def _send(self, backend: Backend, request: OllamaProxyRequest) -> BackendResponse:
        url = f"{backend.base_url}/{request.path}"
        if request.query:
            url += f"?{request.query}"
        headers = {"Content-Type": request.content_type} if request.content_type else {}
        limit = self._settings.backend_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                return await self._pool.request(request.method, url, request.body, headers)
        except (BackendHTTPError, TimeoutError) as exc:
            error = error_for_exception(backend, exc, limit)
            detail = error.detail.replace("Model backend", "Ollama backend")
            raise RagwayError(error.code, detail) from None

    async def aclose(self, grace_seconds: float = 10.0) -> None:
        """Let running relays finish (bounded), then cancel the rest."""
        await self._relays.aclose(grace_seconds)


class _PassthroughRelay(Relay):
    """The backend's body, bytes unchanged, in pieces one NATS message can carry."""

    event = "ollama_passthrough"

    def __init__(
        self,
        backend: Backend,
        request: OllamaProxyRequest,
        response: BackendResponse,
        settings: Settings,
        lease: Lease,
    ) -> None:
        self._backend = backend
        self._request = request
        self._response = response
        self._idle = settings.backend_idle_timeout_seconds
        self._lease = lease
        self._size = 0
        # the body's last bytes, where a model's reply reports its tokens
        self._metered = request.path in METERED_PATHS
        self._tail = b""

    async def pump(self, out: Outbox) -> None:
        response = self._response
        async with backend_reading(self._idle, "Ollama backend", self._backend.label) as idle:
            while data := await response.readany():
                idle.touch()
                self._size += len(data)
                if self._metered:
                    self._tail = (self._tail + data)[-TAIL_BYTES:]
                for start in range(0, len(data), MAX_PIECE):
                    await out.send(data[start : start + MAX_PIECE])

    def end_message(self, error: str | None) -> OllamaProxyEnd:
        usage = usage_of(self._tail) if self._metered else None
        return OllamaProxyEnd(size=self._size, error=error, usage=usage, backend=self._backend.idx)

    def cancelled(self, requested: bool) -> str:
        return "Cancelled by the caller" if requested else "The proxy is shutting down"

    def stop(self) -> None:
        self._response.close()  # stop the backend (a pull or a generation) too
        self._lease.release()

    async def release(self) -> None:
        self._lease.release()
        await release_for_reuse(self._response)  # read to its end: the connection is kept

    def log_fields(self) -> dict[str, Any]:
        return {
            "path": self._request.path,
            "backend": self._backend.host,
            "status": self._response.status,
            "bytes": self._size,
        }


class _OpenAIUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Counts(msgspec.Struct):
    """Where an Ollama reply (or its OpenAI-compatible routes) reports tokens."""

    prompt_eval_count: int | None = None
    eval_count: int | None = None
    usage: _OpenAIUsage | None = None


_decode_counts = msgspec.json.Decoder(_Counts).decode
_COUNT = {
    name: re.compile(rb'"' + name.encode() + rb'"\s*:\s*(\d+)')
    for name in ("prompt_eval_count", "eval_count")
}


def usage_of(tail: bytes) -> dict[str, int] | None:
    """The tokens a reply's last bytes report: its last JSON line (NDJSON, SSE `data:`,
    or one JSON body); for a line longer than the tail (an embedding's vectors), the
    last counts found in it."""
    for line in reversed(tail.rsplit(b"\n", 8)):
        line = line.strip()
        if line.startswith(b"data:"):
            line = line[5:].strip()
        if not line.startswith(b"{"):
            continue
        try:
            counts = _decode_counts(line)
        except msgspec.DecodeError:
            break  # cut by the tail's start: look for the counts in the bytes
        if counts.prompt_eval_count is not None or counts.eval_count is not None:
            return {
                "prompt_tokens": counts.prompt_eval_count or 0,
                "completion_tokens": counts.eval_count or 0,
            }
        if counts.usage is not None:
            return {
                "prompt_tokens": counts.usage.prompt_tokens,
                "completion_tokens": counts.usage.completion_tokens,
            }
    found = {name: pattern.findall(tail[-4096:]) for name, pattern in _COUNT.items()}
    if not any(found.values()):
        return None
    return {
        "prompt_tokens": int(found["prompt_eval_count"][-1]) if found["prompt_eval_count"] else 0,
        "completion_tokens": int(found["eval_count"][-1]) if found["eval_count"] else 0,
    }


def _model_of(body: bytes) -> str:
    if not body:
        return ""
    try:
        named = _decode_named(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return ""
    return named.model or named.name or ""

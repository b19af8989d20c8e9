"""The Ollama pass-through: forward one HTTP request to an Ollama backend and relay its
reply, bytes unchanged, to the caller's NATS inbox as they arrive (see contracts.ollama).

Status codes and bodies of the backend come through as they are (a 404 for an unknown
model is Ollama's own); only transport failures become ragway errors: no backend at that
index (not_found), unreachable or silent backend (bad_gateway/timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from nats.aio.client import Client

from common.errors import RagwayError
from contracts.ollama import OllamaProxyAccepted, OllamaProxyEnd, OllamaProxyRequest, path_level
from inference_proxy.backend_http import BackendHTTPError, BackendPool, BackendResponse
from inference_proxy.cancels import CancelRegistry
from inference_proxy.catalog import ModelCatalog
from inference_proxy.errors import error_for_exception
from inference_proxy.relay import Outbox, Relay, Relays, backend_reading, release_for_reuse
from inference_proxy.settings import Backend, Settings

MAX_PIECE = 256 * 1024  # well under any NATS max_payload


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
    ) -> None:
        self._nc = nc
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
        # a caller gone while the backend is still thinking stops it too
        response, cancel = await self._relays.open(
            request.stream_id, lambda: self._send(backend, request)
        )
        relay = _PassthroughRelay(backend, request, response, self._settings)
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
                return route.pick()
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
    ) -> None:
        self._backend = backend
        self._request = request
        self._response = response
        self._idle = settings.backend_idle_timeout_seconds
        self._size = 0

    async def pump(self, out: Outbox) -> None:
        response = self._response
        async with backend_reading(self._idle, "Ollama backend", self._backend.label) as idle:
            while data := await response.readany():
                idle.touch()
                self._size += len(data)
                for start in range(0, len(data), MAX_PIECE):
                    await out.send(data[start : start + MAX_PIECE])

    def end_message(self, error: str | None) -> OllamaProxyEnd:
        return OllamaProxyEnd(size=self._size, error=error)

    def cancelled(self, requested: bool) -> str:
        return "Cancelled by the caller" if requested else "The proxy is shutting down"

    def stop(self) -> None:
        self._response.close()  # stop the backend (a pull or a generation) too

    async def release(self) -> None:
        await release_for_reuse(self._response)  # read to its end: the connection is kept

    def log_fields(self) -> dict[str, Any]:
        return {
            "path": self._request.path,
            "backend": self._backend.host,
            "status": self._response.status,
            "bytes": self._size,
        }


def _model_of(body: bytes) -> str:
    if not body:
        return ""
    try:
        named = _decode_named(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return ""
    return named.model or named.name or ""

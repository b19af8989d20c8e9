"""The Ollama pass-through: forward one HTTP request to an Ollama backend and relay its
reply, bytes unchanged, to the caller's NATS inbox as they arrive (see contracts.ollama).

Status codes and bodies of the backend come through as they are (a 404 for an unknown
model is Ollama's own); only transport failures become ragway errors: no backend at that
index (not_found), unreachable or silent backend (bad_gateway/timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client

from common.codec import encode
from common.errors import RagwayError
from common.idle import idle_timeout
from common.tasks import BackgroundTasks
from contracts.chat import STREAM_END, STREAM_HEADER
from contracts.ollama import OllamaProxyAccepted, OllamaProxyEnd, OllamaProxyRequest, path_level
from inference_proxy.backend_http import BackendHTTPError, BackendPool, BackendResponse
from inference_proxy.cancels import CancelRegistry, CancelWatch
from inference_proxy.catalog import ModelCatalog
from inference_proxy.errors import error_for_exception
from inference_proxy.settings import Backend, Settings

log = structlog.get_logger()

MAX_PIECE = 256 * 1024  # well under any NATS max_payload
_END_HEADERS = {STREAM_HEADER: STREAM_END}


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
        self._cancels = cancels
        self._backends = backends
        self._catalog = catalog
        self._settings = settings
        self._relays = BackgroundTasks()

    async def open(self, request: OllamaProxyRequest) -> OllamaProxyAccepted:
        """Send the request; once the backend answered, relay its body in the background."""
        level = path_level(request.path)
        if level is None:
            raise RagwayError("not_found", f"Unknown Ollama API path: {request.path}")
        if level == "admin" and request.principal.role != "admin":
            raise RagwayError("forbidden", "Only administrators may do this")
        backend = await self._backend(request)
        sending = asyncio.ensure_future(self._send(backend, request))
        # a caller gone while the backend is still thinking stops it too
        cancel = await self._cancels.watch(request.stream_id, sending)
        started = time.perf_counter()
        try:
            try:
                response = await sending
            except asyncio.CancelledError:
                current = asyncio.current_task()
                requested = cancel is not None and cancel.requested
                if requested and current is not None and not current.cancelling():
                    raise RagwayError("timeout", "Cancelled by the caller") from None
                raise
        except BaseException:
            sending.cancel()
            if sending.done() and not sending.cancelled() and sending.exception() is None:
                sending.result().close()  # answered as this task was cancelled
            self._cancels.forget(cancel)
            raise
        relay = self._relays.spawn(self._relay(backend, request, response, cancel, started))
        # A relay cancelled before its first step never runs its `finally`: the
        # connection (and its slot in the pool) must not stay taken then.
        relay.add_done_callback(lambda _: response.close())
        if cancel is not None:
            cancel.task = relay
            if cancel.requested:
                relay.cancel()
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

    async def _relay(
        self,
        backend: Backend,
        request: OllamaProxyRequest,
        response: BackendResponse,
        cancel: CancelWatch | None,
        started: float,
    ) -> None:
        idle = self._settings.backend_idle_timeout_seconds
        inbox = request.stream_inbox
        size, error, outcome = 0, None, "ok"
        try:
            async with idle_timeout(idle) as deadline:
                while True:
                    data = await response.readany()
                    if not data:
                        break
                    deadline.touch()
                    size += len(data)
                    for start in range(0, len(data), MAX_PIECE):
                        await self._nc.publish(inbox, data[start : start + MAX_PIECE])
        except asyncio.CancelledError:
            requested = cancel is not None and cancel.requested
            outcome = "cancelled" if requested else "shutdown"
            error = "Cancelled by the caller" if requested else "The proxy is shutting down"
        except TimeoutError:
            outcome, error = "backend_failed", f"The Ollama backend sent nothing for {idle:g}s"
        except BackendHTTPError:
            outcome = "backend_failed"
            error = f"The connection to {backend.label} broke"
        except nats.errors.Error:
            outcome, error = "relay_failed", "The reply could not be delivered"
        finally:
            if error is None:
                response.release()  # the body was read to its end: the connection is kept
            else:
                response.close()  # stop the backend (a pull or a generation) too
            with contextlib.suppress(Exception):
                await self._nc.publish(
                    inbox, encode(OllamaProxyEnd(size=size, error=error)), headers=_END_HEADERS
                )
            self._cancels.forget(cancel)
            log.info(
                "ollama_passthrough",
                path=request.path,
                backend=backend.host,
                status=response.status,
                outcome=outcome,
                bytes=size,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    async def aclose(self, grace_seconds: float = 10.0) -> None:
        """Let running relays finish (bounded), then cancel the rest."""
        await self._relays.drain(grace_seconds)


def _model_of(body: bytes) -> str:
    if not body:
        return ""
    try:
        named = _decode_named(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return ""
    return named.model or named.name or ""

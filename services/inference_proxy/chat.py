"""Chat completions against the backend that serves the model: one answer, or a stream
relayed to the caller's NATS inbox as it arrives."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client

from common.codec import encode
from common.errors import RagwayError
from common.idle import idle_timeout
from common.tasks import BackgroundTasks
from contracts.chat import STREAM_END, STREAM_HEADER, CompletionJob, StreamAccepted, StreamEnd
from inference_proxy.backend_http import BackendHTTPError, BackendPool, BackendResponse
from inference_proxy.cancels import CancelRegistry, CancelWatch
from inference_proxy.catalog import ModelCatalog
from inference_proxy.errors import StreamFailure, error_for_exception, error_for_status
from inference_proxy.ollama_convert import completion_from_ollama, to_ollama_chat
from inference_proxy.settings import Backend, Settings
from inference_proxy.translate import OllamaStream, OpenAIStream, error_event
from inference_proxy.ui_fields import strip_ui_fields

log = structlog.get_logger()

_END_HEADERS = {STREAM_HEADER: STREAM_END}
# after a stream's end: how long to wait for the body's end before closing instead
REUSE_WAIT_SECONDS = 1.0


_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])
_json_decode = msgspec.json.decode
_JSON_TRUE = msgspec.Raw(b"true")
_JSON_FALSE = msgspec.Raw(b"false")


class _Completion(msgspec.Struct):
    """Enough of a chat.completion to know the backend answered with one."""

    choices: list[Any]


class _PublishFailed(Exception):
    pass


@dataclass
class _Request:
    backend: Backend
    model: str
    url: str
    payload: bytes
    headers: dict[str, str]


class ChatRunner:
    def __init__(
        self,
        nc: Client,
        backend: BackendPool,
        catalog: ModelCatalog,
        settings: Settings,
        cancels: CancelRegistry,
    ) -> None:
        self._nc = nc
        self._backend = backend  # the connect timeout is the pool's
        self._catalog = catalog
        self._settings = settings
        self._relays = BackgroundTasks()
        self._cancels = cancels

    async def _prepare(self, job: CompletionJob, *, stream: bool) -> _Request:
        # Top-level fields only: the messages (most of a long chat) stay raw JSON, copied
        # into the backend's body without being parsed into objects and encoded again.
        try:
            body = _top_level.decode(job.body)
            model = _json_decode(body["model"]) if "model" in body else None
        except msgspec.ValidationError:
            model = None  # JSON, but not an object
        except msgspec.DecodeError:
            raise RagwayError("invalid", "The completion body is not valid JSON") from None
        if not isinstance(model, str):
            raise RagwayError("invalid", "The completion body needs a `model`")
        route = await self._catalog.route(model)
        if route is None:
            if await self._catalog.embedding_route(model) is not None:
                raise RagwayError(
                    "invalid", f"'{model}' is an embedding model: use POST /api/embeddings"
                )
            raise RagwayError("not_found", "Model not found")
        backend = route.pick()
        if backend.kind == "ollama":
            return _Request(
                backend,
                model,
                f"{backend.base_url}/api/chat",
                msgspec.json.encode(to_ollama_chat(_json_decode(job.body), stream=stream)),
                {"Content-Type": "application/json"},
            )
        strip_ui_fields(body)
        body["stream"] = _JSON_TRUE if stream else _JSON_FALSE
        if stream:
            # usage comes as a last chunk only when asked for
            given = _json_decode(body["stream_options"]) if "stream_options" in body else None
            options = {**(given if isinstance(given, dict) else {}), "include_usage": True}
            body["stream_options"] = msgspec.Raw(msgspec.json.encode(options))
        else:
            body.pop("stream_options", None)
        headers = {"Content-Type": "application/json"}
        if backend.api_key:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        return _Request(
            backend,
            model,
            f"{backend.base_url}/chat/completions",
            msgspec.json.encode(body),
            headers,
        )

    async def complete(self, job: CompletionJob) -> bytes:
        """The backend's answer as OpenAI `chat.completion` JSON bytes."""
        request = await self._prepare(job, stream=False)
        backend = request.backend
        limit = self._settings.backend_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                response = await self._backend.post(request.url, request.payload, request.headers)
                try:
                    body = await response.read()
                finally:
                    response.release()  # closes instead when the body did not end
                status = response.status
        except (BackendHTTPError, TimeoutError) as exc:
            raise error_for_exception(backend, exc, limit) from None
        if status >= 300:
            raise error_for_status(backend, status, body)
        try:
            if backend.kind == "ollama":
                return completion_from_ollama(msgspec.json.decode(body), request.model)
            msgspec.json.decode(body, type=_Completion)
        except (msgspec.DecodeError, AttributeError):
            raise RagwayError(
                "bad_gateway", f"Model backend {backend.host} sent a malformed answer"
            ) from None
        return body  # an OpenAI backend's answer goes out as it came

    async def stream(
        self, job: CompletionJob, *, first_in_reply: bool = False, tail_in_end: bool = False
    ) -> StreamAccepted:
        """Open the backend stream; once it answered 2xx, relay it in the background.

        With `first_in_reply`, what the backend already sent with its headers goes out
        translated in the reply (`StreamAccepted.first`), not as a stream message of its
        own; nothing is waited for. With `tail_in_end`, the stream's closing bytes, and
        what came with the backend's `[DONE]`, go out in its end message (`StreamEnd.tail`)."""
        if not job.stream_inbox:
            raise RagwayError("invalid", "A stream needs a `stream_inbox`")
        request = await self._prepare(job, stream=True)
        # The backend is opened in the calling task (no task of its own: one hop less
        # before the first chunk); a cancel message cancels this task while it opens.
        current = asyncio.current_task()
        cancel = await self._cancels.watch(job.stream_id, current)
        started = time.perf_counter()
        try:
            try:
                response = await self._open(request)
            except asyncio.CancelledError:
                requested = cancel is not None and cancel.requested
                # uncancel() == 0: the cancel message was the only reason (not a shutdown)
                if requested and current is not None and current.uncancel() == 0:
                    raise RagwayError("timeout", "The stream was cancelled by its caller") from None
                raise
        except BaseException:
            self._cancels.forget(cancel)
            raise
        translator: OpenAIStream | OllamaStream = (
            OllamaStream(request.model)
            if request.backend.kind == "ollama"
            else OpenAIStream(request.model)
        )
        first = b""
        failure: str | None = None
        if first_in_reply and (data := response.buffered()):
            try:
                first = translator.feed(data)
            except StreamFailure as exc:
                failure = str(exc)  # reported by the relay, as any later failure
        relay = self._relays.spawn(
            self._relay(
                request,
                response,
                translator,
                job.stream_inbox,
                cancel,
                started,
                failure,
                tail_in_end,
            )
        )
        # A relay cancelled before its first step never runs its `finally`: the
        # connection (and its slot in the shared pool) must not stay taken then.
        relay.add_done_callback(lambda _: response.close())
        if cancel is not None:
            cancel.task = relay
            if cancel.requested:
                relay.cancel()
        return StreamAccepted(model=request.model, first=first)

    async def _open(self, request: _Request) -> BackendResponse:
        backend = request.backend
        limit = self._settings.backend_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                response = await self._backend.post(request.url, request.payload, request.headers)
                if response.status >= 300:  # an error, or a redirect (never followed)
                    try:
                        body = await response.read()
                    finally:
                        response.release()
                    raise error_for_status(backend, response.status, body)
        except (BackendHTTPError, TimeoutError) as exc:
            raise error_for_exception(backend, exc, limit) from None
        return response

    async def _relay(
        self,
        request: _Request,
        response: BackendResponse,
        translator: OpenAIStream | OllamaStream,
        inbox: str,
        cancel: CancelWatch | None,
        started: float,
        failure: str | None,
        tail_in_end: bool,
    ) -> None:
        idle = self._settings.backend_idle_timeout_seconds
        error: str | None = None
        tail = b""  # the closing bytes, when they ride in the end message
        outcome = "ok"
        chunks = 0
        try:
            try:
                if failure is not None:
                    raise StreamFailure(failure)
                async with idle_timeout(idle) as quiet:
                    while not translator.done:
                        data = await response.readany()
                        if not data:
                            break
                        quiet.touch()
                        out = translator.feed(data)
                        if out and tail_in_end and translator.done:
                            # the backend's last bytes ride in the end message with the
                            # closing ones, which follow at once: a message less
                            tail = out
                        elif out:
                            chunks += 1
                            await self._publish(inbox, out)
                closing = translator.close()  # raises only before the backend's [DONE]
                if tail_in_end:
                    tail += closing
                else:
                    await self._publish(inbox, closing)
            except TimeoutError:
                error = f"The model backend sent nothing for {idle:g}s"
            except StreamFailure as exc:
                error = str(exc)
            except BackendHTTPError:
                error = f"The connection to model backend {request.backend.host} broke"
            if error is not None:
                outcome = "backend_failed"
                await self._publish(inbox, error_event(error))
        except asyncio.CancelledError:
            outcome = "cancelled" if cancel is not None and cancel.requested else "shutdown"
            error = error or "The stream was cancelled"
        except _PublishFailed:
            outcome, error = "publish_failed", "The stream could not be delivered"
        finally:
            if error is not None:
                response.close()  # tells the backend to stop generating
            with contextlib.suppress(Exception):
                await self._publish(
                    inbox,
                    encode(
                        StreamEnd(
                            content=translator.content,
                            finish_reason=translator.finish_reason,
                            usage=translator.usage,
                            error=error,
                            tail=tail,
                        )
                    ),
                    _END_HEADERS,
                )
            self._cancels.forget(cancel)
            # the service's request line (ServiceHost) already logged the accepted stream
            # with its request id: this second line goes out at `info` only on failure
            (log.info if error is not None else log.debug)(
                "chat_stream",
                model=request.model,
                backend=request.backend.host,
                outcome=outcome,
                error=error,
                messages=chunks,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            if error is None:
                await _release_for_reuse(response)

    async def _publish(
        self, inbox: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Publish, riding out a short reconnect; give up when it lasts."""
        for _ in range(30):
            try:
                await self._nc.publish(inbox, data, headers=headers)
                return
            except nats.errors.OutboundBufferLimitError:
                await asyncio.sleep(0.1)
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                break
        raise _PublishFailed

    async def aclose(self, grace_seconds: float = 10.0) -> None:
        """Let running streams finish (bounded), then cancel the rest."""
        await self._relays.drain(grace_seconds)


async def _release_for_reuse(response: BackendResponse) -> None:
    """Wait for the end of the body, then hand the connection back.

    A backend may send `[DONE]` (or Ollama's `done`) before the chunked body's terminator,
    in a later segment; a response released before its body ended closes the connection,
    so every stream would open a new one. The caller already has its end message; this
    only waits (bounded) for the terminator."""
    if not response.ended:
        try:
            async with asyncio.timeout(REUSE_WAIT_SECONDS):
                await response.wait_end()
        except TimeoutError:
            response.close()
            return
        except BaseException:
            response.close()
            raise
    response.release()  # keeps the connection only when the body ended cleanly

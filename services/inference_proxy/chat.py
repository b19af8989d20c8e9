"""Chat completions against the backend that serves the model: one answer, or a stream
(`ChatStream`: the backend's bytes translated to ragway's SSE as they arrive), relayed
to the caller's NATS inbox or read in process (the tool loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client

from common import tracing
from common.errors import RagwayError
from common.idle import IdleDeadline
from contracts.chat import CompletionJob, StreamAccepted, StreamEnd
from contracts.streams import error_event
from inference_proxy.backend_http import BackendHTTPError, BackendPool, BackendResponse
from inference_proxy.cancels import CancelRegistry
from inference_proxy.catalog import ModelCatalog
from inference_proxy.errors import StreamFailure, error_for_exception, error_for_status
from inference_proxy.metrics import BackendErrors
from inference_proxy.ollama_convert import completion_from_ollama, to_ollama_chat
from inference_proxy.relay import Outbox, Relay, Relays, backend_reading, release_for_reuse
from inference_proxy.settings import Backend, Settings
from inference_proxy.translate import OllamaStream, OpenAIStream
from inference_proxy.ui_fields import strip_ui_fields

_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw])
_json_decode = msgspec.json.decode
_JSON_TRUE = msgspec.Raw(b"true")
_JSON_FALSE = msgspec.Raw(b"false")


class _Completion(msgspec.Struct):
    """Enough of a chat.completion to know the backend answered with one."""

    choices: list[Any]


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
        self._relays = Relays(cancels)
        self.errors = BackendErrors()  # read by /metrics

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
                with _backend_span(request, stream=False) as headers:
                    response = await self._backend.post(request.url, request.payload, headers)
                    try:
                        body = await response.read()
                    finally:
                        response.release()  # closes instead when the body did not end
                status = response.status
        except (BackendHTTPError, TimeoutError) as exc:
            self.errors.failed(backend, _reason(exc))
            raise error_for_exception(backend, exc, limit) from None
        if status >= 300:
            self.errors.failed(backend, "status")
            raise error_for_status(backend, status, body)
        try:
            if backend.kind == "ollama":
                return completion_from_ollama(msgspec.json.decode(body), request.model)
            msgspec.json.decode(body, type=_Completion)
        except (msgspec.DecodeError, AttributeError):
            self.errors.failed(backend, "malformed")
            raise RagwayError("bad_gateway", f"{backend.label} sent a malformed answer") from None
        return body  # an OpenAI backend's answer goes out as it came

    async def open(self, job: CompletionJob) -> ChatStream:
        """The backend's stream once it answered 2xx (errors before that are raised)."""
        return await self._open(await self._prepare(job, stream=True))

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
        stream, cancel = await self._relays.open(job.stream_id, lambda: self._open(request))
        first = stream.first() if first_in_reply else b""
        relay = ChatRelay(stream, tail_in_end=tail_in_end, errors=self.errors)
        self._relays.start(relay, Outbox(self._nc, job.stream_inbox), cancel)
        return StreamAccepted(model=request.model, first=first)

    async def _open(self, request: _Request) -> ChatStream:
        backend = request.backend
        limit = self._settings.backend_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                with _backend_span(request, stream=True) as headers:
                    response = await self._backend.post(request.url, request.payload, headers)
                    if response.status >= 300:  # an error, or a redirect (never followed)
                        try:
                            body = await response.read()
                        finally:
                            response.release()
                        self.errors.failed(backend, "status")
                        raise error_for_status(backend, response.status, body)
        except (BackendHTTPError, TimeoutError) as exc:
            self.errors.failed(backend, _reason(exc))
            raise error_for_exception(backend, exc, limit) from None
        return ChatStream(request, response, self._settings.backend_idle_timeout_seconds)

    async def aclose(self, grace_seconds: float = 10.0) -> None:
        """Let running streams finish (bounded), then cancel the rest."""
        await self._relays.aclose(grace_seconds)


class ChatStream:
    """A backend's chat stream after its 2xx, read as ragway's SSE bytes:
    `async with stream.reading(): while data := await stream.next(): ...`, then
    `closing()`; `release()` it when it ended well, `close()` it otherwise."""

    __slots__ = ("_deadline", "_failure", "_idle", "request", "response", "translator")

    def __init__(self, request: _Request, response: BackendResponse, idle: float) -> None:
        self.request = request
        self.response = response
        self.translator: OpenAIStream | OllamaStream = (
            OllamaStream(request.model)
            if request.backend.kind == "ollama"
            else OpenAIStream(request.model)
        )
        self._idle = idle
        self._failure: str | None = None  # met in `first`, raised by `reading`
        self._deadline: IdleDeadline | None = None

    @property
    def done(self) -> bool:
        """The backend's stream said its last word (its [DONE], Ollama's `done`)."""
        return self.translator.done

    def first(self) -> bytes:
        """What arrived with the backend's headers, translated, without waiting."""
        data = self.response.buffered()
        if not data:
            return b""
        try:
            return self.translator.feed(data)
        except StreamFailure as exc:
            self._failure = str(exc)  # reported by `reading`, as any later failure
            return b""

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        """Bound the reads by the idle timeout; a broken or silent backend, or malformed
        data, raise StreamFailure out of the block."""
        if self._failure is not None:
            raise StreamFailure(self._failure)
        async with backend_reading(
            self._idle, "model backend", self.request.backend.label
        ) as deadline:
            self._deadline = deadline
            yield

    async def next(self) -> bytes:
        """The next translated bytes (possibly several events); b"" once the backend's
        stream is over. Call it inside `reading()`."""
        translator = self.translator
        while not translator.done:
            data = await self.response.readany()
            if not data:
                break
            if self._deadline is not None:
                self._deadline.touch()
            out = translator.feed(data)
            if out:
                return out
        return b""

    def closing(self) -> bytes:
        """The stream's last bytes (through DONE); StreamFailure when it ended early."""
        return self.translator.close()

    def end(self, error: str | None, tail: bytes = b"") -> StreamEnd:
        translator = self.translator
        return StreamEnd(
            content=translator.content,
            finish_reason=translator.finish_reason,
            usage=translator.usage,
            error=error,
            tail=tail,
        )

    def close(self) -> None:
        self.response.close()  # tells the backend to stop generating

    async def release(self) -> None:
        await release_for_reuse(self.response)


class ChatRelay(Relay):
    """A chat stream relayed as it arrives."""

    event = "chat_stream"

    def __init__(
        self, stream: ChatStream, *, tail_in_end: bool, errors: BackendErrors | None = None
    ) -> None:
        self._stream = stream
        self._errors = errors
        self._tail_in_end = tail_in_end
        self._tail = b""  # the closing bytes, when they ride in the end message
        self._messages = 0

    async def pump(self, out: Outbox) -> None:
        stream = self._stream
        tail_in_end = self._tail_in_end
        async with stream.reading():
            while data := await stream.next():
                if tail_in_end and stream.done:
                    # the backend's last bytes ride in the end message with the closing
                    # ones, which follow at once: a message less
                    self._tail = data
                else:
                    self._messages += 1
                    await out.send(data)
        closing = stream.closing()  # raises only before the backend's [DONE]
        if tail_in_end:
            self._tail += closing
        else:
            await out.send(closing)

    async def failed(self, out: Outbox, error: str) -> None:
        if self._errors is not None:
            self._errors.failed(self._stream.request.backend, "stream")
        await out.send(error_event(error))

    def end_message(self, error: str | None) -> StreamEnd:
        return self._stream.end(error, self._tail)

    def stop(self) -> None:
        self._stream.close()

    async def release(self) -> None:
        await self._stream.release()

    def log_fields(self) -> dict[str, Any]:
        request = self._stream.request
        return {"model": request.model, "backend": request.backend.host, "messages": self._messages}


def _reason(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else "transport"


@contextmanager
def _backend_span(request: _Request, *, stream: bool) -> Iterator[dict[str, str]]:
    """The backend HTTP call as a client span (until its answer's headers, for a stream;
    the whole body otherwise), and the request's headers with its `traceparent` (as they
    are when tracing is off)."""
    if not tracing.enabled():
        yield request.headers
        return
    backend = request.backend
    attributes = {
        "ragway.backend.kind": backend.kind,
        "ragway.backend.index": backend.idx,
        "server.address": backend.host,
        "ragway.stream": stream,
    }
    with tracing.span(f"POST {backend.kind} backend", tracing.CLIENT, attributes):
        headers = dict(request.headers)
        tracing.inject(headers)
        yield headers

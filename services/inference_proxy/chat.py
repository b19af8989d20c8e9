"""Chat completions against the backend that serves the model: one answer, or a stream
(`ChatStream`: the backend's bytes translated to ragway's SSE as they arrive), relayed
to the caller's NATS inbox or read in process (the tool loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog
from nats.aio.client import Client

from common import tracing
from common.errors import RagwayError
from common.idle import IdleDeadline
from contracts.chat import BackendRef, CompletionJob, StreamAccepted, StreamEnd
from contracts.streams import error_event
from inference_proxy.backend_http import BackendHTTPError, BackendPool, BackendResponse
from inference_proxy.cancels import CancelRegistry
from inference_proxy.catalog import ModelCatalog, Route
from inference_proxy.errors import StreamFailure, error_for_exception, error_for_status
from inference_proxy.metrics import BackendErrors
from inference_proxy.ollama_convert import completion_from_ollama, to_ollama_chat
from inference_proxy.relay import Outbox, Relay, Relays, backend_reading, release_for_reuse
from inference_proxy.routing import Lease, Router
from inference_proxy.settings import Backend, Settings
from inference_proxy.translate import OllamaStream, OpenAIStream
from inference_proxy.ui_fields import strip_ui_fields

log = structlog.get_logger()
T = TypeVar("T")
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


@dataclass
class _Plan:
    """One completion's body (top-level fields, parsed once) and where it may go."""

    job: CompletionJob
    body: dict[str, msgspec.Raw]
    model: str  # as asked
    route: Route | None
    fallbacks: list[str]


@dataclass(frozen=True, slots=True)
class Answer:
    """A non-streamed completion: the `chat.completion` JSON and who answered."""

    body: bytes
    model: str
    backend: Backend


class _MoveOn(Exception):
    """The backend failed before its first token: the next candidate is tried."""

    def __init__(self, error: RagwayError) -> None:
        self.error = error


def _moves_on(status: int) -> bool:
    return status >= 500 or status == 429


class ChatRunner:
    def __init__(
        self,
        nc: Client,
        backend: BackendPool,
        catalog: ModelCatalog,
        settings: Settings,
        cancels: CancelRegistry,
        router: Router,
    ) -> None:
        self._nc = nc
        self._backend = backend  # the connect timeout is the pool's
        self._catalog = catalog
        self._settings = settings
        self._router = router
        self._relays = Relays(cancels)
        self.errors = BackendErrors()  # read by /metrics

    async def _plan(self, job: CompletionJob) -> _Plan:
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
        fallbacks = self._fallbacks(job, model)
        route = await self._catalog.route(model)
        if route is None and not fallbacks:
            if await self._catalog.embedding_route(model) is not None:
                raise RagwayError(
                    "invalid", f"'{model}' is an embedding model: use POST /api/embeddings"
                )
            raise RagwayError("not_found", "Model not found")
        strip_ui_fields(body)
        return _Plan(job, body, model, route, fallbacks)

    def _fallbacks(self, job: CompletionJob, model: str) -> list[str]:
        """The configured fallbacks of `model`, less those a scoped key may not use."""
        fallbacks = self._settings.model_fallbacks.get(model)
        if not fallbacks:
            return []
        grant = job.principal.key
        if grant is None or grant.models is None:
            return fallbacks
        return [m for m in fallbacks if m in grant.models]

    async def _candidates(self, plan: _Plan) -> AsyncIterator[tuple[str, Backend]]:
        """(model, backend) to try in order: the model's backends (see `Router.order`),
        then each fallback's; when none of them is in service, the model's ejected ones
        (a last resort rather than no answer)."""
        tried = False
        if plan.route is not None:
            for backend in self._router.order(plan.route.backends):
                tried = True
                yield plan.model, backend
        for fallback in plan.fallbacks:
            route = await self._catalog.route(fallback)
            if route is None:
                continue
            for backend in self._router.order(route.backends):
                tried = True
                yield fallback, backend
        if not tried and plan.route is not None:
            for backend in self._router.order(plan.route.backends, ejected_too=True):
                yield plan.model, backend

    def _request(self, plan: _Plan, model: str, backend: Backend, *, stream: bool) -> _Request:
        if backend.kind == "ollama":
            original = _json_decode(plan.job.body)
            original["model"] = model
            return _Request(
                backend,
                model,
                f"{backend.base_url}/api/chat",
                msgspec.json.encode(to_ollama_chat(original, stream=stream)),
                {"Content-Type": "application/json"},
            )
        body = dict(plan.body)
        if model != plan.model:
            body["model"] = msgspec.Raw(msgspec.json.encode(model))
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

    async def _attempts(self, plan: _Plan, *, stream: bool) -> AsyncIterator[_Request]:
        """Each request to try, in order; the caller stops at the first that answered."""
        async for model, backend in self._candidates(plan):
            yield self._request(plan, model, backend, stream=stream)

    async def complete(self, job: CompletionJob) -> Answer:
        """The answer as OpenAI `chat.completion` JSON bytes; a backend that fails before
        answering (no connection, 5xx, 429, no answer in time) passes the request on."""
        plan = await self._plan(job)
        return await self._first_answer(plan, self._complete_once, stream=False)

    async def _complete_once(self, request: _Request, lease: Lease) -> Answer:
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
            error = error_for_exception(backend, exc, limit)
            lease.failed(error.detail)
            raise _MoveOn(error) from None
        if status >= 300:
            self.errors.failed(backend, "status")
            error = error_for_status(backend, status, body)
            if _moves_on(status):
                lease.failed(f"HTTP {status}")
                raise _MoveOn(error)
            lease.succeeded()  # the backend works; it refused this request
            raise error
        try:
            if backend.kind == "ollama":
                body = completion_from_ollama(msgspec.json.decode(body), request.model)
            else:
                msgspec.json.decode(body, type=_Completion)
        except (msgspec.DecodeError, AttributeError):
            self.errors.failed(backend, "malformed")
            lease.failed("malformed answer")
            error = RagwayError("bad_gateway", f"{backend.label} sent a malformed answer")
            raise _MoveOn(error) from None
        lease.succeeded()
        return Answer(body, request.model, backend)  # an OpenAI answer goes out as it came

    async def open(self, job: CompletionJob) -> ChatStream:
        """The backend's stream once it answered 2xx (errors before that are raised)."""
        return await self._open_any(await self._plan(job))

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
        plan = await self._plan(job)
        stream, cancel = await self._relays.open(job.stream_id, lambda: self._open_any(plan))
        first = stream.first() if first_in_reply else b""
        relay = ChatRelay(stream, tail_in_end=tail_in_end, errors=self.errors)
        self._relays.start(relay, Outbox(self._nc, job.stream_inbox), cancel)
        request = stream.request
        return StreamAccepted(
            model=request.model,
            first=first,
            backend=BackendRef(kind=request.backend.kind, idx=request.backend.idx),
        )

    async def _open_any(self, plan: _Plan) -> ChatStream:
        """The first candidate's stream that answered 2xx; failures before it move on.
        The stream keeps its backend's lease (released when it ends)."""
        return await self._first_answer(plan, self._open, stream=True, keep_lease=True)

    async def _first_answer(
        self,
        plan: _Plan,
        attempt: Callable[[_Request, Lease], Awaitable[T]],
        *,
        stream: bool,
        keep_lease: bool = False,
    ) -> T:
        """`attempt` on each candidate in turn until one answers; one that fails before
        answering (`_MoveOn`) passes the request on to the next, with a log line saying why."""
        failure: RagwayError | None = None
        previous: _Request | None = None
        async for request in self._attempts(plan, stream=stream):
            if previous is not None and failure is not None:
                _log_move(previous, request, failure)
            previous = request
            lease = self._router.take(request.backend)
            try:
                answer = await attempt(request, lease)
            except _MoveOn as move:
                lease.release()
                failure = move.error
                continue
            except BaseException:
                lease.release()
                raise
            if not keep_lease:
                lease.release()
            return answer
        raise failure or RagwayError("not_found", "Model not found")  # nor its fallbacks

    async def _open(self, request: _Request, lease: Lease) -> ChatStream:
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
                        error = error_for_status(backend, response.status, body)
                        if _moves_on(response.status):
                            lease.failed(f"HTTP {response.status}")
                            raise _MoveOn(error)
                        lease.succeeded()
                        raise error
        except (BackendHTTPError, TimeoutError) as exc:
            self.errors.failed(backend, _reason(exc))
            error = error_for_exception(backend, exc, limit)
            lease.failed(error.detail)
            raise _MoveOn(error) from None
        lease.succeeded()
        return ChatStream(request, response, self._settings.backend_idle_timeout_seconds, lease)

    async def aclose(self, grace_seconds: float = 10.0) -> None:
        """Let running streams finish (bounded), then cancel the rest."""
        await self._relays.aclose(grace_seconds)


def _log_move(failed: _Request, then: _Request, error: RagwayError) -> None:
    log.warning(
        "chat_fallback",
        model=failed.model,
        backend=failed.backend.label,
        reason=error.detail,
        to_model=then.model,
        to_backend=then.backend.label,
    )


class ChatStream:
    """A backend's chat stream after its 2xx, read as ragway's SSE bytes:
    `async with stream.reading(): while data := await stream.next(): ...`, then
    `closing()`; `release()` it when it ended well, `close()` it otherwise."""

    __slots__ = ("_deadline", "_failure", "_idle", "lease", "request", "response", "translator")

    def __init__(
        self, request: _Request, response: BackendResponse, idle: float, lease: Lease
    ) -> None:
        self.request = request
        self.response = response
        self.lease = lease  # in flight on its backend until closed or released
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
        try:
            if self._failure is not None:
                raise StreamFailure(self._failure)
            async with backend_reading(
                self._idle, "model backend", self.request.backend.label
            ) as deadline:
                self._deadline = deadline
                yield
        except StreamFailure as exc:  # after the first token: not retried, but counted
            self.lease.failed(str(exc))
            raise

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
        self.lease.release()

    async def release(self) -> None:
        self.lease.release()
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
        "ragway.backend_kind": backend.kind,
        "ragway.backend_index": backend.idx,
        "server.address": backend.host,
        "ragway.stream": stream,
    }
    with tracing.span(f"POST {backend.kind} backend", tracing.CLIENT, attributes):
        headers = dict(request.headers)
        tracing.inject(headers)
        yield headers

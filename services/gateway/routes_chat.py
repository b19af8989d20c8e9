"""Models and chat completions, answered by the inference-proxy over NATS.

Bodies are validated here against the OpenAI request Struct and then forwarded as
the bytes the client sent; replies come back as bytes and go out unchanged. With `files`
(RAG) the body is rewritten once (see `gateway.rag`) and `sources` added to the reply.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec
import structlog
from aiohttp import web

from common.codec import decode, encode
from common.errors import RagwayError
from contracts import subjects
from contracts.chat import (
    BackendRef,
    ChatCompletionRequest,
    CompletionJob,
    CompletionReply,
    FileRef,
    StreamAccepted,
    StreamEnd,
)
from contracts.models import ModelsRequest
from contracts.presets import Preset
from contracts.streams import DONE, closing_bytes, error_event
from gateway import rag, scopes
from gateway.bodies import json_bytes, json_value, parse, read_body
from gateway.chat_log import ChatAppend
from gateway.metering import NO_TOKENS, Metered, reply_facts
from gateway.relay import relay_stream
from gateway.routes_chats import CHATS
from gateway.state import BUS, METER, PRESETS, SETTINGS, Access, principal_of

log = structlog.get_logger()

# the Content-Type as a header, not through `content_type =` (which builds it per response)
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def list_models(request: web.Request) -> web.Response:
    """The proxy's list (function models only where granted), and the caller's presets."""
    app = request.app
    principal = principal_of(request)
    reply = await app[BUS].call_raw(
        subjects.MODELS_LIST,
        encode(ModelsRequest(principal=principal)),
        timeout=app[SETTINGS].request_timeout_seconds,
    )
    allowed = scopes.allowed_models(principal)
    presets = app[PRESETS]
    if not presets.store.all() and allowed is None:
        return json_bytes(reply)
    listing: dict[str, Any] = msgspec.json.decode(reply)
    models = listing.get("data") or []
    listing["data"] = [*presets.listed(principal, models), *models]
    if allowed is not None:  # a scoped key sees only its models (presets included)
        return json_value(_only(listing, allowed))
    return json_bytes(encode(listing))


def _only(listing: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """The model list with only the models a scoped key may use."""
    data = listing.get("data") or []
    listing["data"] = [m for m in data if isinstance(m, dict) and m.get("id") in allowed]
    return listing


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    chat = parse(body, ChatCompletionRequest)
    principal = principal_of(request)
    scopes.require_model(principal, chat.model)
    # over a limit: 429 before any work is done
    metered = await request.app[METER].start(
        principal,
        chat.model,
        body_bytes=len(body),
        max_tokens=chat.max_tokens,
        stream=chat.stream,
    )
    try:
        return await _complete(request, body, chat, metered)
    except asyncio.CancelledError:
        await metered.done(None, "cancelled")  # the estimate stands: it may have run
        raise
    except BaseException:
        await metered.done(NO_TOKENS, "error")
        raise


async def _complete(
    request: web.Request, body: bytes, chat: ChatCompletionRequest, metered: Metered
) -> web.StreamResponse:
    # a chat_id the caller does not own is a 404 before the model is asked anything
    record = await ChatAppend.start(request.app[CHATS], principal_of(request).id, chat)
    preset = None
    if request.app[PRESETS].store.known(chat.model):
        body, chat, preset = await _with_preset(request, body, chat)
        # a scoped key: the preset's base model must be in scope too (its attached
        # knowledge is checked with the rest of `files`, in `rag.retrieve`)
        scopes.require_model(principal_of(request), chat.model)
    sources: list[rag.SourceEntry] | None = None
    if chat.files:
        try:
            body, sources = await _with_rag(request, body, chat.files)
        except RagwayError as exc:
            if preset is None:
                raise
            raise request.app[PRESETS].knowledge_error(preset, exc) from None
    job = CompletionJob(principal=principal_of(request), body=msgspec.Raw(body))
    if chat.stream:
        first = b"" if sources is None else b"data: " + encode({"sources": sources}) + b"\n\n"
        return await _stream(request, job, metered, first, record, sources)
    app = request.app
    envelope = await app[BUS].call_raw(
        subjects.CHAT_COMPLETE,
        encode(msgspec.structs.replace(job, reply_envelope=True)),
        timeout=app[SETTINGS].completion_timeout_seconds,
    )
    answered = _decode_reply(envelope)
    reply = bytes(answered.completion)
    model, usage = reply_facts(reply)
    # recorded before the answer goes out
    await metered.done(usage, "ok", model, answered.backend)
    if sources is not None:
        reply = _with_sources(reply, sources)
    if record is not None:
        await record.finish_with_completion(reply, sources)
    return json_bytes(reply)


async def _with_preset(
    request: web.Request, body: bytes, chat: ChatCompletionRequest
) -> tuple[bytes, ChatCompletionRequest, Preset | None]:
    """A completion by a preset's id as one for its base model (see `Presets.expand`)."""
    original: dict[str, Any] = msgspec.json.decode(body)
    preset = await request.app[PRESETS].expand(principal_of(request), original)
    if preset is None:
        return body, chat, None
    expanded = encode(original)
    return expanded, parse(expanded, ChatCompletionRequest), preset


async def _with_rag(
    request: web.Request, body: bytes, files: list[FileRef]
) -> tuple[bytes, list[rag.SourceEntry]]:
    """The body with the RAG prompt in front of the last user message, and its sources.

    Retrieval errors (a file the caller may not read, a failed file, one still processing
    after the wait) propagate: they become JSON errors before any reply starts.
    """
    settings = request.app[SETTINGS]
    original: dict[str, Any] = msgspec.json.decode(body)
    result = await rag.retrieve(
        request.app[BUS],
        principal_of(request),
        rag.user_query(original),
        rag.scope_items(files),
        k=settings.rag_top_k,
        wait_seconds=settings.rag_wait_seconds,
        reply_seconds=settings.request_timeout_seconds,
        complete_wait_seconds=settings.rag_complete_wait_seconds,
    )
    sources = rag.sources_of(result.groups)
    return encode(rag.rewrite(original, sources)), sources


_decode_envelope = msgspec.json.Decoder(CompletionReply).decode


def _decode_reply(envelope: bytes) -> CompletionReply:
    """The proxy's CompletionReply; a proxy older than `reply_envelope` (a rolling
    deploy) sends the completion itself, which goes out as it came."""
    try:
        return _decode_envelope(envelope)
    except msgspec.DecodeError:
        return CompletionReply(completion=msgspec.Raw(envelope))


def _with_sources(reply: bytes, sources: list[rag.SourceEntry]) -> bytes:
    completion = msgspec.json.decode(reply)
    if not isinstance(completion, dict):
        return reply
    completion["sources"] = sources
    return encode(completion)


class _SSEResponse(web.StreamResponse):
    """Headers go out with the first bytes written (one send, not two), as aiohttp does
    for `web.Response`; an aiohttp without that switch sends them at `prepare`."""

    _send_headers_immediately = False


async def _stream(
    request: web.Request,
    job: CompletionJob,
    metered: Metered,
    first: bytes = b"",
    record: ChatAppend | None = None,
    sources: list[rag.SourceEntry] | None = None,
) -> web.StreamResponse:
    """Relay the proxy's SSE bytes until its end message (see `gateway.relay`)."""
    stream_id = os.urandom(16).hex()  # a uuid4's randomness without the UUID object
    sink = _ChatSink(request, metered, first, record, sources)
    await relay_stream(
        request,
        subjects.CHAT_STREAM,
        lambda inbox: msgspec.structs.replace(
            job, stream_inbox=inbox, stream_id=stream_id, first_in_reply=True, tail_in_end=True
        ),
        subjects.CHAT_CANCEL,
        stream_id,
        sink,
    )
    assert sink.response is not None  # started: relay_stream raises otherwise
    return sink.response


class _ChatSink:
    """The chat stream as SSE. `first` (the RAG sources event) goes out before the
    relayed chunks. With `record` (a `chat_id`), `[DONE]` is held back until the answer
    is in the chat's history, so a client that reads the chat right after the stream
    sees it."""

    __slots__ = (
        "_backend",
        "_first",
        "_last",
        "_metered",
        "_model",
        "_record",
        "_request",
        "_sources",
        "_tail",
        "response",
    )

    def __init__(
        self,
        request: web.Request,
        metered: Metered,
        first: bytes,
        record: ChatAppend | None,
        sources: list[rag.SourceEntry] | None,
    ) -> None:
        self._request = request
        self._metered = metered
        self._model = ""  # who answered, as the acceptance says
        self._backend: BackendRef | None = None
        self._first = first
        self._record = record
        self._sources = sources
        self._last = b""  # the stream's last bytes so far, as the proxy sent them
        self._tail = b""  # what goes out with the end of the body
        self.response: web.StreamResponse | None = None

    async def start(self, accepted: StreamAccepted) -> None:
        self._model = accepted.model
        self._backend = accepted.backend
        response = self.response = _SSEResponse(headers=SSE_HEADERS)
        await response.prepare(self._request)
        # the stream's first bytes may have come with the acceptance (one message)
        if self._first or accepted.first:
            await response.write(self._first + accepted.first)

    async def data(self, data: bytes, ending: bool) -> None:
        assert self.response is not None
        self._last = data
        data = _held_back(data, self._record)
        if ending and self._record is None:
            self._tail = data  # written with the end of the body: one send
        else:
            await self.response.write(data)

    async def end(self, body: bytes) -> None:
        assert self.response is not None
        ended = _decode_end(body)
        last, tail = self._last, self._tail
        if ended is not None and ended.tail:  # the last bytes came with the end
            last = ended.tail
            tail += _held_back(last, self._record)
        closing = closing_bytes(last, ended.error if ended is not None else None)
        if closing:
            tail += closing
        elif self._record is not None:
            await _record_stream(self._record, ended, self._sources)
            tail += DONE
        # the ledger has it before the client has the end of the answer
        await self._metered.done(
            ended.usage if ended is not None else None,
            "error" if closing or ended is None else "ok",
            self._model,
            self._backend,
        )
        await self.response.write_eof(tail)

    async def idle(self) -> None:
        assert self.response is not None
        await self._metered.done(None, "error", self._model, self._backend)
        await self.response.write_eof(error_event("The model stopped responding"))


def _held_back(data: bytes, record: ChatAppend | None) -> bytes:
    """`data` without its `[DONE]` while a chat's history still has to be written."""
    return data[: -len(DONE)] if record is not None and data.endswith(DONE) else data


def _decode_end(data: bytes) -> StreamEnd | None:
    try:
        return decode(data, StreamEnd)
    except msgspec.DecodeError:
        return None


async def _record_stream(
    record: ChatAppend, end: StreamEnd | None, sources: list[rag.SourceEntry] | None
) -> None:
    if end is None:
        log.warning("chat_append_skipped", chat_id=record.chat_id, reason="unreadable end")
        return
    if end.error is None:
        await record.finish(end.content, end.usage, list(sources) if sources else None)


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    for prefix in ("/api", "/api/v1"):
        name = prefix.strip("/").replace("/", "_")
        app.router.add_get(f"{prefix}/models", list_models, name=f"{name}_models")
        app.router.add_post(f"{prefix}/chat/completions", chat_completions, name=f"{name}_chat")
        access[f"{name}_models"] = "user"
        access[f"{name}_chat"] = "user"

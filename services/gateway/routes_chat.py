"""Models and chat completions, answered by the inference-proxy over NATS.

Bodies are validated here against the OpenAI request Struct and then forwarded as
the bytes the client sent; replies come back as bytes and go out unchanged. With `files`
(RAG) the body is rewritten once (see `gateway.rag`) and `sources` added to the reply.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import msgspec
import structlog
from aiohttp import web
from nats.aio.msg import Msg

from common.bus import Bus
from common.codec import decode, encode
from common.errors import RagwayError
from common.idle import idle_timeout
from contracts import subjects
from contracts.chat import (
    STREAM_END,
    STREAM_HEADER,
    ChatCompletionRequest,
    CompletionJob,
    FileRef,
    StreamEnd,
)
from contracts.models import ModelsRequest
from contracts.presets import Preset
from gateway import rag
from gateway.bodies import json_bytes, parse, read_body
from gateway.chat_log import ChatAppend
from gateway.routes_chats import CHATS
from gateway.state import (
    BUS,
    INBOXES,
    METRICS,
    PRESETS,
    SETTINGS,
    STARTED,
    Access,
    principal_of,
)

log = structlog.get_logger()

# the Content-Type as a header, not through `content_type =` (which builds it per response)
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
DONE = b"data: [DONE]\n\n"


def error_event(message: str) -> bytes:
    return b"data: " + encode({"error": {"message": message}}) + b"\n\n" + DONE


async def list_models(request: web.Request) -> web.Response:
    """The proxy's list (function models only where granted), and the caller's presets."""
    app = request.app
    principal = principal_of(request)
    reply = await app[BUS].call_raw(
        subjects.MODELS_LIST,
        encode(ModelsRequest(principal=principal)),
        timeout=app[SETTINGS].request_timeout_seconds,
    )
    presets = app[PRESETS]
    if not presets.store.all():
        return json_bytes(reply)
    listing: dict[str, Any] = msgspec.json.decode(reply)
    models = listing.get("data") or []
    listing["data"] = [*presets.listed(principal, models), *models]
    return json_bytes(encode(listing))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    chat = parse(body, ChatCompletionRequest)
    # a chat_id the caller does not own is a 404 before the model is asked anything
    record = await ChatAppend.start(request.app[CHATS], principal_of(request).id, chat)
    preset = None
    if request.app[PRESETS].store.known(chat.model):
        body, chat, preset = await _with_preset(request, body, chat)
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
        return await _stream(request, job, chat.model, first, record, sources)
    app = request.app
    reply = await app[BUS].call_raw(
        subjects.CHAT_COMPLETE, encode(job), timeout=app[SETTINGS].completion_timeout_seconds
    )
    app[METRICS].completion_tokens(chat.model, reply)
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
    with request.app[METRICS].retrieval():
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
    model: str,
    first: bytes = b"",
    record: ChatAppend | None = None,
    sources: list[rag.SourceEntry] | None = None,
) -> web.StreamResponse:
    """Relay the proxy's SSE bytes from a private mailbox until its end message.

    `first` (the RAG sources event) goes out before the relayed chunks. With `record`
    (a `chat_id`), `[DONE]` is held back until the answer is in the chat's history, so a
    client that reads the chat right after the stream sees it."""
    app = request.app
    bus, settings, metrics = app[BUS], app[SETTINGS], app[METRICS]
    stream_id = os.urandom(16).hex()  # a uuid4's randomness without the UUID object
    finished = False
    # The mailbox listens before the job is sent, so no chunk can arrive unheard; the
    # proxy's StreamAccepted comes to its reply subject, the chunks to its subject.
    async with app[INBOXES].open() as box:
        job = msgspec.structs.replace(
            job,
            stream_inbox=box.subject,
            stream_id=stream_id,
            first_in_reply=True,
            tail_in_end=True,
        )
        try:
            accepted = await bus.call_into(
                subjects.CHAT_STREAM, job, box, timeout=settings.completion_timeout_seconds
            )
            response = _SSEResponse(headers=SSE_HEADERS)
            await response.prepare(request)
            # the stream's first bytes may have come with the acceptance (one message)
            if first or accepted.first:
                await response.write(first + accepted.first)
            timed = bool(accepted.first)  # the model's first bytes are out: TTFT observed
            if timed:
                metrics.first_token(time.perf_counter() - request[STARTED])
            last = b""
            tail = b""  # what arrived with the end message: sent with the end of the body
            end: Msg | None = None
            try:
                async with idle_timeout(settings.stream_idle_timeout_seconds) as idle:
                    while end is None:
                        # Everything that arrived meanwhile goes out in one write (one send).
                        batch = await box.batch()
                        idle.touch()
                        pieces: list[bytes] = []
                        for msg in batch:
                            if msg.headers and msg.headers.get(STREAM_HEADER) == STREAM_END:
                                end = msg
                                break
                            pieces.append(msg.data)
                        if pieces:
                            last = pieces[-1]
                            pieces[-1] = _held_back(last, record)
                            if end is None or record is not None:
                                await response.write(b"".join(pieces))
                            else:
                                tail = b"".join(pieces)
                            if not timed:
                                timed = True
                                metrics.first_token(time.perf_counter() - request[STARTED])
            except TimeoutError:
                if not idle.expired():
                    raise
                log.warning("stream_idle_timeout", stream_id=stream_id)
                tail = error_event("The model stopped responding")
            if end is not None:
                finished = True
                ended = _decode_end(end.data)
                if ended is not None and ended.tail:  # the last bytes came with the end
                    last = ended.tail
                    tail += _held_back(last, record)
                    if not timed:
                        metrics.first_token(time.perf_counter() - request[STARTED])
                if ended is not None:
                    metrics.tokens(model, ended.usage)
                if not last.rstrip().endswith(b"[DONE]"):
                    metrics.backend_error("stream")
                    tail += error_event(_end_error(ended))
                elif record is not None:
                    await _record_stream(record, ended, sources)
                    tail += DONE
            await response.write_eof(tail)
            return response
        finally:
            if not finished:
                # Client gone, idle timeout or a failed start: tell the proxy to stop.
                await _cancel(bus, stream_id)


async def _cancel(bus: Bus, stream_id: str) -> None:
    try:
        await asyncio.shield(bus.publish(subjects.CHAT_CANCEL, None, token=stream_id))
    except Exception:
        log.warning("stream_cancel_failed", stream_id=stream_id)


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


def _end_error(end: StreamEnd | None) -> str:
    if end is None or not end.error:
        return "The stream ended unexpectedly"
    return end.error


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    for prefix in ("/api", "/api/v1"):
        name = prefix.strip("/").replace("/", "_")
        app.router.add_get(f"{prefix}/models", list_models, name=f"{name}_models")
        app.router.add_post(f"{prefix}/chat/completions", chat_completions, name=f"{name}_chat")
        access[f"{name}_models"] = "user"
        access[f"{name}_chat"] = "user"

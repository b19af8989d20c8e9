"""`POST /api/embeddings` and `/api/v1/embeddings`: OpenAI's embeddings API.

A scoped API key reaches only its models; the request counts against the caller's
limits (its tokens: the reply's `usage`) and is in the usage ledger as an `embedding`.
The texts are split into batches (`embeddings_batch_size`, and small enough to be one
NATS message each), a few asked at once from the inference-proxy, which knows where the
model lives (ragway's own, or a backend's). Vectors come back as float32 bytes and go
out as OpenAI writes them: floats, or `encoding_format: base64` (base64 of those bytes,
what the openai SDK asks for by default).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from common import float32
from common.bus import Bus
from common.codec import encode
from common.errors import RagwayError, invalid
from contracts import subjects
from contracts.embeddings import (
    EmbedBatch,
    EmbeddedBatch,
    Embedding,
    EmbeddingsReply,
    EmbeddingsRequest,
    EmbeddingsUsage,
)
from gateway import scopes
from gateway.bodies import json_bytes, parse, read_body
from gateway.metering import NO_TOKENS
from gateway.state import BUS, METER, SETTINGS, Access, principal_of

# the request's fields ragway reads; any other goes to a backend as it came
KNOWN_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions"})
# a batch's other fields (model, dimensions, extra) and NATS headers, besides its texts
ENVELOPE_BYTES = 16 * 1024
TOKEN_IDS = (
    "`input` holds token ids: ragway embeds text, so send strings (LangChain's "
    "OpenAIEmbeddings sends token ids unless `check_embedding_ctx_length=False`)"
)


async def embeddings(request: web.Request) -> web.Response:
    body = await read_body(request)
    form = parse(body, EmbeddingsRequest)
    principal = principal_of(request)
    scopes.require_model(principal, form.model)
    settings = request.app[SETTINGS]
    texts = _texts(form.input)
    if len(texts) > settings.embeddings_max_inputs:
        raise invalid(
            f"Too many inputs: {len(texts)} (at most {settings.embeddings_max_inputs} "
            "in one request)"
        )
    chars = sum(len(text) for text in texts)
    if chars > settings.embeddings_max_chars:
        raise RagwayError(
            "too_large",
            f"Input too large: {chars} characters (at most {settings.embeddings_max_chars} "
            "in one request)",
        )
    document: dict[str, Any] = msgspec.json.decode(body)  # an object: `parse` said so
    extra = {key: value for key, value in document.items() if key not in KNOWN_FIELDS}
    bus = request.app[BUS]
    budget = bus.nc.max_payload - ENVELOPE_BYTES - len(encode(extra))
    batches = [
        EmbedBatch(model=form.model, input=part, dimensions=form.dimensions, extra=extra)
        for part in _batches(texts, settings.embeddings_batch_size, budget)
    ]
    # over a limit: 429 before any work is done; the ledger records it as an embedding
    metered = await request.app[METER].start(
        principal, form.model, body_bytes=len(body), max_tokens=0, stream=False, kind="embedding"
    )
    try:
        replies = await _embed(
            bus,
            batches,
            concurrency=settings.embeddings_concurrency,
            timeout=settings.completion_timeout_seconds,
        )
        reply = _reply(form, replies, len(texts))
    except asyncio.CancelledError:
        await metered.done(None, "cancelled")  # the estimate stands: it may have run
        raise
    except BaseException:
        await metered.done(NO_TOKENS, "error")
        raise
    tokens = reply.usage.prompt_tokens
    # several batches may be answered by several backends: the first one's is recorded
    backend = replies[0].backend if replies else None
    await metered.done({"prompt_tokens": tokens, "completion_tokens": 0}, "ok", backend=backend)
    return json_bytes(encode(reply))


def _texts(value: str | list[str | int | list[int]]) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not items:
        raise invalid("`input` is empty: send a string or a list of strings")
    texts: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise invalid(TOKEN_IDS)
        if not item:
            raise invalid(f"`input[{index}]` is an empty string (OpenAI refuses those too)")
        texts.append(item)
    return texts


def _batches(texts: list[str], size: int, budget: int) -> list[list[str]]:
    """At most `size` texts a batch, and no more JSON than one NATS message carries."""
    batches: list[list[str]] = []
    current: list[str] = []
    used = 0
    for index, text in enumerate(texts):
        length = len(encode(text))
        if length > budget:
            raise RagwayError(
                "too_large", f"`input[{index}]` is too large to embed ({length} bytes as JSON)"
            )
        if current and (len(current) == size or used + length > budget):
            batches.append(current)
            current, used = [], 0
        current.append(text)
        used += length
    batches.append(current)
    return batches


async def _embed(
    bus: Bus, batches: list[EmbedBatch], *, concurrency: int, timeout: float
) -> list[EmbeddedBatch]:
    """Every batch's vectors, in order; a few batches in flight at once. The first
    failure fails the request, and the batches still waiting are not sent."""
    turns = asyncio.Semaphore(concurrency)

    async def one(batch: EmbedBatch) -> EmbeddedBatch:
        async with turns:
            return await bus.call(subjects.EMBEDDINGS_CREATE, batch, timeout=timeout)

    if len(batches) == 1:
        return [await one(batches[0])]
    tasks = [asyncio.ensure_future(one(batch)) for batch in batches]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


def _reply(form: EmbeddingsRequest, replies: list[EmbeddedBatch], count: int) -> EmbeddingsReply:
    data: list[Embedding] = []
    tokens = 0
    as_base64 = form.encoding_format == "base64"
    for reply in replies:
        tokens += reply.prompt_tokens
        for row in float32.rows(reply.vectors, reply.dimensions):
            vector: list[float] | bytes = row if as_base64 else float32.unpack(row)
            data.append(Embedding(index=len(data), embedding=vector))
    if len(data) != count:
        raise RagwayError("internal", f"{len(data)} vectors came back for {count} texts")
    return EmbeddingsReply(
        data=data,
        model=form.model,
        usage=EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    for prefix in ("/api", "/api/v1"):
        name = prefix.strip("/").replace("/", "_") + "_embeddings"
        app.router.add_post(f"{prefix}/embeddings", embeddings, name=name)
        access[name] = "user"

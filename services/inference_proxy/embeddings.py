"""Embeddings of one batch by the named model, wherever it lives (EMBEDDINGS_CREATE).

ragway's own model is asked over NATS (the retrieval service runs it) and its reply
relayed as it came. A backend's model gets the batch in its own API, as Open WebUI sends
it: an OpenAI-compatible backend `POST /embeddings` (floats asked for: every such server
speaks them), Ollama `POST /api/embed` (Ollama's batch route). Their vectors come back as
float32 bytes, whatever the client asked for: the gateway writes the final encoding.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

import msgspec

from common import float32
from common.bus import Bus
from common.codec import encode
from common.errors import RagwayError
from contracts import subjects
from contracts.chat import BackendRef
from contracts.embeddings import EmbedBatch, EmbeddedBatch, EmbeddingModel
from inference_proxy.backend_http import BackendHTTPError, BackendPool
from inference_proxy.catalog import ModelCatalog
from inference_proxy.errors import error_for_exception, error_for_status
from inference_proxy.routing import Router
from inference_proxy.settings import Backend, Settings


class _OpenAIVector(msgspec.Struct):
    embedding: list[float] | str
    index: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0


class _OpenAIReply(msgspec.Struct):
    data: list[_OpenAIVector]
    usage: _Usage | None = None


class _OllamaReply(msgspec.Struct):
    embeddings: list[list[float]]
    prompt_eval_count: int = 0


class Embeddings:
    def __init__(
        self,
        bus: Bus,
        pool: BackendPool,
        catalog: ModelCatalog,
        settings: Settings,
        router: Router,
    ) -> None:
        self._bus = bus
        self._router = router
        self._pool = pool
        self._catalog = catalog
        self._timeout = settings.backend_timeout_seconds

    async def create(self, batch: EmbedBatch) -> EmbeddedBatch | msgspec.Raw:
        """The batch's vectors by `batch.model`; 404 for a model nobody serves."""
        if not batch.input:
            raise RagwayError("invalid", "No text to embed")
        target = await self._catalog.embedding_route(batch.model)
        if target is None:
            raise RagwayError("not_found", f"Model '{batch.model}' not found")
        if isinstance(target, EmbeddingModel):
            reply = await self._bus.call_raw(
                subjects.EMBEDDINGS_LOCAL, encode(batch), timeout=self._timeout
            )
            return msgspec.Raw(reply)
        backend = self._router.pick(target.backends)
        lease = self._router.take(backend)  # counted in flight for the balancing
        try:
            if backend.kind == "ollama":
                return await self._ollama(backend, batch)
            return await self._openai(backend, batch)
        finally:
            lease.release()

    async def _openai(self, backend: Backend, batch: EmbedBatch) -> EmbeddedBatch:
        body: dict[str, Any] = {
            **batch.extra,
            "model": batch.model,
            "input": batch.input,
            "encoding_format": "float",
        }
        if batch.dimensions is not None:
            body["dimensions"] = batch.dimensions
        headers = {"Content-Type": "application/json"}
        if backend.api_key:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        data = await self._post(backend, f"{backend.base_url}/embeddings", body, headers)
        try:
            reply = msgspec.json.decode(data, type=_OpenAIReply)
            ordered = sorted(enumerate(reply.data), key=lambda item: _index(item[1].index, item[0]))
            rows = [_floats(vector.embedding) for _, vector in ordered]
        except (msgspec.DecodeError, ValueError):
            raise _malformed(backend) from None
        tokens = reply.usage.prompt_tokens if reply.usage is not None else 0
        return _batch(backend, batch, rows, tokens)

    async def _ollama(self, backend: Backend, batch: EmbedBatch) -> EmbeddedBatch:
        body: dict[str, Any] = {**batch.extra, "model": batch.model, "input": batch.input}
        if batch.dimensions is not None:
            body["dimensions"] = batch.dimensions
        headers = {"Content-Type": "application/json"}
        data = await self._post(backend, f"{backend.base_url}/api/embed", body, headers)
        try:
            reply = msgspec.json.decode(data, type=_OllamaReply)
        except msgspec.DecodeError:
            raise _malformed(backend) from None
        return _batch(backend, batch, reply.embeddings, reply.prompt_eval_count)

    async def _post(
        self, backend: Backend, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._pool.post(url, encode(body), headers)
                try:
                    data = await response.read()
                finally:
                    response.release()  # closes instead when the body did not end
        except (BackendHTTPError, TimeoutError) as exc:
            raise error_for_exception(backend, exc, self._timeout) from None
        if response.status >= 300:
            raise error_for_status(backend, response.status, data)
        return data


def _index(index: int | None, position: int) -> int:
    return position if index is None else index


def _floats(embedding: list[float] | str) -> list[float]:
    """A vector sent as floats, or as base64 float32 bytes (a backend may answer so)."""
    if isinstance(embedding, list):
        return embedding
    try:
        data = base64.b64decode(embedding, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(data) % float32.SIZE:
        raise ValueError("not float32 bytes")
    return float32.unpack(data)


def _batch(
    backend: Backend, batch: EmbedBatch, rows: list[list[float]], tokens: int
) -> EmbeddedBatch:
    """The backend's vectors, checked: one per text, all of one length."""
    dimensions = len(rows[0]) if rows else 0
    if len(rows) != len(batch.input) or not dimensions:
        raise RagwayError(
            "bad_gateway",
            f"{backend.label} answered {len(rows)} vectors for "
            f"{len(batch.input)} texts",
        )
    if any(len(row) != dimensions for row in rows):
        raise RagwayError(
            "bad_gateway", f"{backend.label} answered vectors of unequal lengths"
        )
    vectors = float32.pack(rows)
    return EmbeddedBatch(
        dimensions=dimensions,
        vectors=vectors,
        prompt_tokens=tokens,
        backend=BackendRef(kind=backend.kind, idx=backend.idx),
    )


def _malformed(backend: Backend) -> RagwayError:
    return RagwayError("bad_gateway", f"{backend.label} sent malformed embeddings")

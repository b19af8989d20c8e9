"""Embeddings: OpenAI's `/v1/embeddings` request and reply, and what crosses NATS for them.

The gateway validates the HTTP body (`EmbeddingsRequest`), splits its texts into batches
and asks the inference-proxy for each (EMBEDDINGS_CREATE: an `EmbedBatch`). The proxy
knows where the named model lives: ragway's own model (the retrieval service holds it,
EMBEDDINGS_LOCAL) or a backend's (OpenAI-compatible `/embeddings`, Ollama `/api/embed`).
Vectors travel as float32 bytes (`EmbeddedBatch.vectors`), so a batch stays a small NATS
message whatever the client asked for; the gateway writes them as floats or base64.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from contracts.chat import BackendRef

EncodingFormat = Literal["float", "base64"]


class EmbeddingsRequest(msgspec.Struct, kw_only=True):
    """OpenAI's embeddings request. `input`: one string or a list of strings (OpenAI also
    takes token-id arrays; ragway refuses them with a 400 that says so)."""

    input: str | list[str | int | list[int]]
    model: str
    encoding_format: EncodingFormat = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    user: str | None = None


class Embedding(msgspec.Struct, kw_only=True):
    """One vector: floats, or (`encoding_format: base64`) its little-endian float32 bytes
    in base64, as OpenAI sends them."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | bytes


class EmbeddingsUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsReply(msgspec.Struct, kw_only=True):
    """OpenAI's `CreateEmbeddingResponse`."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


# --- over NATS -------------------------------------------------------------------------


class EmbedBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Some of a request's texts, in order. `extra`: the request's other fields, forwarded
    to a backend as the client sent them (e.g. Ollama's `truncate`, `keep_alive`)."""

    model: str
    input: list[str]
    dimensions: int | None = None
    extra: dict[str, Any] = {}


class EmbeddedBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The batch's vectors: `len(input)` rows of `dimensions` little-endian float32s."""

    dimensions: int
    vectors: bytes
    prompt_tokens: int = 0
    backend: BackendRef | None = None  # who answered (None: ragway's own model)


class EmbeddingModelsRequest(msgspec.Struct, frozen=True, kw_only=True):
    pass


class EmbeddingModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What `/api/models` says of an embedding model ragway serves itself."""

    dimensions: int
    # longer inputs are truncated to this many tokens (the model's trained length)
    max_input_tokens: int


class EmbeddingModel(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    info: EmbeddingModelInfo


class EmbeddingModels(msgspec.Struct, frozen=True, kw_only=True):
    models: list[EmbeddingModel]

"""Model listing: the Open WebUI `/api/models` entries, built by the inference-proxy."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.auth import Principal
from contracts.embeddings import EmbeddingModelInfo


class Model(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An `/api/models` entry. Fields clients always expect have no default, so
    `omit_defaults` only drops the backend-specific ones that do not apply."""

    id: str
    name: str
    object: Literal["model"]
    created: int
    owned_by: Literal["ollama", "openai", "function"]
    ollama: dict[str, Any] | None = None
    openai: dict[str, Any] | None = None
    urlIdx: int | None = None
    pipe: dict[str, Any] | None = None
    connection_type: str
    # set on an embedding model ragway serves itself (`POST /api/embeddings`, not chat)
    embedding: EmbeddingModelInfo | None = None


class ModelsRequest(msgspec.Struct, frozen=True, kw_only=True):
    refresh: bool = False
    # who asks: function models are listed only to those they are granted to (None: all,
    # for callers that list on nobody's behalf)
    principal: Principal | None = None


class ModelsReply(msgspec.Struct, frozen=True, kw_only=True):
    data: list[Model]

"""Retrieval: scoped hybrid search, and the vector writes ingestion workers send.

The retrieval service owns the vector store (in the embedded run, Qdrant's engine
in-process can be opened by one process only), so ingestion workers embed and send
vectors here; they never open the store themselves.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.auth import Principal
from contracts.filters import MetadataFilter

SearchMode = Literal["hybrid", "dense", "sparse"]


class ScopeItem(msgspec.Struct, frozen=True, kw_only=True):
    """A file or collection to search; `filter` keeps the chunks whose upload metadata
    passes it (inside the search: k chunks come back when k pass)."""

    type: Literal["file", "collection"]
    id: str
    full_context: bool = False
    filter: MetadataFilter | None = None


class RetrievalQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Search `items` for `query` as `principal`: items they may not read are not_found."""

    principal: Principal
    query: str
    items: list[ScopeItem]
    k: int = 4
    mode: SearchMode = "hybrid"
    score_threshold: float | None = None
    wait_seconds: float = 0.0
    # How long a file that is keyword-searchable but still being embedded is waited for
    # before it is searched as it is (see `HitGroup.partial`); None: `wait_seconds`.
    complete_wait_seconds: float | None = None


class ChunkHit(msgspec.Struct, kw_only=True):
    text: str
    score: float
    metadata: dict[str, Any]


class PartialFile(msgspec.Struct, kw_only=True):
    """A file searched before its dense vectors were all written: BM25 covered every
    chunk, dense similarity only the `chunks_embedded` that had one."""

    file_id: str
    name: str
    chunks_embedded: int
    chunks_total: int


class HitGroup(msgspec.Struct, kw_only=True):
    """The hits of one scope item, best first; `partial` names its files still embedding."""

    type: Literal["file", "collection"]
    id: str
    name: str
    hits: list[ChunkHit]
    partial: list[PartialFile] = []


class RetrievalResult(msgspec.Struct, kw_only=True):
    groups: list[HitGroup]


class ChunkVector(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    index: int
    text: str
    dense: list[float]
    sparse_indices: list[int]
    sparse_values: list[float]
    metadata: dict[str, Any] = {}


class UpsertChunks(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str
    owner: str
    name: str
    chunks: list[ChunkVector]
    # the model that made the dense vectors (`Embedder.model_name`); empty: the model
    # retrieval is configured with. A rebuild for a new model writes both indexes.
    model: str = ""


class CopyFileVectors(msgspec.Struct, frozen=True, kw_only=True):
    """Reuse the vectors of identical content already ingested under another file id."""

    source_file_id: str
    target_file_id: str
    owner: str
    name: str


class FileVectorsRef(msgspec.Struct, frozen=True, kw_only=True):
    file_id: str


class VectorsWritten(msgspec.Struct, frozen=True, kw_only=True):
    count: int


class StoredChunks(msgspec.Struct, frozen=True, kw_only=True):
    """What the store holds for one file: its point count and chunk indexes, in order."""

    file_id: str
    count: int
    indexes: list[int]


class VectorIndex(msgspec.Struct, kw_only=True):
    """One vector collection and the embedding model that built it; progress while built."""

    collection: str
    model: str  # the embedder's model name: names the vectors exactly (int8 is not fp32)
    dim: int
    # how that model is configured (`RAGWAY_EMBEDDING_MODEL`, `..._QUANTIZED`)
    model_setting: str
    quantized: bool
    state: Literal["ready", "building"] = "ready"
    files_total: int = 0
    files_done: int = 0
    chunks_done: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float = 0.0


class IndexStatusRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal


class IndexStatus(msgspec.Struct, kw_only=True):
    """The collection searches use, and the one being built for a newly configured model."""

    configured_model: str
    batch_size: int
    active: VectorIndex | None
    building: VectorIndex | None = None

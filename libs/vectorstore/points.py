"""What goes into the vector store and what comes back out."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from contracts.filters import MetadataFilter
from embedding.vectors import DenseVector, SparseVector

# Fixed forever: point ids derive from it, so a redelivered chunk overwrites itself.
POINT_NAMESPACE = uuid.UUID("6b3f7c2e-4d1a-5e8b-9c0f-2a7d3e1b5c48")

DENSE = "dense"  # name of the dense vector in the collection
SPARSE = "bm25"  # name of the sparse vector (IDF modifier: BM25 scoring in the engine)
# payload key: the ids of the knowledge collections a chunk's file belongs to (a keyword
# array with a payload index), so a collection is searched by one indexed condition
# instead of a list of its file ids
COLLECTIONS = "collections"
# payload key: the upload's own `metadata` object (its record's `meta.data`), which
# `SearchQuery.filter` conditions address (`year` is `file_metadata.year`)
FILE_METADATA = "file_metadata"

SearchMode = Literal["hybrid", "dense", "sparse"]
# How "hybrid" fuses its dense and BM25 candidates: reciprocal rank fusion (with the
# query's weights) or Qdrant's distribution-based score fusion (weights ignored).
Fusion = Literal["rrf", "dbsf"]


def point_id(file_id: str, chunk_index: int) -> str:
    """Deterministic UUID of a file's chunk."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{file_id}:{chunk_index}"))


class ChunkPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One chunk of one file, embedded.

    The stored payload is `payload` plus `file_id`, `chunk_index` and `text` (these three
    win over same-named keys in `payload`). Put e.g. `owner`, `name`, `hash` in `payload`.
    An empty `dense` stores a keyword-only point (BM25 alone, until its dense vector).
    """

    file_id: str
    chunk_index: int
    text: str
    dense: DenseVector
    sparse: SparseVector
    payload: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return point_id(self.file_id, self.chunk_index)

    def full_payload(self) -> dict[str, Any]:
        return {
            **self.payload,
            "file_id": self.file_id,
            "chunk_index": self.chunk_index,
            "text": self.text,
        }


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A scoped search: the chunks of `file_ids`, or, when `collection` is set, the chunks
    whose `collections` payload holds it, minus those of `exclude_file_ids` (then
    `file_ids` is ignored). No scope (no files, no collection) finds nothing.

    `dense` is needed for "dense" and "hybrid", `sparse` for "sparse" and "hybrid".
    `score_threshold` applies to the dense cosine similarity ("dense", and the dense
    candidates of "hybrid") or to the BM25 score ("sparse"); fused RRF scores are ranks,
    not similarities, so no threshold is applied to them.

    For "hybrid", `dense_weight` and `sparse_weight` go to Qdrant's weighted RRF, whose
    score is 1 / ((rank + 1) / weight + k - 1): with k = 60 a weight barely changes the
    ranking (and a large one flattens that list's rank differences). A weight of 0 leaves
    that list out altogether: the search is then single-mode.

    `filter` (on the upload's metadata) is part of the engine's filter, with the scope:
    the best `limit` chunks among those that pass it come back, never fewer when enough
    pass. A filtered query is searched exactly (no HNSW graph), so a selective filter
    cannot strand the search in a part of the graph with no matches.
    """

    file_ids: list[str] = []
    collection: str | None = None
    exclude_file_ids: list[str] = []
    dense: DenseVector | None = None
    sparse: SparseVector | None = None
    limit: int = 10
    mode: SearchMode = "hybrid"
    score_threshold: float | None = None
    fusion: Fusion = "rrf"
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    filter: MetadataFilter | None = None

    def has_scope(self) -> bool:
        return bool(self.collection) or bool(self.file_ids)

    def effective_mode(self) -> SearchMode:
        """The mode actually run: hybrid with a zero weight is single-mode."""
        if self.mode == "hybrid" and self.dense_weight <= 0:
            return "sparse"
        if self.mode == "hybrid" and self.sparse_weight <= 0:
            return "dense"
        return self.mode


class Hit(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    score: float
    payload: dict[str, Any]

    @property
    def file_id(self) -> str:
        return str(self.payload.get("file_id", ""))

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))

    @property
    def chunk_index(self) -> int:
        return int(self.payload.get("chunk_index", 0))

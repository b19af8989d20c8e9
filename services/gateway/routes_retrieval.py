"""Open WebUI's retrieval query routes: search files or collections without a chat.

Replies take Chroma's shape, which Open WebUI kept: one ranked list, best first, wrapped
in an outer list (`{"documents": [[...]], "metadatas": [[...]], "distances": [[...]]}`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from contracts import subjects
from contracts.filters import MetadataFilter
from contracts.retrieval import (
    ChunkHit,
    IndexStatus,
    IndexStatusRequest,
    RetrievalResult,
    ScopeItem,
    SearchMode,
)
from gateway import rag
from gateway.bodies import json_value, parse, read_body
from gateway.state import BUS, SETTINGS, Access, principal_of

FILE_COLLECTION_PREFIX = "file-"
MAX_K = 100
K = Annotated[int, msgspec.Meta(ge=1, le=MAX_K)]
Query = Annotated[str, msgspec.Meta(min_length=1)]


class QueryDocForm(msgspec.Struct, kw_only=True):
    collection_name: Annotated[str, msgspec.Meta(min_length=1)]
    query: Query
    k: K | None = None
    # Open WebUI's switch; `mode` (ragway) picks dense, sparse or hybrid explicitly
    hybrid: bool | None = None
    mode: SearchMode | None = None
    # ragway's: only chunks whose upload metadata passes it (see contracts.filters)
    filter: MetadataFilter | None = None


class QueryCollectionForm(msgspec.Struct, kw_only=True):
    collection_names: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_K)]
    query: Query
    k: K | None = None
    hybrid: bool | None = None
    mode: SearchMode | None = None
    filter: MetadataFilter | None = None


class QueryReply(msgspec.Struct, kw_only=True):
    documents: list[list[str]]
    metadatas: list[list[dict[str, object]]]
    distances: list[list[float]]


class EmbeddingConfigReply(msgspec.Struct, kw_only=True):
    """Open WebUI's embedding settings (the fields ragway has: its own local model) and
    `index`: the collection searches use, and the one built for a newly configured model."""

    status: bool
    RAG_EMBEDDING_ENGINE: str
    RAG_EMBEDDING_MODEL: str
    RAG_EMBEDDING_BATCH_SIZE: int
    index: IndexStatus


def search_mode(mode: SearchMode | None, hybrid: bool | None) -> SearchMode:
    if mode is not None:
        return mode
    return "dense" if hybrid is False else "hybrid"


def file_id_of(collection_name: str) -> str:
    """`file-<id>` (Open WebUI's per-file collection) or the bare id."""
    return collection_name.removeprefix(FILE_COLLECTION_PREFIX)


def ranked(result: RetrievalResult, k: int) -> QueryReply:
    """Every group's hits merged into one list, best first, at most k."""
    hits: list[ChunkHit] = [hit for group in result.groups for hit in group.hits]
    hits.sort(key=lambda hit: hit.score, reverse=True)
    hits = hits[:k]
    return QueryReply(
        documents=[[hit.text for hit in hits]],
        metadatas=[[hit.metadata for hit in hits]],
        distances=[[hit.score for hit in hits]],
    )


async def _search(
    request: web.Request, query: str, items: list[ScopeItem], k: int | None, mode: SearchMode
) -> web.Response:
    settings = request.app[SETTINGS]
    k = k or settings.rag_top_k
    result = await rag.retrieve(
        request.app[BUS],
        principal_of(request),
        query,
        items,
        k=k,
        wait_seconds=settings.rag_wait_seconds,
        reply_seconds=settings.request_timeout_seconds,
        mode=mode,
        complete_wait_seconds=settings.rag_complete_wait_seconds,
    )
    return json_value(ranked(result, k))


async def query_doc(request: web.Request) -> web.Response:
    form = parse(await read_body(request), QueryDocForm)
    items = [ScopeItem(type="file", id=file_id_of(form.collection_name), filter=form.filter)]
    return await _search(request, form.query, items, form.k, search_mode(form.mode, form.hybrid))


async def query_collection(request: web.Request) -> web.Response:
    form = parse(await read_body(request), QueryCollectionForm)
    kind: Literal["file", "collection"]
    items: list[ScopeItem] = []
    for name in dict.fromkeys(form.collection_names):  # once each, in order
        kind = "file" if name.startswith(FILE_COLLECTION_PREFIX) else "collection"
        items.append(ScopeItem(type=kind, id=file_id_of(name), filter=form.filter))
    return await _search(request, form.query, items, form.k, search_mode(form.mode, form.hybrid))


async def embedding_config(request: web.Request) -> web.Response:
    """Admins: the embedding model and the vector index's state (a rebuild's progress)."""
    settings = request.app[SETTINGS]
    status: IndexStatus = await request.app[BUS].call(
        subjects.RETRIEVAL_INDEX,
        IndexStatusRequest(principal=principal_of(request)),
        timeout=settings.request_timeout_seconds,
    )
    return json_value(
        EmbeddingConfigReply(
            status=True,
            RAG_EMBEDDING_ENGINE="",  # Open WebUI's name for its local embedder
            RAG_EMBEDDING_MODEL=status.configured_model,
            RAG_EMBEDDING_BATCH_SIZE=status.batch_size,
            index=status,
        )
    )


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    base = "/api/v1/retrieval"
    app.router.add_get(f"{base}/embedding", embedding_config, name="retrieval_embedding")
    access["retrieval_embedding"] = "admin"
    app.router.add_post(f"{base}/query/doc", query_doc, name="retrieval_query_doc")
    app.router.add_post(
        f"{base}/query/collection", query_collection, name="retrieval_query_collection"
    )
    access["retrieval_query_doc"] = "user"
    access["retrieval_query_collection"] = "user"

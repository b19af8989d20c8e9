"""The retrieval service: vector writes, knowledge collections, file deletion, scoped search."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from catalog.files import FileCatalog
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts import subjects
from contracts.files import DeleteFileRequest, UserDataPurge
from contracts.knowledge import (
    KnowledgeCreate,
    KnowledgeFileChange,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeUpdate,
)
from contracts.retrieval import CopyFileVectors, FileVectorsRef, RetrievalQuery, UpsertChunks
from embedding.embedder import Embedder
from retrieval.engines import load_embedder, open_store
from retrieval.knowledge import KnowledgeHandlers
from retrieval.knowledge_store import KnowledgeStore
from retrieval.known_files import KnownFiles, known_files
from retrieval.scope import ScopeResolver
from retrieval.search import Searcher
from retrieval.settings import Settings
from retrieval.vectors import VectorHandlers
from vectorstore.store import VectorStore


@dataclass(frozen=True)
class Retrieval:
    """What a running service holds (tests use it to look inside the store)."""

    settings: Settings
    embedder: Embedder
    store: VectorStore
    known: KnownFiles
    knowledge: KnowledgeHandlers
    vectors: VectorHandlers
    searcher: Searcher


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Retrieval]:
    """Connect, open the model and the store, serve every endpoint until exit, then drain."""
    async with AsyncExitStack() as stack:
        embedder = await load_embedder(settings)
        store = await stack.enter_async_context(open_store(settings, embedder.dimension))
        nc = await stack.enter_async_context(
            connect_nats(settings.nats_servers(), name=subjects.RETRIEVAL_SERVICE)
        )
        js = nc.jetstream()
        files = await FileCatalog.open(js, settings.bucket_prefix, settings.kv_replicas)
        knowledge_store = await KnowledgeStore.open(
            js, settings.bucket_prefix, settings.kv_replicas
        )
        known = await stack.enter_async_context(known_files(files))
        knowledge = KnowledgeHandlers(knowledge_store, known)
        vectors = VectorHandlers(store, embedder, files, known, knowledge)
        resolver = ScopeResolver(files, known, knowledge_store)
        searcher = Searcher(settings, resolver, embedder, store)
        host = await stack.enter_async_context(ServiceHost(nc, subjects.RETRIEVAL_SERVICE))
        endpoints = [
            (subjects.VECTORS_UPSERT, vectors.upsert, UpsertChunks),
            (subjects.VECTORS_COPY, vectors.copy, CopyFileVectors),
            (subjects.VECTORS_DELETE, vectors.delete, FileVectorsRef),
            (subjects.VECTORS_STORED, vectors.stored, FileVectorsRef),
            (subjects.FILES_DELETE, vectors.delete_file, DeleteFileRequest),
            (subjects.USER_DATA_PURGE, vectors.purge_user, UserDataPurge),
            (subjects.RETRIEVAL_QUERY, searcher.query, RetrievalQuery),
            (subjects.KNOWLEDGE_CREATE, knowledge.create, KnowledgeCreate),
            (subjects.KNOWLEDGE_LIST, knowledge.list, KnowledgeListRequest),
            (subjects.KNOWLEDGE_GET, knowledge.get, KnowledgeRef),
            (subjects.KNOWLEDGE_UPDATE, knowledge.update, KnowledgeUpdate),
            (subjects.KNOWLEDGE_FILE_ADD, knowledge.add_file, KnowledgeFileChange),
            (subjects.KNOWLEDGE_FILE_REMOVE, knowledge.remove_file, KnowledgeFileChange),
            (subjects.KNOWLEDGE_RESET, knowledge.reset, KnowledgeRef),
            (subjects.KNOWLEDGE_DELETE, knowledge.delete, KnowledgeRef),
        ]
        for subject, handler, request_type in endpoints:
            await host.add(subject, handler, request_type)  # type: ignore[arg-type]
        yield Retrieval(settings, embedder, store, known, knowledge, vectors, searcher)

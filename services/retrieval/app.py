"""The retrieval service: vector writes, knowledge collections, file deletion, scoped search."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from catalog.files import FileCatalog
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts import subjects
from embedding.embedder import Embedder
from retrieval.embeddings import EmbeddingHandlers
from retrieval.engines import Index, load_embedder, open_index
from retrieval.generation import Generation
from retrieval.indexed_store import IndexedStore
from retrieval.knowledge import KnowledgeHandlers
from retrieval.knowledge_files import KnowledgeFileHandlers
from retrieval.knowledge_store import KnowledgeStore
from retrieval.known_files import KnownFiles, known_files
from retrieval.memberships import Memberships, memberships
from retrieval.model_index import IndexStatusHandler
from retrieval.rebuild import Rebuild
from retrieval.rerank import open_reranker
from retrieval.scope import ScopeResolver
from retrieval.search import Searcher
from retrieval.settings import Settings
from retrieval.vectors import VectorHandlers
from vectorstore.store import VectorStore

log = structlog.get_logger()

# how long a replaced collection waits for the queries still searching it before it goes
DRAIN_S = 60.0


@dataclass(frozen=True)
class Retrieval:
    """What a running service holds (tests use it to look inside the store)."""

    settings: Settings
    embedder: Embedder
    store: IndexedStore
    known: KnownFiles
    memberships: Memberships
    knowledge: KnowledgeHandlers
    vectors: VectorHandlers
    searcher: Searcher
    index: Index
    rebuild: Rebuild | None


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Retrieval]:
    """Connect, open the model and the store, serve every endpoint until exit, then drain."""
    async with AsyncExitStack() as stack:
        embedder = await load_embedder(settings)
        nc = await stack.enter_async_context(
            connect_nats(settings.nats_servers(), name=subjects.RETRIEVAL_SERVICE)
        )
        js = nc.jetstream()
        index = await stack.enter_async_context(open_index(settings, js, embedder))
        store = index.store
        files = await FileCatalog.open(js, settings.bucket_prefix, settings.kv_replicas)
        knowledge_store = await KnowledgeStore.open(
            js, settings.bucket_prefix, settings.kv_replicas
        )
        await knowledge_store.migrate_to_grants()
        known = await stack.enter_async_context(known_files(files))
        members = await stack.enter_async_context(memberships(store, knowledge_store))
        knowledge = KnowledgeHandlers(knowledge_store, known, members)
        vectors = VectorHandlers(store, embedder, files, known, knowledge, members)
        collection_files = KnowledgeFileHandlers(
            knowledge, knowledge_store, known, vectors.delete_file
        )
        resolver = ScopeResolver(files, known, knowledge_store, members)
        reranker = await stack.enter_async_context(
            open_reranker(
                settings.reranker_url,
                protocol=settings.reranker_protocol,
                top_n=settings.reranker_top_n,
                timeout_seconds=settings.reranker_timeout_seconds,
                api_key=settings.reranker_api_key,
                model=settings.reranker_model,
            )
        )
        searcher = Searcher(settings, resolver, index.generation, members, reranker)
        host = await stack.enter_async_context(
            ServiceHost(nc, subjects.RETRIEVAL_SERVICE, max_in_flight=settings.max_in_flight)
        )
        await host.serve(subjects.VECTORS_UPSERT, vectors.upsert)
        await host.serve(subjects.VECTORS_COPY, vectors.copy)
        await host.serve(subjects.VECTORS_DELETE, vectors.delete)
        await host.serve(subjects.VECTORS_STORED, vectors.stored)
        await host.serve(subjects.FILES_DELETE, vectors.delete_file)
        await host.serve(subjects.USER_DATA_PURGE, vectors.purge_user)
        await host.serve(subjects.RETRIEVAL_QUERY, searcher.query)
        status = IndexStatusHandler(index.book, settings.embedding)
        await host.serve(subjects.RETRIEVAL_INDEX, status.status)
        embeddings = EmbeddingHandlers(embedder, settings)
        await host.serve(subjects.EMBEDDING_MODELS, embeddings.models)
        await host.serve(subjects.EMBEDDINGS_LOCAL, embeddings.embed)
        await host.serve(subjects.KNOWLEDGE_CREATE, knowledge.create)
        await host.serve(subjects.KNOWLEDGE_LIST, knowledge.list)
        await host.serve(subjects.KNOWLEDGE_GET, knowledge.get)
        await host.serve(subjects.KNOWLEDGE_UPDATE, knowledge.update)
        await host.serve(subjects.KNOWLEDGE_ACCESS_UPDATE, knowledge.update_access)
        await host.serve(subjects.KNOWLEDGE_FILE_ADD, knowledge.add_file)
        await host.serve(subjects.KNOWLEDGE_FILE_REMOVE, knowledge.remove_file)
        await host.serve(subjects.KNOWLEDGE_RESET, knowledge.reset)
        await host.serve(subjects.KNOWLEDGE_DELETE, knowledge.delete)
        await host.serve(subjects.KNOWLEDGE_FILES, collection_files.files)
        await host.serve(subjects.KNOWLEDGE_FILES_BATCH, collection_files.batch_add)
        await host.serve(subjects.KNOWLEDGE_SYNC_DIFF, collection_files.sync_diff)
        await host.serve(subjects.KNOWLEDGE_SYNC_CLEANUP, collection_files.sync_cleanup)
        rebuild = None
        if index.building is not None:
            rebuild = Rebuild(
                index.book,
                store,
                index.building,
                embedder,
                swap_searches(settings, searcher, store, embedder),
            )
            task = asyncio.create_task(rebuild.run())
            stack.push_async_callback(_cancel, task)
        yield Retrieval(
            settings, embedder, store, known, members, knowledge, vectors, searcher, index, rebuild
        )


def swap_searches(
    settings: Settings, searcher: Searcher, store: IndexedStore, embedder: Embedder
) -> Callable[[VectorStore], Awaitable[None]]:
    """After a rebuild: searches move to the new collection (`store.active` now) with the
    configured model; the old collection is dropped once no query searches it."""

    async def swapped(old_store: VectorStore) -> None:
        new = Generation.of(
            store.active,
            embedder.model_name,
            embedder,
            embedder,
            settings.dense_scripts,
            settings.query_cache_size,
        )
        old = searcher.use(new)
        if not await old.drained(DRAIN_S):
            log.warning("index_old_collection_busy", queries=old.in_flight)
        try:
            await old_store.drop()
        except Exception:  # the swap stands; the old collection is only left behind
            log.exception("index_old_collection_not_dropped", model=old.model)

    return swapped


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

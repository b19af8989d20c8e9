"""The embedder and the vector store this service owns, built from its settings.

`open_index` reads which collection is active and which model built it (`model_index`):
the configured model's own collection is opened as it is; another model's is opened for
searches while the configured model's collection is built (`rebuild.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec
import structlog
from nats.js import JetStreamContext

from embedding.embedder import Embedder
from retrieval.generation import Generation
from retrieval.indexed_store import IndexedStore
from retrieval.model_index import (
    ACTIVE,
    BUILDING,
    IndexBook,
    IndexRecord,
    collection_name,
    record_for,
    settings_of,
)
from retrieval.settings import Settings
from vectorstore.factory import connect_store
from vectorstore.store import VectorStore

log = structlog.get_logger()


async def load_embedder(settings: Settings) -> Embedder:
    """Load the model in a thread (a second or so) so the event loop keeps answering."""
    return await asyncio.to_thread(Embedder, settings.embedding)


async def open_collection(settings: Settings, collection: str, dim: int) -> VectorStore:
    """The Qdrant server's collection when `qdrant_url` is set, else the embedded engine's
    under data_dir."""
    store = await connect_store(
        dim=dim,
        edge_path=settings.edge_path(),
        collection=collection,
        qdrant_url=settings.qdrant_url,
        qdrant_api_key=settings.qdrant_api_key,
        edge_search_threads=settings.vector_search_threads,
    )
    engine = "server" if settings.qdrant_url else "edge"
    log.info("vector_store_ready", engine=engine, collection=collection, dim=dim)
    return store


async def drop_collection(settings: Settings, record: IndexRecord) -> None:
    """Remove a collection no record will use again (an abandoned build)."""
    store = await open_collection(settings, record.collection, record.dim)
    await store.drop()


@dataclass
class Index:
    """The store the service writes through, what searches use now, and the build of the
    configured model's collection when another model's is active."""

    book: IndexBook
    store: IndexedStore
    generation: Generation
    building: IndexRecord | None
    embedder: Embedder


async def _load_old(settings: Settings, active: IndexRecord) -> Embedder | None:
    """The model that built the active collection, for queries until the swap; None when
    it cannot be loaded here (searches then run on BM25 until the swap)."""
    try:
        return await asyncio.to_thread(Embedder, settings_of(active, settings.embedding))
    except Exception as exc:
        log.warning("index_old_model_unavailable", model=active.model, error=str(exc))
        return None


@asynccontextmanager
async def open_index(
    settings: Settings, js: JetStreamContext, embedder: Embedder
) -> AsyncIterator[Index]:
    book = await IndexBook.open(js, settings.bucket_prefix, settings.kv_replicas)
    model = embedder.model_name
    active = await book.get(ACTIVE)
    if active is None:  # a new deployment, or a store made before the record existed
        active = record_for(settings.collection, model, embedder.dimension, settings.embedding)
        await book.put(ACTIVE, active)
    building = await book.get(BUILDING)
    # a build for a model no longer configured (the configuration went back), or one
    # swapped in already (a crash between the two writes of the swap)
    if building is not None and (building.model != model or building.model == active.model):
        log.info("index_build_abandoned", model=building.model, collection=building.collection)
        if building.collection != active.collection:
            await drop_collection(settings, building)
        await book.delete(BUILDING)
        building = None
    store = await open_collection(settings, active.collection, active.dim)
    indexed = IndexedStore(store, active.model, embedder)
    try:
        if active.model == model:
            generation = Generation.of(
                store,
                model,
                embedder,
                embedder,
                settings.dense_scripts,
                settings.query_cache_size,
            )
        else:
            if building is None:
                building = record_for(
                    collection_name(settings.collection, model),
                    model,
                    embedder.dimension,
                    settings.embedding,
                )
                building = msgspec.structs.replace(building, state="building")
                # a collection left under that name (a swap that crashed before its drop)
                await drop_collection(settings, building)
                await book.put(BUILDING, building)
            new = await open_collection(settings, building.collection, building.dim)
            old_embedder = await _load_old(settings, active)
            indexed.start_building(new, old_embedder)
            generation = Generation.of(
                store,
                active.model,
                old_embedder,
                embedder,
                settings.dense_scripts,
                settings.query_cache_size,
            )
            log.info(
                "index_model_changed",
                active=active.model,
                configured=model,
                building=building.collection,
            )
        yield Index(book, indexed, generation, building, embedder)
    finally:
        await indexed.close()

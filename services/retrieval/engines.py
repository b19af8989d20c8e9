"""The embedder and the vector store this service owns, built from its settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from embedding.embedder import Embedder
from retrieval.settings import Settings
from vectorstore.factory import open_store as open_vector_store
from vectorstore.store import VectorStore

log = structlog.get_logger()


async def load_embedder(settings: Settings) -> Embedder:
    """Load the model in a thread (a second or so) so the event loop keeps answering."""
    return await asyncio.to_thread(Embedder, settings.embedding)


@asynccontextmanager
async def open_store(settings: Settings, dim: int) -> AsyncIterator[VectorStore]:
    """The Qdrant server when `qdrant_url` is set, else the embedded engine under data_dir."""
    async with open_vector_store(
        dim=dim,
        edge_path=settings.edge_path(),
        collection=settings.collection,
        qdrant_url=settings.qdrant_url,
        qdrant_api_key=settings.qdrant_api_key,
        edge_search_threads=settings.vector_search_threads,
    ) as store:
        log.info("vector_store_ready", engine="server" if settings.qdrant_url else "edge", dim=dim)
        yield store

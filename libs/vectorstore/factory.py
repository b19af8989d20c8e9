"""Open the configured engine as a context manager that closes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from vectorstore.store import VectorStore


async def connect_store(
    *,
    dim: int,
    edge_path: Path,
    collection: str = "ragway_chunks",
    qdrant_url: str = "",
    qdrant_api_key: str = "",
    edge_search_threads: int = 0,
) -> VectorStore:
    """A ready store (the caller closes it): a Qdrant server if `qdrant_url` is set, else
    the embedded engine in `<edge_path>/<collection>`, owned by this process alone;
    `edge_search_threads` sizes its search pool (0: as stored)."""
    store: VectorStore
    if qdrant_url:
        from vectorstore.server import ServerStore

        store = ServerStore.connect(qdrant_url, collection, qdrant_api_key)
    else:
        from vectorstore.edge import EdgeStore

        store = EdgeStore(edge_path / collection, search_threads=edge_search_threads)
    try:
        await store.ensure_collection(dim)
    except BaseException:
        await store.close()
        raise
    return store


@asynccontextmanager
async def open_store(
    *,
    dim: int,
    edge_path: Path,
    collection: str = "ragway_chunks",
    qdrant_url: str = "",
    qdrant_api_key: str = "",
    edge_search_threads: int = 0,
) -> AsyncIterator[VectorStore]:
    """`connect_store` as a context manager that closes the store."""
    store = await connect_store(
        dim=dim,
        edge_path=edge_path,
        collection=collection,
        qdrant_url=qdrant_url,
        qdrant_api_key=qdrant_api_key,
        edge_search_threads=edge_search_threads,
    )
    try:
        yield store
    finally:
        await store.close()

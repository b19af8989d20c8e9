"""The retrieval service in-process (the store's owner) and helpers that stand in for the gateway.

Each test module gets its own bucket prefix, and each ingestion run its own job stream,
subject and consumer, so jobs never reach another module's workers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client

from catalog.files import FileCatalog
from embedding.embedder import read_manifest
from embedding.settings import service_embedder
from ingestion.app import Settings
from retrieval.app import Retrieval, serve
from retrieval.settings import Settings as RetrievalSettings


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"i{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
async def retrieval(
    nats_url: str, prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Retrieval]:
    settings = RetrievalSettings(
        nats_url=nats_url,
        bucket_prefix=prefix,
        data_dir=str(tmp_path_factory.mktemp("retrieval")),
        log_level="warning",
    )
    try:
        read_manifest(settings.embedding.resolved_model_dir())
    except Exception:
        pytest.fail("embedding model not built: run `make setup` (python -m embedding.build)")
    async with serve(settings) as handle:
        yield handle


@pytest.fixture(scope="module")
async def catalog(retrieval: Retrieval, module_nc: Client, prefix: str) -> FileCatalog:
    return await FileCatalog.open(module_nc.jetstream(), prefix)


@pytest.fixture
def settings(nats_url: str, prefix: str) -> Settings:
    """Ingestion settings on a job queue of this test's own."""
    queue = uuid.uuid4().hex[:10]
    return Settings(
        nats_url=nats_url,
        log_level="warning",
        bucket_prefix=prefix,
        ingest_stream=f"INGEST_{queue}",
        ingest_subject=f"test.ingest.{queue}",
        ingest_consumer=f"workers_{queue}",
        chunk_size=300,
        chunk_overlap=30,
        embedding=msgspec.structs.replace(service_embedder(), batch_size=8),
        dense_range_chunks=1000,  # one job per file unless a test splits on purpose
        ack_wait_seconds=3.0,
        nak_delay_seconds=0.2,
    )

"""The retrieval service in-process on the session nats-server, with the real embedder.

Each test module gets its own service: a unique bucket prefix and a fresh data dir.
Tests talk to it over NATS only; they create file records with `FileCatalog` directly
(standing in for the gateway and the ingestion workers).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from catalog.files import FileCatalog
from embedding.embedder import read_manifest
from retrieval.app import Retrieval, serve
from retrieval.settings import Settings


@pytest.fixture(scope="module")
async def retrieval(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Retrieval]:
    settings = Settings(
        nats_url=nats_url,
        bucket_prefix=f"t{uuid.uuid4().hex[:10]}",
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
async def catalog(retrieval: Retrieval, module_nc: Client) -> FileCatalog:
    return await FileCatalog.open(module_nc.jetstream(), retrieval.settings.bucket_prefix)

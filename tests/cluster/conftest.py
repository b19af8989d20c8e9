"""One scaled-out deployment shared by the cluster tests (it takes ~15-30 s to start)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from stack.nats_cluster import NatsCluster
from tests.cluster.deployment import Deployment
from tests.fakes.openai_fake import OpenAIFake


@pytest.fixture(scope="package")
async def backend() -> AsyncIterator[OpenAIFake]:
    """The model backend every chat reaches: an OpenAI-compatible fake in the test process."""
    fake = OpenAIFake(tokens_per_reply=5, token_delay=0.01)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="package")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, backend: OpenAIFake
) -> AsyncIterator[Deployment]:
    base: Path = tmp_path_factory.mktemp("cluster")
    deployed = Deployment(
        cluster=NatsCluster.on_free_ports(base / "nats"),
        log_dir=base / "logs",
        backend_url=backend.base_url,
        backend_key=backend.api_key or "",
    )
    try:
        await asyncio.to_thread(deployed.start)
        yield deployed
    finally:
        await asyncio.to_thread(deployed.stop)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session

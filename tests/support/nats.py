"""Fixtures for every test: logging, a real nats-server per test module, connections to it.

One server per module (it starts in ~50 ms): services of one kind share a queue group,
so a service left running by one module would otherwise answer another module's requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.bus import Bus
from common.logging import configure_logging
from common.nats_conn import connect_nats
from stack.nats_server import NatsServer, NatsServerConfig, free_port


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    configure_logging(level="warning", json=True)


@pytest.fixture(scope="module")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    store: Path = tmp_path_factory.mktemp("nats")
    server = NatsServer(NatsServerConfig(port=free_port(), store_dir=store))
    await server.astart()
    yield server
    await server.astop()


@pytest.fixture(scope="module")
async def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    async with connect_nats([nats_url], name="test") as client:
        yield client


@pytest.fixture
async def bus(nc: Client) -> Bus:
    return Bus(nc)


@pytest.fixture(scope="module")
async def module_nc(nats_url: str) -> AsyncIterator[Client]:
    """A connection shared by one module's tests (and its module-scoped services)."""
    async with connect_nats([nats_url], name="test-module") as client:
        yield client


@pytest.fixture(scope="module")
def mbus(module_nc: Client) -> Bus:
    return Bus(module_nc)

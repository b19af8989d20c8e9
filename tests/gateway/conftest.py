"""A gateway on a free port, on the session nats-server, with no other service running."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.app import GatewayHandle, Settings, serve


@pytest.fixture
async def gateway(nats_url: str) -> AsyncIterator[GatewayHandle]:
    settings = Settings(
        nats_url=nats_url,
        port=0,
        request_timeout_seconds=2,
        health_timeout_seconds=1.0,
        health_services="gw-test-probe-a,gw-test-probe-b",
    )
    async with serve(settings) as handle:
        yield handle


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session

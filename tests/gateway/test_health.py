"""/health asks each backend service's nats.micro ping and names the silent ones."""

from __future__ import annotations

import aiohttp
from nats.aio.client import Client

from common.service import ServiceHost
from gateway.app import GatewayHandle


async def test_health_names_the_missing_service_then_reports_all_up(
    gateway: GatewayHandle, http: aiohttp.ClientSession, nc: Client
) -> None:
    async with ServiceHost(nc, "gw-test-probe-a"):
        async with http.get(f"{gateway.url}/health") as reply:
            assert reply.status == 503
            detail = (await reply.json())["detail"]
            assert "gw-test-probe-b" in detail
            assert "gw-test-probe-a" not in detail
        async with (
            ServiceHost(nc, "gw-test-probe-b"),
            http.get(f"{gateway.url}/health") as reply,
        ):
            assert reply.status == 200
            assert await reply.json() == {
                "status": True,
                "services": {"gw-test-probe-a": True, "gw-test-probe-b": True},
            }

"""Every error the gateway sends is JSON `{"detail": ...}` with the status its code means."""

from __future__ import annotations

import io

import aiohttp
import pytest
from aiohttp import web

from common.errors import ERROR_CODES, RagwayError
from gateway.app import GatewayHandle
from gateway.errors import STATUS_BY_CODE, status_for
from gateway.metrics import GatewayMetrics
from gateway.middleware import request_context
from gateway.state import METRICS


def test_every_error_code_has_its_http_status() -> None:
    assert set(STATUS_BY_CODE) == ERROR_CODES
    assert status_for("invalid") == 400
    assert status_for("unauthorized") == 401
    assert status_for("forbidden") == 403
    assert status_for("not_found") == 404
    assert status_for("rate_limited") == 429
    assert status_for("bad_gateway") == 502
    assert status_for("timeout") == 504


async def test_an_unknown_route_is_a_json_404(
    gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/api/v1/nothing-here") as reply:
        assert reply.status == 404
        assert reply.content_type == "application/json"
        assert await reply.json() == {"detail": "Not Found"}


async def test_a_wrong_method_is_a_json_405_with_allow(
    gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    async with http.put(f"{gateway.url}/api/v1/auths/signin") as reply:
        assert reply.status == 405
        assert "POST" in reply.headers["Allow"]
        assert await reply.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
    ids=["missing", "not-bearer", "empty"],
)
async def test_a_protected_route_without_a_bearer_credential_is_401(
    gateway: GatewayHandle, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    async with http.get(f"{gateway.url}/api/models", headers=headers) as reply:
        assert reply.status == 401
        assert await reply.json() == {"detail": "Not authenticated"}


async def test_a_sane_client_request_id_is_echoed_and_a_bad_one_replaced(
    gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/x", headers={"X-Request-Id": "abc-123"}) as reply:
        assert reply.headers["X-Request-Id"] == "abc-123"
    async with http.get(f"{gateway.url}/x", headers={"X-Request-Id": "bad id\u00e9"}) as reply:
        replaced = reply.headers["X-Request-Id"]
        assert replaced != "bad id\u00e9"
        assert len(replaced) == 32


async def test_a_body_over_the_limit_is_413_before_auth_is_asked(nats_url: str) -> None:
    from gateway.app import Settings, serve

    async with (
        serve(Settings(nats_url=nats_url, port=0, max_body_mb=1)) as gw,
        aiohttp.ClientSession() as http,
    ):
        body = io.BytesIO(b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}')  # bytes: a warning
        async with http.post(f"{gw.url}/api/v1/auths/signup", data=body) as reply:
            assert reply.status == 413
            assert await reply.json() == {"detail": "Request body too large"}


async def test_malformed_signup_json_is_400_and_a_bad_field_is_named(
    gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    url = f"{gateway.url}/api/v1/auths/signup"
    async with http.post(url, data=b"{not json") as reply:
        assert reply.status == 400
        assert await reply.json() == {"detail": "Malformed JSON body"}
    async with http.post(url, json={"name": "a", "email": 5, "password": "p"}) as reply:
        assert reply.status == 400
        assert "$.email" in (await reply.json())["detail"]


async def test_unexpected_exceptions_become_a_plain_500_without_internals() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise ValueError("secret internals")

    async def domain(request: web.Request) -> web.Response:
        raise RagwayError("conflict", "Already there")

    app = web.Application(middlewares=[request_context])
    app[METRICS] = GatewayMetrics()  # the middleware counts every request into it
    app.router.add_get("/boom", handler)
    app.router.add_get("/domain", domain)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/boom") as reply:
                assert reply.status == 500
                assert await reply.json() == {"detail": "Internal error"}
            async with http.get(f"http://127.0.0.1:{port}/domain") as reply:
                assert reply.status == 409
                assert await reply.json() == {"detail": "Already there"}
    finally:
        await runner.cleanup()

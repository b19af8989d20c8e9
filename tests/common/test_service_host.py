"""The service host and the bus: typed requests, domain errors, no responders."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
from nats.aio.client import Client

from common.bus import Bus, request_id_var
from common.errors import RagwayError
from common.service import ServiceHost
from contracts.endpoint import Endpoint


class Echo(msgspec.Struct, frozen=True):
    text: str


async def test_a_typed_request_gets_a_typed_reply_and_errors_keep_their_code(
    nc: Client, bus: Bus
) -> None:
    echo = Endpoint(f"test.echo.{uuid.uuid4().hex}", Echo, Echo, "echo-test", ())
    seen_request_ids: list[str] = []

    async def handle(request: Echo) -> Echo:
        seen_request_ids.append(request_id_var.get())
        if request.text == "missing":
            raise RagwayError("not_found", "No such thing")
        if request.text == "boom":
            raise ValueError("secret internals")
        return Echo(text=request.text.upper())

    async with ServiceHost(nc, "echo-test") as host:
        await host.serve(echo, handle)
        request_id_var.set("req-123")
        reply = await bus.call(echo, Echo(text="hi"), timeout=2)
        assert reply == Echo(text="HI")
        assert seen_request_ids == ["req-123"]

        with pytest.raises(RagwayError) as missing:
            await bus.call(echo, Echo(text="missing"), timeout=2)
        assert (missing.value.code, missing.value.detail) == ("not_found", "No such thing")

        with pytest.raises(RagwayError) as boom:
            await bus.call(echo, Echo(text="boom"), timeout=2)
        assert boom.value.code == "internal"
        assert "secret" not in boom.value.detail

        with pytest.raises(RagwayError) as bad:
            await bus.call_raw(echo, b'{"text": 5}', timeout=2)
        assert bad.value.code == "invalid"
        assert "$.text" in bad.value.detail


async def test_requests_are_handled_concurrently(nc: Client, bus: Bus) -> None:
    slow = Endpoint(f"test.slow.{uuid.uuid4().hex}", Echo, Echo, "slow-test", ())
    arrived: list[str] = []
    all_arrived = asyncio.Event()

    async def handle(request: Echo) -> Echo:
        # each request waits until every one has arrived: only concurrent handling ends
        arrived.append(request.text)
        if len(arrived) == 10:
            all_arrived.set()
        await all_arrived.wait()
        return request

    async with ServiceHost(nc, "slow-test") as host:
        await host.serve(slow, handle)
        replies = await asyncio.gather(
            *(bus.call(slow, Echo(text=str(i)), timeout=5) for i in range(10))
        )
    assert sorted(reply.text for reply in replies) == sorted(str(i) for i in range(10))


async def test_no_service_listening_is_a_clear_unavailable_error(bus: Bus) -> None:
    with pytest.raises(RagwayError) as exc:
        await bus.call(
            Endpoint("test.nobody.home", Echo, Echo, "retrieval", ()), Echo(text="x"), timeout=2
        )
    assert exc.value.code == "unavailable"
    assert "retrieval" in exc.value.detail

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


class Echo(msgspec.Struct, frozen=True):
    text: str


async def test_a_typed_request_gets_a_typed_reply_and_errors_keep_their_code(
    nc: Client, bus: Bus
) -> None:
    subject = f"test.echo.{uuid.uuid4().hex}"
    seen_request_ids: list[str] = []

    async def handle(request: Echo) -> Echo:
        seen_request_ids.append(request_id_var.get())
        if request.text == "missing":
            raise RagwayError("not_found", "No such thing")
        if request.text == "boom":
            raise ValueError("secret internals")
        return Echo(text=request.text.upper())

    async with ServiceHost(nc, "echo-test") as host:
        await host.add(subject, handle, Echo)
        request_id_var.set("req-123")
        reply = await bus.request(subject, Echo(text="hi"), Echo, timeout=2, capability="echo")
        assert reply == Echo(text="HI")
        assert seen_request_ids == ["req-123"]

        with pytest.raises(RagwayError) as missing:
            await bus.request(subject, Echo(text="missing"), Echo, timeout=2, capability="echo")
        assert (missing.value.code, missing.value.detail) == ("not_found", "No such thing")

        with pytest.raises(RagwayError) as boom:
            await bus.request(subject, Echo(text="boom"), Echo, timeout=2, capability="echo")
        assert boom.value.code == "internal"
        assert "secret" not in boom.value.detail

        with pytest.raises(RagwayError) as bad:
            await bus.request_raw(subject, b'{"text": 5}', timeout=2, capability="echo")
        assert bad.value.code == "invalid"
        assert "$.text" in bad.value.detail


async def test_requests_are_handled_concurrently(nc: Client, bus: Bus) -> None:
    subject = f"test.slow.{uuid.uuid4().hex}"

    async def handle(request: Echo) -> Echo:
        await asyncio.sleep(0.3)
        return request

    async with ServiceHost(nc, "slow-test") as host:
        await host.add(subject, handle, Echo)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(
            *(
                bus.request(subject, Echo(text=str(i)), Echo, timeout=5, capability="slow")
                for i in range(10)
            )
        )
        assert loop.time() - started < 1.5


async def test_no_service_listening_is_a_clear_unavailable_error(bus: Bus) -> None:
    with pytest.raises(RagwayError) as exc:
        await bus.request(
            "test.nobody.home", Echo(text="x"), Echo, timeout=2, capability="retrieval"
        )
    assert exc.value.code == "unavailable"
    assert "retrieval" in exc.value.detail

"""The service host and the bus: typed requests, domain errors, no responders."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

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


async def micro_stats(nc: Client, service: str) -> dict[str, Any]:
    reply = await nc.request(f"$SRV.STATS.{service}", b"", timeout=2)
    stats: dict[str, Any] = json.loads(reply.data)
    return stats


async def test_stats_count_each_request_its_errors_and_the_time_spent_in_the_handler(
    nc: Client, bus: Bus
) -> None:
    name = f"stats-test-{uuid.uuid4().hex[:8]}"
    echo = Endpoint(f"test.stats.{uuid.uuid4().hex}", Echo, Echo, name, ())

    async def handle(request: Echo) -> Echo:
        await asyncio.sleep(0.02)  # the handler's time must show in processing_time
        if request.text == "missing":
            raise RagwayError("not_found", "No such thing")
        if request.text == "boom":
            raise ValueError("secret internals")
        return request

    async with ServiceHost(nc, name) as host:
        await host.serve(echo, handle)
        await bus.call(echo, Echo(text="hi"), timeout=2)
        for text in ("missing", "boom"):
            with pytest.raises(RagwayError):
                await bus.call(echo, Echo(text=text), timeout=2)
        stats = await micro_stats(nc, name)
        info = json.loads((await nc.request(f"$SRV.INFO.{name}", b"", timeout=2)).data)

    [endpoint] = stats["endpoints"]
    assert endpoint["subject"] == echo.subject
    assert endpoint["queue_group"] == name
    assert (endpoint["num_requests"], endpoint["num_errors"]) == (3, 2)
    assert endpoint["last_error"] == "internal: Internal error"  # no repr of the exception
    # three awaited sleeps of 20 ms: the handler ran inside the measured time (a host that
    # starts a task and returns measures microseconds); load only makes it longer
    assert endpoint["processing_time"] >= 3 * 15_000_000
    assert endpoint["average_processing_time"] == endpoint["processing_time"] // 3
    assert [e["subject"] for e in info["endpoints"]] == [echo.subject]


async def test_requests_over_the_in_flight_bound_are_refused_at_once_as_busy(
    nc: Client, bus: Bus
) -> None:
    name = f"bound-test-{uuid.uuid4().hex[:8]}"
    held = Endpoint(f"test.bound.{uuid.uuid4().hex}", Echo, Echo, name, ())
    started: list[str] = []
    two_started = asyncio.Event()
    release = asyncio.Event()

    async def handle(request: Echo) -> Echo:
        started.append(request.text)
        if len(started) == 2:
            two_started.set()
        await release.wait()
        return request

    async with ServiceHost(nc, name, max_in_flight=2) as host:
        await host.serve(held, handle)
        first = [asyncio.create_task(bus.call(held, Echo(text=t), timeout=5)) for t in "ab"]
        async with asyncio.timeout(5):
            await two_started.wait()
        assert host.in_flight == 2
        with pytest.raises(RagwayError) as busy:
            await bus.call(held, Echo(text="c"), timeout=5)
        assert busy.value.code == "unavailable"
        assert name in busy.value.detail and "busy" in busy.value.detail
        assert started == ["a", "b"]  # the refused request never reached the handler
        release.set()
        assert [reply.text for reply in await asyncio.gather(*first)] == ["a", "b"]
        assert host.in_flight == 0
        # below the bound again: served as usual
        assert (await bus.call(held, Echo(text="d"), timeout=5)).text == "d"
        [endpoint] = (await micro_stats(nc, name))["endpoints"]
    assert (endpoint["num_requests"], endpoint["num_errors"]) == (4, 1)
    assert endpoint["last_error"].startswith("busy:")


async def test_a_service_cannot_serve_another_services_endpoint(nc: Client) -> None:
    async with ServiceHost(nc, "one-service") as host:
        with pytest.raises(ValueError, match="belongs to other-service"):
            await host.serve(Endpoint("test.other", Echo, Echo, "other-service", ()), _echo)


async def _echo(request: Echo) -> Echo:
    return request


async def test_a_reply_or_request_over_the_bus_limit_is_a_clear_too_large(
    nc: Client, bus: Bus
) -> None:
    echo = Endpoint(f"test.big.{uuid.uuid4().hex}", Echo, Echo, "big-test", ())
    limit = nc.max_payload

    async def handle(request: Echo) -> Echo:
        if request.text == "big":
            return Echo(text="x" * limit)
        return request

    async with ServiceHost(nc, "big-test") as host:
        await host.serve(echo, handle)
        with pytest.raises(RagwayError) as reply:
            await bus.call(echo, Echo(text="big"), timeout=5)
        assert reply.value.code == "too_large" and "page" in reply.value.detail
        with pytest.raises(RagwayError) as request:
            await bus.call(echo, Echo(text="x" * (limit + 1)), timeout=5)
        assert request.value.code == "too_large" and "request" in request.value.detail
        assert await bus.call(echo, Echo(text="small"), timeout=5) == Echo(text="small")

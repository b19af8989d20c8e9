"""OLLAMA_PROXY on the proxy's backend pool: bounds, errors relayed as Ollama sent them,
and a stream its caller cancels closing the backend connection."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client

from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from tests.fakes.ollama_fake import OllamaFake
from tests.inference_proxy.conftest import (
    open_pass_through,
    pass_through,
    raw_server,
    read_to_end,
    running_proxy,
)


@contextlib.asynccontextmanager
async def silent_backend() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A TCP server that reads each request and never answers; the event is set once the
    client closed a connection."""
    closed = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        closed.set()
        writer.close()

    async with raw_server(answer) as url:
        yield url, closed


async def test_a_silent_backend_is_a_timeout_within_the_bound_and_its_connection_closed(
    nats_url: str, nc: Client, bus: Bus
) -> None:
    async with (
        silent_backend() as (url, closed),
        running_proxy(nats_url, ollama_base_urls=url, backend_timeout_seconds=0.5) as proxy,
    ):
        started = time.monotonic()
        with pytest.raises(RagwayError) as silent:
            await pass_through(nc, bus, "GET", "api/version")
        assert 0.4 < time.monotonic() - started < 1.5
        await asyncio.wait_for(closed.wait(), 2)
        assert proxy.backends.idle_connections() == 0
    host = url.split("://")[1]
    assert silent.value.code == "timeout"
    assert silent.value.detail == "Ollama backend #0 did not answer within 0.5s"
    assert host not in silent.value.detail


async def test_ollama_error_bodies_are_relayed_and_the_connection_kept(
    nats_url: str, nc: Client, bus: Bus, ollama_fake: OllamaFake
) -> None:
    async with running_proxy(nats_url, ollama_base_urls=ollama_fake.origin) as proxy:
        for _ in range(2):
            accepted, body, end = await pass_through(
                nc, bus, "POST", "api/show", {"model": "nope:1b"}
            )
            assert accepted.status == 404
            assert accepted.content_type.startswith("application/json")
            assert msgspec.json.decode(body) == {"error": "model 'nope:1b' not found"}
            assert end.error is None
            assert proxy.backends.idle_connections() == 1
    assert [path for path in ollama_fake.paths() if path != "/api/tags"] == ["/api/show"] * 2


async def test_a_stream_its_caller_cancels_closes_the_backend_connection(
    nats_url: str, nc: Client, bus: Bus, ollama_fake: OllamaFake
) -> None:
    ollama_fake.pull_steps = 2000
    ollama_fake.chunk_delay = 0.005  # 10 s if nobody stopped it
    async with (
        running_proxy(nats_url, ollama_base_urls=ollama_fake.origin) as proxy,
        open_pass_through(nc, bus, "POST", "api/pull", {"model": "gone:1b"}, admin=True) as (
            accepted,
            stream_id,
            subscription,
        ),
    ):
        assert accepted.status == 200
        first = await subscription.next_msg(timeout=5)
        assert first.data.startswith(b'{"status": "pulling manifest"}')
        await nc.publish(subjects.OLLAMA_CANCEL.subject_for(stream_id), b"")
        _, end = await read_to_end(subscription)
        assert end.error == "Cancelled by the caller"
        await asyncio.wait_for(ollama_fake.client_disconnected.wait(), 3)
        assert proxy.backends.idle_connections() == 0
        # the pool's slot came back: the next request is answered
        accepted, _, end = await pass_through(nc, bus, "GET", "api/version")
        assert accepted.status == 200 and end.error is None
    assert ollama_fake.streams_finished == 0

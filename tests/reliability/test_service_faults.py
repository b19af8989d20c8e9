"""A service or backend that fails, and a gateway told to stop: clear, bounded answers.

One launched stack (real processes) for the module; each test puts back what it broke.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from stack.processes import wait_http_ok
from tests.fakes.openai_fake import OpenAIFake
from tests.reliability.conftest import StackFactory
from tests.reliability.support import MODEL, ProcessStack

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


@pytest.fixture(scope="module")
async def stack(launch: StackFactory) -> ProcessStack:
    launched: ProcessStack = await launch(
        services="auth,inference_proxy,retrieval",  # ingestion is not needed here
        RAGWAY_HEALTH_SERVICES="auth,inference-proxy,retrieval",
    )
    return launched


def chat(stream: bool = False, text: str = "hello there") -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream}


async def data_events(reply: aiohttp.ClientResponse) -> list[Any]:
    events: list[Any] = []
    async for raw in reply.content:
        line = raw.decode().strip()
        if line.startswith("data:"):
            payload = line[5:].strip()
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


async def restarted(stack: ProcessStack, name: str) -> None:
    """Start a stopped child again and wait until /health is 200."""
    child = stack.child(name)
    assert not child.running()
    child.start()
    await asyncio.to_thread(wait_http_ok, f"{stack.url}/health", 60, stack.stack.gateway)


async def test_a_killed_retrieval_service_is_a_quick_503_naming_it_and_health_says_which(
    stack: ProcessStack,
) -> None:
    user = stack.admin
    retrieval = stack.child("retrieval")
    retrieval.signal_group(signal.SIGKILL)
    assert retrieval.process is not None
    await asyncio.to_thread(retrieval.process.wait, 10)
    try:
        for path in ("/api/v1/knowledge/", "/api/v1/knowledge/create"):
            method = "GET" if path.endswith("/") else "POST"
            status, body, took = await stack.timed_call(
                method, path, user, json={"name": "k", "description": "d"}
            )
            assert (status, body) == (503, {"detail": "The retrieval service is unavailable"})
            assert took < 1.0
        status, body, took = await stack.timed_call("GET", "/health")
        assert status == 503 and took < 2.0
        assert body["detail"] == "Services not answering: retrieval"
        # what does not need retrieval keeps working
        status, _ = await stack.call("POST", "/api/chat/completions", user, json=chat())
        assert status == 200
    finally:
        await restarted(stack, "retrieval")
    status, body = await stack.call("GET", "/health")
    assert (status, body["services"]["retrieval"]) == (200, True)
    status, _ = await stack.call("GET", "/api/v1/knowledge/", user)
    assert status == 200


async def test_a_hanging_model_backend_is_a_504_within_the_proxys_backend_timeout(
    stack: ProcessStack, fake: OpenAIFake
) -> None:
    fake.hang = True
    for stream in (False, True):
        status, body, took = await stack.timed_call(
            "POST", "/api/chat/completions", stack.admin, json=chat(stream)
        )
        assert status == 504, body
        assert set(body) == {"detail"}
        # RAGWAY_BACKEND_TIMEOUT_SECONDS=3: answered when it expires, not at the gateway's 6 s
        assert 2.5 < took < 5.0


async def test_a_client_leaving_a_stream_stops_the_backend_request_through_every_process(
    stack: ProcessStack, fake: OpenAIFake
) -> None:
    fake.tokens_per_reply = 500
    fake.token_delay = 0.02
    finished = fake.streams_finished
    async with stack.http.post(
        f"{stack.url}/api/chat/completions", headers=stack.admin.auth, json=chat(True)
    ) as reply:
        assert reply.status == 200
        await reply.content.readline()
    # gateway -> (NATS cancel) -> inference-proxy process -> the backend's connection
    await asyncio.wait_for(fake.client_disconnected.wait(), timeout=3)
    assert fake.streams_finished == finished  # the 10 s reply was cut, not run to its end


@pytest.fixture
async def gateway_restarted_after(stack: ProcessStack) -> AsyncIterator[None]:
    gateway = stack.child("gateway")
    env = dict(gateway.env)
    yield
    gateway.env = env
    if not gateway.running():
        await restarted(stack, "gateway")


async def new_client_status(url: str) -> int | str:
    """What a client with a fresh connection gets: a status, or how the connection failed."""
    try:
        async with (
            aiohttp.ClientSession() as fresh,
            fresh.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=3)) as reply,
        ):
            return reply.status
    except aiohttp.ClientConnectorError:
        return "refused"


def streamed_text(events: list[Any]) -> str:
    return "".join(
        (e["choices"][0].get("delta") or {}).get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


async def test_sigterm_lets_a_stream_in_flight_finish_while_new_clients_are_refused(
    stack: ProcessStack, fake: OpenAIFake, gateway_restarted_after: None
) -> None:
    fake.tokens_per_reply = 40
    fake.token_delay = 0.05  # a 2 s stream
    gateway = stack.child("gateway")
    assert gateway.process is not None
    async with stack.http.post(
        f"{stack.url}/api/chat/completions", headers=stack.admin.auth, json=chat(True)
    ) as reply:
        assert reply.status == 200
        await reply.content.readline()
        gateway.signal_group(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # the listening socket is closed at once: a load balancer moves on, nobody hangs
        started = time.monotonic()
        assert await new_client_status(stack.url) == "refused"
        assert time.monotonic() - started < 1.0
        assert gateway.running()  # still relaying the stream
        events = await data_events(reply)
    assert events[-1] == "[DONE]"
    assert streamed_text(events).split() == [f"t{n}" for n in range(40)]
    assert await asyncio.to_thread(gateway.process.wait, 10) == 0


async def test_a_stream_longer_than_the_shutdown_grace_is_cut_and_the_backend_stopped(
    stack: ProcessStack, fake: OpenAIFake, gateway_restarted_after: None
) -> None:
    gateway = stack.child("gateway")
    gateway.stop(5)
    gateway.env["RAGWAY_SHUTDOWN_GRACE_SECONDS"] = "1"
    await restarted(stack, "gateway")
    fake.tokens_per_reply = 1000
    fake.token_delay = 0.02  # a 20 s stream
    assert gateway.process is not None
    async with stack.http.post(
        f"{stack.url}/api/chat/completions", headers=stack.admin.auth, json=chat(True)
    ) as reply:
        assert reply.status == 200
        await reply.content.readline()
        started = time.monotonic()
        gateway.signal_group(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientPayloadError):
            await data_events(reply)
    assert await asyncio.to_thread(gateway.process.wait, 10) == 0
    assert time.monotonic() - started < 4.0  # the 1 s grace, then a clean exit
    # the cut stream's cancel reached the proxy, which hung up on the backend
    await asyncio.wait_for(fake.client_disconnected.wait(), timeout=3)

"""Backend connections are reused across streams, also when a backend sends `[DONE]`
before its chunked body's terminator (a per-stream TCP connect otherwise), and chat,
the Ollama pass-through and the model lists share one pool of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from nats.aio.client import Client

from common.bus import Bus
from contracts.models import ModelsReply
from inference_proxy.backend_http import BackendPool
from tests.fakes.ollama_fake import OllamaFake
from tests.inference_proxy.conftest import (
    chat_body,
    list_models,
    open_stream,
    pass_through,
    running_proxy,
)

MODEL = "late-terminator"


class LateTerminatorBackend:
    """An OpenAI-compatible backend that writes `[DONE]`, then ends the chunked body
    `end_delay` seconds later; it records the client address of every chat request."""

    def __init__(self, end_delay: float) -> None:
        self.end_delay = end_delay
        self.peers: list[object] = []

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": MODEL}
        for delta, finish in (({"role": "assistant", "content": "hi"}, None), ({}, "stop")):
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(b"data: " + msgspec.json.encode(chunk) + b"\n\n")
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        await response.write(
            b"data: " + msgspec.json.encode({**base, "choices": [], "usage": usage}) + b"\n\n"
        )
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(self.end_delay)
        await response.write_eof()
        return response


@pytest.fixture
async def late_backend() -> AsyncIterator[tuple[LateTerminatorBackend, str]]:
    backend = LateTerminatorBackend(end_delay=0.05)
    app = web.Application()
    app.router.add_get("/v1/models", backend.models)
    app.router.add_post("/v1/chat/completions", backend.chat)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield backend, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_streams_reuse_the_backend_connection_when_the_body_ends_after_done(
    nats_url: str, nc: Client, bus: Bus, late_backend: tuple[LateTerminatorBackend, str]
) -> None:
    backend, base_url = late_backend
    async with running_proxy(nats_url, openai_api_base_urls=base_url, openai_api_keys="k"):
        for _ in range(3):
            async with open_stream(nc, bus, chat_body(MODEL)) as (_, stream, collect):
                await collect()
            assert stream.end is not None and stream.end.error is None
            assert stream.events[-1] == b"[DONE]"
            await asyncio.sleep(0.15)  # the terminator has come; the connection is back
    assert len(backend.peers) == 3
    assert len(set(backend.peers)) == 1, backend.peers


async def test_a_body_that_never_ends_after_done_still_ends_the_stream_at_once(
    nats_url: str, nc: Client, bus: Bus, late_backend: tuple[LateTerminatorBackend, str]
) -> None:
    backend, base_url = late_backend
    backend.end_delay = 3  # beyond the proxy's wait (1 s): the connection is closed instead
    async with running_proxy(nats_url, openai_api_base_urls=base_url, openai_api_keys="k"):
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with open_stream(nc, bus, chat_body(MODEL)) as (_, stream, collect):
            await collect()
        assert loop.time() - started < 1
        assert stream.end is not None and stream.end.error is None
        await asyncio.sleep(1.3)  # past the wait: the next stream needs a new connection
        async with open_stream(nc, bus, chat_body(MODEL)) as (_, stream, collect):
            await collect()
        assert stream.end is not None and stream.end.error is None
    assert len(set(backend.peers)) == 2


@dataclass
class PeerRecordingOllama(OllamaFake):
    """The Ollama fake, noting the client address of every request it receives."""

    peers: list[object] = field(default_factory=list)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))
        return await super()._record(request, handler)


def model_ids(reply: ModelsReply) -> list[str]:
    return [model.id for model in reply.data]


async def until_one_idle(pool: BackendPool) -> None:
    """Until the pool holds the connection again (a chat relay releases it after its end
    message went out)."""
    for _ in range(200):
        if pool.idle_connections() == 1:
            return
        await asyncio.sleep(0.01)
    assert pool.idle_connections() == 1


async def test_chat_the_pass_through_and_model_lists_share_one_connection_to_a_backend(
    nats_url: str, nc: Client, bus: Bus
) -> None:
    fake = PeerRecordingOllama()
    await fake.start()
    try:
        async with running_proxy(nats_url, ollama_base_urls=fake.origin) as proxy:
            pool = proxy.backends
            listed = await list_models(bus, refresh=True)
            assert model_ids(listed) == ["llama3.2:latest", "qwen2.5:0.5b"]
            await until_one_idle(pool)
            async with open_stream(nc, bus, chat_body("llama3.2:latest")) as (_, stream, collect):
                await collect()
            assert stream.end is not None and stream.end.error is None
            await until_one_idle(pool)
            ask = {"model": "llama3.2:latest", "messages": [{"role": "user", "content": "a b"}]}
            accepted, body, end = await pass_through(nc, bus, "POST", "api/chat", ask)
            assert (accepted.status, accepted.content_type) == (200, "application/x-ndjson")
            lines = [json.loads(line) for line in body.splitlines()]
            assert end.error is None and end.size == len(body)
            assert "".join(line["message"]["content"] for line in lines) == "Echo: a b"
            await until_one_idle(pool)
            accepted, body, end = await pass_through(nc, bus, "GET", "api/tags")
            assert accepted.status == 200 and end.error is None
            assert len(json.loads(body)["models"]) == 2
            accepted, body, end = await pass_through(
                nc, bus, "DELETE", "api/delete", {"model": "qwen2.5:0.5b"}, admin=True
            )
            assert (accepted.status, body, end.error) == (200, b"", None)
            assert model_ids(await list_models(bus, refresh=True)) == ["llama3.2:latest"]
            await until_one_idle(pool)
    finally:
        await fake.stop()
    assert fake.paths() == [
        "/api/tags",
        "/api/chat",
        "/api/chat",
        "/api/tags",
        "/api/delete",
        "/api/tags",
    ]
    assert fake.last("/api/delete").json == {"model": "qwen2.5:0.5b"}
    assert len(set(fake.peers)) == 1, fake.peers  # one connection for all six

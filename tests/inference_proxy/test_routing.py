"""Routing with real processes: two OpenAI-compatible fakes (real HTTP servers speaking
the protocol) behind one inference-proxy. A model on both is balanced by fewest in
flight; a dead, 5xx or 429 backend passes the request on before its first token (to the
other backend, then the fallback models), never after; an ejected backend gets a probe
once its back-off ran out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

import inference_proxy.chat
import inference_proxy.routing
from common.bus import Bus
from common.errors import RagwayError
from inference_proxy.app import InferenceProxy
from inference_proxy.settings import Backend
from tests.fakes.openai_fake import OpenAIFake
from tests.inference_proxy.conftest import chat_body, complete, open_stream, running_proxy
from tests.support.logs import module_logs

CHAT = "/v1/chat/completions"


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[OpenAIFake, OpenAIFake]]:
    """Backend #0 serves `shared` and `primary`; backend #1 `shared` and `backup`."""
    first = OpenAIFake(api_key=None, models=["shared", "primary"])
    second = OpenAIFake(api_key=None, models=["shared", "backup"])
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


def proxied(nats_url: str, fakes: tuple[OpenAIFake, OpenAIFake], **overrides: Any) -> Any:
    first, second = fakes
    return running_proxy(
        nats_url,
        openai_api_base_urls=f"{first.base_url};{second.base_url}",
        backend_connect_timeout_seconds=1,
        backend_timeout_seconds=5,
        models_cache_seconds=60,  # a listing made before a backend died is still in use
        model_fallbacks={"primary": ["backup"]},
        **overrides,
    )


def chats(fake: OpenAIFake) -> list[Any]:
    """The bodies of the chat requests `fake` received."""
    return [r.json for r in fake.requests if r.path == CHAT]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def backend(proxy: InferenceProxy, idx: int) -> Backend:
    route = await proxy.catalog.route("shared")
    assert route is not None
    return next(b for b in route.backends if b.idx == idx)


async def test_one_model_on_two_backends_alternates_and_avoids_the_busy_one(
    nats_url: str, nc: Client, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake]
) -> None:
    first, second = fakes
    async with proxied(nats_url, fakes) as proxy:
        for _ in range(4):  # one at a time: the least recently picked goes next
            await complete(bus, chat_body("shared"))
        assert (len(chats(first)), len(chats(second))) == (2, 2)
        # a slow stream holds one backend; while it runs, every request goes to the other
        first.token_delay = second.token_delay = 0.5
        first.tokens_per_reply = second.tokens_per_reply = 20
        async with open_stream(nc, bus, chat_body("shared", stream=True)) as opened:
            accepted, _, _ = opened
            assert accepted.backend is not None
            busy = accepted.backend.idx
            assert proxy.router.in_flight(await backend(proxy, busy)) == 1
            before = [len(chats(first)), len(chats(second))]
            for _ in range(3):
                await complete(bus, chat_body("shared"))
            after = [len(chats(first)), len(chats(second))]
        assert after[busy] == before[busy]
        assert after[1 - busy] == before[1 - busy] + 3


async def test_a_dead_primary_falls_back_and_the_reply_names_the_fallback(
    nats_url: str,
    nc: Client,
    bus: Bus,
    fakes: tuple[OpenAIFake, OpenAIFake],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = module_logs(monkeypatch, inference_proxy.chat, inference_proxy.routing).entries
    await _dead_primary(nats_url, nc, bus, fakes)
    moves = events(logs, "chat_fallback")
    assert moves and moves[0]["model"] == "primary" and moves[0]["to_model"] == "backup"
    assert "unreachable" in moves[0]["reason"]
    assert moves[0]["backend"] == "OpenAI-compatible backend #0"
    assert moves[0]["to_backend"] == "OpenAI-compatible backend #1"
    ejected = events(logs, "backend_ejected")
    assert ejected and ejected[0]["backend"] == "OpenAI-compatible backend #0"


async def _dead_primary(
    nats_url: str, nc: Client, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake]
) -> None:
    first, second = fakes
    async with proxied(nats_url, fakes) as proxy:
        assert (await complete(bus, chat_body("primary")))["model"] == "primary"
        await first.stop()  # the primary's only backend is gone
        reply = await complete(bus, chat_body("primary", "still there?"))
        assert reply["model"] == "backup"
        assert reply["choices"][0]["message"]["content"] == "Echo: still there?"
        assert chats(second)[-1]["model"] == "backup"
        async with open_stream(nc, bus, chat_body("primary", stream=True)) as opened:
            accepted, stream, collect = opened
            await collect()
        assert accepted.model == "backup"
        assert accepted.backend is not None and accepted.backend.idx == 1
        assert stream.end is not None and stream.end.error is None
        assert {chunk["model"] for chunk in stream.chunks} == {"backup"}
        # the model list no longer has `primary` (its backend is gone): still answered
        await proxy.catalog.snapshot(refresh=True)
        assert "primary" not in proxy.catalog._snapshot.routes  # type: ignore[union-attr]
        assert (await complete(bus, chat_body("primary")))["model"] == "backup"


@pytest.mark.parametrize("status", [429, 503])
async def test_a_429_or_5xx_from_the_primary_moves_to_the_fallback(
    nats_url: str, nc: Client, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake], status: int
) -> None:
    first, second = fakes
    first.error_status = status
    async with proxied(nats_url, fakes, backend_eject_seconds=0.01):
        assert (await complete(bus, chat_body("primary")))["model"] == "backup"
        await asyncio.sleep(0.02)  # its ejection ran out: the stream tries it first again
        async with open_stream(nc, bus, chat_body("primary", stream=True)) as opened:
            accepted, stream, collect = opened
            await collect()
    assert accepted.model == "backup" and stream.end is not None and stream.end.error is None
    assert [body["model"] for body in chats(first)] == ["primary", "primary"]
    assert [body["model"] for body in chats(second)] == ["backup", "backup"]


async def test_without_a_fallback_the_last_error_reaches_the_caller(
    nats_url: str, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake]
) -> None:
    first, second = fakes
    first.error_status = second.error_status = 429
    async with proxied(nats_url, fakes):
        with pytest.raises(RagwayError) as raised:
            await complete(bus, chat_body("shared"))
    assert raised.value.code == "rate_limited"
    # each backend was asked once (refused before the body was read)
    assert [r.path for r in first.requests + second.requests].count(CHAT) == 2


async def test_a_model_and_fallbacks_nobody_serves_is_not_found(
    nats_url: str, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake]
) -> None:
    async with running_proxy(
        nats_url,
        openai_api_base_urls=fakes[0].base_url,
        model_fallbacks={"ghost": ["phantom"]},
    ):
        with pytest.raises(RagwayError) as raised:
            await complete(bus, chat_body("ghost"))
    assert raised.value.code == "not_found"


async def test_a_client_error_is_not_passed_on(
    nats_url: str, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake]
) -> None:
    first, second = fakes
    first.error_status = 400
    async with proxied(nats_url, fakes) as proxy:
        with pytest.raises(RagwayError) as raised:
            await complete(bus, chat_body("primary"))
        assert proxy.router.in_service(await backend(proxy, 0))
    assert raised.value.code == "invalid"
    assert chats(second) == []


async def test_a_failure_after_the_first_token_is_not_retried(
    nats_url: str, nc: Client, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake]
) -> None:
    first, second = fakes
    first.tokens_per_reply, first.fail_after_chunks = 10, 4
    async with (
        proxied(nats_url, fakes),
        open_stream(nc, bus, chat_body("primary", stream=True)) as (accepted, stream, collect),
    ):
        await collect()
    assert accepted.model == "primary"
    error = msgspec.json.decode(stream.events[-2])
    assert "broke" in error["error"]["message"]  # the client sees the error
    assert stream.end is not None and stream.end.error == error["error"]["message"]
    assert stream.end.content.startswith("t0 ")
    assert chats(second) == []  # nothing was sent to the fallback


async def test_an_ejected_backend_is_probed_after_its_back_off_and_put_back(
    nats_url: str,
    bus: Bus,
    fakes: tuple[OpenAIFake, OpenAIFake],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes[0].error_status = 500
    logs = module_logs(monkeypatch, inference_proxy.chat, inference_proxy.routing).entries
    await _probed(nats_url, bus, fakes)
    ejections = events(logs, "backend_ejected")
    assert [e["seconds"] for e in ejections] == [0.3, 0.6]  # the failed probe doubled it
    assert "HTTP 500" in ejections[0]["reason"]


async def _probed(nats_url: str, bus: Bus, fakes: tuple[OpenAIFake, OpenAIFake]) -> None:
    first, second = fakes
    async with proxied(nats_url, fakes, backend_eject_seconds=0.3) as proxy:
        a = await backend(proxy, 0)
        assert (await complete(bus, chat_body("shared")))["model"] == "shared"
        assert not proxy.router.in_service(a)  # #0 failed (a 500): ejected, #1 answered
        for _ in range(3):
            await complete(bus, chat_body("shared"))
        assert len(chats(first)) == 1 and len(chats(second)) == 4  # #0 was left out
        await asyncio.sleep(0.35)
        await complete(bus, chat_body("shared"))  # the probe: #0 still fails, #1 answers
        assert len(chats(first)) == 2 and not proxy.router.in_service(a)
        first.error_status = None
        await asyncio.sleep(0.65)  # the back-off doubled
        await complete(bus, chat_body("shared"))
        assert len(chats(first)) == 3 and proxy.router.in_service(a)

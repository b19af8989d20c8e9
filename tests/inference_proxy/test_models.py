"""MODELS_LIST: every backend merged like Open WebUI, a dead one skipped, cached."""

from __future__ import annotations

import asyncio
import time

from common.bus import Bus
from stack.nats_server import free_port
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.inference_proxy.conftest import list_models, raw_server, running_proxy


async def test_models_from_both_kinds_are_merged_and_a_dead_backend_is_skipped(
    nats_url: str, bus: Bus, openai_fake: OpenAIFake, ollama_fake: OllamaFake
) -> None:
    second_ollama = OllamaFake(models=["qwen2.5:0.5b", "phi3:mini"])
    await second_ollama.start()
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        async with running_proxy(
            nats_url,
            openai_api_base_urls=f"{dead}/v1;{openai_fake.base_url}",
            openai_api_keys=f"sk-dead;{openai_fake.api_key}",
            ollama_base_urls=f"{ollama_fake.origin};{second_ollama.origin};{dead}",
        ):
            started = time.monotonic()
            reply = await list_models(bus)
            assert time.monotonic() - started < 2
    finally:
        await second_ollama.stop()
    by_id = {m.id: m for m in reply.data}
    assert list(by_id) == [
        "gpt-fake",
        "gpt-fake-mini",
        "llama3.2:latest",
        "qwen2.5:0.5b",
        "phi3:mini",
    ]
    gpt = by_id["gpt-fake"]
    assert (gpt.owned_by, gpt.urlIdx, gpt.name) == ("openai", 1, "gpt-fake")
    assert gpt.openai is not None and gpt.openai["owned_by"] == "fake"
    qwen = by_id["qwen2.5:0.5b"]
    assert qwen.owned_by == "ollama" and qwen.ollama is not None
    assert qwen.ollama["urls"] == [0, 1] and qwen.ollama["details"]["format"] == "gguf"
    assert by_id["phi3:mini"].ollama["urls"] == [1]  # type: ignore[index]
    assert openai_fake.last("/v1/models").headers["Authorization"] == "Bearer sk-fake-key"


async def test_the_model_list_is_cached_until_it_expires_or_a_refresh_is_asked(
    nats_url: str, bus: Bus, ollama_fake: OllamaFake
) -> None:
    async with running_proxy(
        nats_url, ollama_base_urls=ollama_fake.origin, models_cache_seconds=0.5
    ):
        first = await list_models(bus)
        ollama_fake.models.append("new:latest")
        cached = await list_models(bus)
        assert [m.id for m in cached.data] == [m.id for m in first.data]
        assert ollama_fake.paths().count("/api/tags") == 1
        refreshed = await list_models(bus, refresh=True)
        assert "new:latest" in [m.id for m in refreshed.data]
        ollama_fake.models.remove("new:latest")
        await asyncio.sleep(0.6)
        expired = await list_models(bus)
        assert "new:latest" not in [m.id for m in expired.data]
        assert ollama_fake.paths().count("/api/tags") == 3


async def test_a_backend_that_never_finishes_its_list_is_skipped_after_the_fetch_timeout(
    nats_url: str, bus: Bus, ollama_fake: OllamaFake
) -> None:
    closed = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        # the head and the start of the body, then nothing: the bound covers the body too
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"models": [')
        await writer.drain()
        await reader.read()  # until the proxy gives up and closes
        closed.set()
        writer.close()

    async with (
        raw_server(trickle) as slow,
        running_proxy(
            nats_url,
            ollama_base_urls=f"{slow};{ollama_fake.origin}",
            models_fetch_timeout_seconds=0.5,
        ),
    ):
        started = time.monotonic()
        reply = await list_models(bus)
        assert 0.4 < time.monotonic() - started < 1.5
        await asyncio.wait_for(closed.wait(), 2)
    assert [m.id for m in reply.data] == ["llama3.2:latest", "qwen2.5:0.5b"]
    assert reply.data[0].ollama is not None and reply.data[0].ollama["urls"] == [1]

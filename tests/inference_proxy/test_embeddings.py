"""EMBEDDINGS_CREATE to a backend: OpenAI-compatible `/embeddings` and Ollama `/api/embed`,
vectors back as float32 bytes, backend failures as clear errors. (ragway's own model,
served by the retrieval service, is exercised end to end in tests/e2e/test_embeddings.py.)"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.embeddings import EmbedBatch, EmbeddedBatch
from tests.fakes.ollama_fake import OllamaFake, embedding_of
from tests.fakes.openai_fake import OpenAIFake, shortened
from tests.inference_proxy.conftest import raw_server, read_request, running_proxy


async def embed(bus: Bus, batch: EmbedBatch) -> EmbeddedBatch:
    return await bus.call(subjects.EMBEDDINGS_CREATE, batch, timeout=10)


def rows(reply: EmbeddedBatch) -> np.ndarray:
    return np.frombuffer(reply.vectors, "<f4").reshape(-1, reply.dimensions)


async def test_an_openai_backend_gets_the_batch_and_its_vectors_come_back_in_order(
    nats_url: str, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with running_proxy(
        nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
    ):
        reply = await embed(
            bus,
            EmbedBatch(model="gpt-fake", input=["one", "two words"], extra={"user": "u-7"}),
        )
        shorter = await embed(bus, EmbedBatch(model="gpt-fake", input=["one"], dimensions=3))
    assert reply.dimensions == 8 and reply.prompt_tokens == 3
    expected = np.array([embedding_of("one"), embedding_of("two words")], dtype=np.float32)
    assert np.array_equal(rows(reply), expected)
    sent, again = [r for r in openai_fake.requests if r.path == "/v1/embeddings"]
    assert sent.headers["Authorization"] == "Bearer sk-fake-key"
    assert sent.json == {
        "user": "u-7",
        "model": "gpt-fake",
        "input": ["one", "two words"],
        "encoding_format": "float",
    }
    assert again.json["dimensions"] == 3 and shorter.dimensions == 3
    assert np.allclose(rows(shorter)[0], shortened(embedding_of("one"), 3))


async def test_an_ollama_model_is_embedded_through_api_embed_with_its_own_options(
    nats_url: str, bus: Bus, ollama_fake: OllamaFake
) -> None:
    async with running_proxy(nats_url, ollama_base_urls=ollama_fake.origin):
        reply = await embed(
            bus,
            EmbedBatch(
                model="qwen2.5:0.5b",
                input=["a b", "c"],
                extra={"keep_alive": "5m", "truncate": True},
            ),
        )
    sent = ollama_fake.last("/api/embed")
    assert sent.json == {
        "keep_alive": "5m",
        "truncate": True,
        "model": "qwen2.5:0.5b",
        "input": ["a b", "c"],
    }
    assert reply.prompt_tokens == 3
    assert np.array_equal(rows(reply), np.array([embedding_of("a b"), embedding_of("c")], "f4"))


async def test_an_unknown_model_is_not_found_and_a_failing_backend_is_a_bad_gateway(
    nats_url: str, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with running_proxy(
        nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
    ):
        with pytest.raises(RagwayError) as unknown:
            await embed(bus, EmbedBatch(model="no-such-model", input=["x"]))
        assert unknown.value.code == "not_found" and "no-such-model" in unknown.value.detail
        openai_fake.error_status = 500
        with pytest.raises(RagwayError) as failed:
            await embed(bus, EmbedBatch(model="gpt-fake", input=["x"]))
        assert failed.value.code == "bad_gateway" and "500" in failed.value.detail
        openai_fake.error_status = 400
        with pytest.raises(RagwayError) as refused:
            await embed(bus, EmbedBatch(model="gpt-fake", input=["x"]))
        assert refused.value.code == "invalid" and "Fake backend error" in refused.value.detail


async def test_a_backend_answering_too_few_vectors_is_a_bad_gateway(
    nats_url: str, bus: Bus
) -> None:
    models = b'{"object":"list","data":[{"id":"emb","object":"model","owned_by":"x"}]}'
    vectors = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}]}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                head = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            body = models if head.startswith(b"GET") else vectors
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        writer.close()

    async with raw_server(answer) as url, running_proxy(nats_url, openai_api_base_urls=url):
        with pytest.raises(RagwayError) as caught:
            await embed(bus, EmbedBatch(model="emb", input=["one", "two"]))
    assert caught.value.code == "bad_gateway"
    assert "1 vectors for 2 texts" in caught.value.detail
    # named by index, never by its address (internal hosts, credentials in URLs)
    assert "backend #0" in caught.value.detail
    assert url.split("://")[1].split("/")[0] not in caught.value.detail

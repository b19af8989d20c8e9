"""The fakes speak their backends' real protocols: the official clients can use them."""

from __future__ import annotations

import asyncio

import aiohttp
import ollama
import openai
import pytest

from tests.fakes.base import echo_pieces
from tests.fakes.ollama_fake import OllamaFake, embedding_of
from tests.fakes.openai_fake import OpenAIFake, ScriptedReply


async def test_the_official_ollama_client_lists_chats_streams_and_embeds(
    ollama_fake: OllamaFake,
) -> None:
    client = ollama.AsyncClient(host=ollama_fake.origin)
    listed = await client.list()
    assert [m.model for m in listed.models] == ["llama3.2:latest", "qwen2.5:0.5b"]
    assert (await client.show("llama3.2:latest")).details is not None

    reply = await client.chat("llama3.2:latest", messages=[{"role": "user", "content": "hi there"}])
    assert reply.message.content == "Echo: hi there"
    assert reply.done and reply.done_reason == "stop" and reply.eval_count == 3

    parts = [
        part
        async for part in await client.chat(
            "llama3.2:latest", messages=[{"role": "user", "content": "a b c"}], stream=True
        )
    ]
    assert [p.message.content for p in parts[:-1]] == echo_pieces("a b c")
    assert parts[-1].done and parts[-1].prompt_eval_count == 3 and parts[-1].total_duration

    generated = await client.generate("qwen2.5:0.5b", "say", options={"num_predict": 1})
    assert generated.response == "Echo: " and generated.done_reason == "length"

    embedded = await client.embed("llama3.2:latest", ["one", "two"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 8
    assert ollama_fake.last("/api/embed").json["input"] == ["one", "two"]


async def test_ollama_admin_routes_change_the_model_list_and_pull_streams_progress(
    ollama_fake: OllamaFake,
) -> None:
    ollama_fake.pull_steps = 50
    client = ollama.AsyncClient(host=ollama_fake.origin)
    progress = [p async for p in await client.pull("phi3:mini", stream=True)]
    assert len(progress) == 54 and progress[-1].status == "success"
    assert progress[10].completed and progress[10].total
    await client.copy("phi3:mini", "phi3:copy")
    await client.delete("phi3:mini")
    assert [m.model for m in (await client.list()).models][-1] == "phi3:copy"
    with pytest.raises(ollama.ResponseError) as missing:
        await client.chat("nope", messages=[{"role": "user", "content": "x"}])
    assert missing.value.status_code == 404 and "model 'nope' not found" in missing.value.error
    assert (await client.ps()).models


async def test_the_official_openai_client_streams_one_id_with_usage_and_done(
    openai_fake: OpenAIFake,
) -> None:
    client = openai.AsyncOpenAI(base_url=openai_fake.base_url, api_key="sk-fake-key")
    models = await client.models.list()
    assert [m.id for m in models.data] == ["gpt-fake", "gpt-fake-mini"]

    stream = await client.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "user", "content": "x y"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: x y"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert openai_fake.last("/v1/chat/completions").headers["Authorization"] == "Bearer sk-fake-key"

    done = await client.chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": "x"}]
    )
    assert done.choices[0].message.content == "Echo: x" and done.usage is not None
    await client.close()


async def test_openai_knobs_wrong_key_error_status_scripted_tools_and_drop(
    openai_fake: OpenAIFake,
) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{openai_fake.base_url}/chat/completions"
        body = {"model": "gpt-fake", "messages": [{"role": "user", "content": "x"}], "stream": True}
        async with http.post(url, json=body, headers={"Authorization": "Bearer no"}) as r:
            assert r.status == 401
        auth = {"Authorization": "Bearer sk-fake-key"}
        openai_fake.error_status = 503
        async with http.post(url, json=body, headers=auth) as r:
            assert r.status == 503 and "error" in await r.json()
        openai_fake.error_status = None

        openai_fake.responder = lambda _: ScriptedReply(
            pieces=[],
            finish_reason="tool_calls",
            tool_calls=[
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        )
        async with http.post(url, json={**body, "stream": False}, headers=auth) as r:
            reply = await r.json()
        assert reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "f"
        openai_fake.responder = None

        openai_fake.tokens_per_reply, openai_fake.fail_after_chunks = 20, 3
        async with http.post(url, json=body, headers=auth) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()


async def test_the_official_openai_client_embeds_with_the_openai_fake_in_both_encodings(
    openai_fake: OpenAIFake,
) -> None:
    async with openai.AsyncOpenAI(base_url=openai_fake.base_url, api_key="sk-fake-key") as client:
        await _embed_both_ways(client, openai_fake)


async def _embed_both_ways(client: openai.AsyncOpenAI, openai_fake: OpenAIFake) -> None:
    # the SDK asks for base64 unless told otherwise, and decodes it to floats itself
    default = await client.embeddings.create(model="gpt-fake", input=["one", "two words"])
    assert openai_fake.last("/v1/embeddings").json["encoding_format"] == "base64"
    floats = await client.embeddings.create(
        model="gpt-fake", input=["one", "two words"], encoding_format="float"
    )
    assert [e.index for e in floats.data] == [0, 1]
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert floats.data[1].embedding == pytest.approx(embedding_of("two words"))
    assert floats.usage.prompt_tokens == 3
    short = await client.embeddings.create(model="gpt-fake", input="one", dimensions=3)
    assert len(short.data[0].embedding) == 3
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="nope", input="x")


async def test_the_official_openai_client_talks_to_ollamas_openai_routes(
    ollama_fake: OllamaFake,
) -> None:
    async with openai.AsyncOpenAI(base_url=f"{ollama_fake.origin}/v1", api_key="ollama") as client:
        await _use_ollamas_openai_routes(client)


async def _use_ollamas_openai_routes(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [(m.id, m.owned_by) for m in models.data] == [
        ("llama3.2:latest", "library"),
        ("qwen2.5:0.5b", "library"),
    ]
    reply = await client.chat.completions.create(
        model="llama3.2:latest", messages=[{"role": "user", "content": "hi there"}]
    )
    assert reply.choices[0].message.content == "Echo: hi there"
    assert reply.system_fingerprint == "fp_ollama" and reply.usage is not None
    stream = await client.chat.completions.create(
        model="llama3.2:latest",
        messages=[{"role": "user", "content": "a b"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: a b" and chunks[-1].usage is not None
    embedded = await client.embeddings.create(model="qwen2.5:0.5b", input=["x", "y"])
    assert embedded.data[1].embedding == pytest.approx(embedding_of("y"), abs=1e-6)
    completion = await client.completions.create(model="qwen2.5:0.5b", prompt="say it")
    assert completion.choices[0].text == "Echo: say it"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    assert "not found, try pulling it first" in str(missing.value)


async def test_the_fake_notices_a_client_that_leaves_mid_stream(openai_fake: OpenAIFake) -> None:
    openai_fake.tokens_per_reply, openai_fake.token_delay = 1000, 0.01
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{openai_fake.base_url}/chat/completions",
            json={"model": "gpt-fake", "messages": [], "stream": True},
            headers={"Authorization": "Bearer sk-fake-key"},
        )
        await response.content.readline()
        response.close()
    await asyncio.wait_for(openai_fake.client_disconnected.wait(), 2)
    assert openai_fake.streams_finished == 0


async def test_a_hanging_fake_is_released_by_stop() -> None:
    fake = OpenAIFake(hang=True)
    await fake.start()
    async with aiohttp.ClientSession() as http:
        request = asyncio.ensure_future(
            http.post(
                f"{fake.base_url}/chat/completions",
                json={},
                headers={"Authorization": "Bearer sk-fake-key"},
            )
        )
        await asyncio.sleep(0.2)
        assert not request.done()
        await fake.stop()
        response = await asyncio.wait_for(request, 2)
        assert response.status == 503
        response.release()

"""The real small LLM answers OpenAI chat completions, whole and streamed."""

from __future__ import annotations

import json

import aiohttp
import pytest

from stack.llm_setup import MODEL_ID

pytestmark = pytest.mark.llm

QUESTION = {"role": "user", "content": "Say hello in one short sentence."}


async def test_the_local_llm_lists_its_model_and_answers_a_chat_completion(
    llama_server: str,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{llama_server}/models") as reply:
            models = await reply.json()
        assert [model["id"] for model in models["data"]] == [MODEL_ID]

        body = {"model": MODEL_ID, "messages": [QUESTION], "max_tokens": 16, "seed": 1}
        async with http.post(f"{llama_server}/chat/completions", json=body) as reply:
            assert reply.status == 200
            completion = await reply.json()
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}
    assert completion["usage"]["completion_tokens"] >= 1


async def test_the_local_llm_streams_chunks_then_done(llama_server: str) -> None:
    body = {
        "model": MODEL_ID,
        "messages": [QUESTION],
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events: list[str] = []
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{llama_server}/chat/completions", json=body) as reply,
    ):
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        async for line in reply.content:
            text = line.decode().strip()
            if text.startswith("data: "):
                events.append(text.removeprefix("data: "))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    content = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert content.strip()
    assert any(chunk.get("usage") for chunk in chunks)

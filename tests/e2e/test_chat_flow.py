"""Models and chat completions through the gateway, the inference-proxy and the fakes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import openai
import pytest

from contracts import subjects
from gateway.app import Settings, serve
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.nats import SecuredNats
from tests.support.stack import Account, Stack

OPENAI_MODEL = "gpt-fake"
OLLAMA_MODEL = "llama3.2:latest"


def chat_body(model: str, text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def read_events(reply: aiohttp.ClientResponse) -> list[Any]:
    """The `data:` payloads of an SSE reply, `[DONE]` kept as a string."""
    events: list[Any] = []
    async for raw in reply.content:
        line = raw.decode().strip()
        if line.startswith("data:"):
            data = line[5:].strip()
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def content_of(events: list[Any]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
    )


async def test_models_from_both_backends_are_listed(stack: Stack, user: Account) -> None:
    status, body = await stack.call("GET", "/api/models", headers=user.key_auth)
    assert status == 200
    owned = {model["id"]: model["owned_by"] for model in body["data"]}
    assert owned[OPENAI_MODEL] == "openai"
    assert owned[OLLAMA_MODEL] == "ollama"
    for model in body["data"]:
        assert model["object"] == "model"
        assert {"id", "name", "created", "owned_by"} <= model.keys()
    by_id = {model["id"]: model for model in body["data"]}
    assert "urlIdx" in by_id[OPENAI_MODEL] and "openai" in by_id[OPENAI_MODEL]
    assert by_id[OLLAMA_MODEL]["ollama"]["urls"] == [0]
    status, again = await stack.call("GET", "/api/v1/models", headers=user.jwt_auth)
    assert status == 200
    assert {m["id"] for m in again["data"]} == set(owned)


@pytest.mark.parametrize("model", [OPENAI_MODEL, OLLAMA_MODEL])
async def test_a_non_stream_completion_answers_in_openai_shape(
    stack: Stack, user: Account, model: str
) -> None:
    status, body = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=chat_body(model, "hi you")
    )
    assert status == 200, body
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Echo: hi you"}
    assert body["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("model", [OPENAI_MODEL, OLLAMA_MODEL])
async def test_a_stream_relays_chunks_then_done(stack: Stack, user: Account, model: str) -> None:
    async with stack.http.post(
        f"{stack.url}/api/v1/chat/completions",
        headers={**user.key_auth, "X-Request-Id": "stream-req-1"},
        json=chat_body(model, "one two three", stream=True),
    ) as reply:
        assert reply.status == 200
        assert reply.content_type == "text/event-stream"
        assert reply.headers["Cache-Control"] == "no-cache"
        assert reply.headers["X-Request-Id"] == "stream-req-1"
        events = await read_events(reply)
    assert events[-1] == "[DONE]"
    assert content_of(events) == "Echo: one two three"
    chunks = [e for e in events if isinstance(e, dict)]
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert len({chunk["id"] for chunk in chunks}) == 1


async def test_an_unknown_model_is_404_model_not_found(stack: Stack, user: Account) -> None:
    for stream in (False, True):
        status, body = await stack.call(
            "POST",
            "/api/chat/completions",
            headers=user.key_auth,
            json=chat_body("no-such-model", stream=stream),
        )
        assert (status, body) == (404, {"detail": "Model not found"}), stream


async def test_malformed_json_and_a_bad_field_are_400_naming_the_field(
    stack: Stack, user: Account
) -> None:
    url = "/api/chat/completions"
    status, body = await stack.call("POST", url, headers=user.key_auth, data=b"{nope")
    assert (status, body) == (400, {"detail": "Malformed JSON body"})
    bad_role = {"model": OPENAI_MODEL, "messages": [{"role": "wizard", "content": "x"}]}
    status, body = await stack.call("POST", url, headers=user.key_auth, json=bad_role)
    assert status == 400
    assert "$.messages[0].role" in body["detail"]
    status, body = await stack.call(
        "POST", url, headers=user.key_auth, json=chat_body(OPENAI_MODEL, temperature=7)
    )
    assert status == 400
    assert "$.temperature" in body["detail"]


async def test_a_backend_that_hangs_is_a_bounded_gateway_error(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    backend_fakes[0].hang = True
    started = time.monotonic()
    status, body = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=chat_body(OPENAI_MODEL)
    )
    assert status in (502, 504)
    assert set(body) == {"detail"}
    assert time.monotonic() - started < 11  # the proxy's backend timeout (8 s) + margin


async def test_a_backend_error_before_streaming_is_a_json_error_not_sse(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    backend_fakes[0].error_status = 500
    async with stack.http.post(
        f"{stack.url}/api/chat/completions",
        headers=user.key_auth,
        json=chat_body(OPENAI_MODEL, stream=True),
    ) as reply:
        assert reply.status == 502
        assert reply.content_type == "application/json"
        assert set(await reply.json()) == {"detail"}


async def test_a_backend_failing_mid_stream_ends_with_an_error_event_and_done(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    backend_fakes[0].fail_after_chunks = 2
    async with stack.http.post(
        f"{stack.url}/api/chat/completions",
        headers=user.key_auth,
        json=chat_body(OPENAI_MODEL, "a b c d e f g", stream=True),
    ) as reply:
        assert reply.status == 200
        events = await read_events(reply)
    assert events[-1] == "[DONE]"
    assert "error" in events[-2]
    assert events[-2]["error"]["message"]


async def test_a_client_leaving_mid_stream_stops_the_backend(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    fake = backend_fakes[0]
    fake.tokens_per_reply = 200
    fake.token_delay = 0.02
    fake.client_disconnected.clear()
    async with stack.http.post(
        f"{stack.url}/api/chat/completions",
        headers=user.key_auth,
        json=chat_body(OPENAI_MODEL, stream=True),
    ) as reply:
        assert reply.status == 200
        await reply.content.readline()
    # leaving the block closed the connection; the proxy must hang up on the backend
    await asyncio.wait_for(fake.client_disconnected.wait(), timeout=3)


async def test_the_official_openai_sdk_works_against_the_gateway(
    stack: Stack, user: Account
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{stack.url}/api", api_key=user.api_key)
    try:
        completion = await client.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "sdk please"}]
        )
        assert completion.choices[0].message.content == "Echo: sdk please"
        stream = await client.chat.completions.create(
            model=OLLAMA_MODEL,
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        assert "".join(pieces) == "Echo: stream please"
        wrong = client.with_options(api_key="sk-wrong")
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}]
            )
    finally:
        await client.close()


async def test_a_stream_silent_past_the_gateway_idle_limit_ends_with_error_and_done(
    stack: Stack,
    stack_nats: SecuredNats,
    user: Account,
    backend_fakes: tuple[OpenAIFake, OllamaFake],
) -> None:
    fake = backend_fakes[0]
    fake.token_delay = 1.5  # under the proxy's idle limit, over this gateway's
    fake.client_disconnected.clear()
    settings = Settings(
        **stack_nats.login(subjects.GATEWAY_SERVICE), port=0, stream_idle_timeout_seconds=0.3
    )
    async with serve(settings) as impatient:
        started = time.monotonic()
        async with stack.http.post(
            f"{impatient.url}/api/chat/completions",
            headers=user.key_auth,
            json=chat_body(OPENAI_MODEL, "slow words here", stream=True),
        ) as reply:
            assert reply.status == 200
            events = await read_events(reply)
        assert time.monotonic() - started < 1.5
    assert events[-1] == "[DONE]"
    assert events[-2] == {"error": {"message": "The model stopped responding"}}
    # the gateway told the proxy to stop: the backend connection is closed
    await asyncio.wait_for(fake.client_disconnected.wait(), timeout=3)

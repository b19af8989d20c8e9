"""CHAT_COMPLETE: one answer from an OpenAI-compatible or an Ollama backend, and every
way a backend can fail mapped to a clear error in bounded time."""

from __future__ import annotations

import time

import pytest

from common.bus import Bus
from common.errors import RagwayError
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.inference_proxy.conftest import chat_body, complete, running_proxy

OLLAMA_USAGE_FIELDS = {
    "response_token/s",
    "prompt_token/s",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "eval_count",
    "eval_duration",
    "approximate_total",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
}


async def test_an_openai_backend_answers_with_its_key_and_without_ragway_fields(
    nats_url: str, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with running_proxy(
        nats_url,
        openai_api_base_urls=openai_fake.base_url,
        openai_api_keys=openai_fake.api_key or "",
    ):
        reply = await complete(
            bus,
            chat_body(
                "gpt-fake",
                "two words",
                files=[{"type": "file", "id": "f1"}],
                chat_id="c1",
                tool_ids=[],
                temperature=0.2,
                logit_bias={"50256": -100},
            ),
        )
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "Echo: two words"}
    assert reply["usage"]["completion_tokens"] == 3
    sent = openai_fake.last("/v1/chat/completions")
    assert sent.headers["Authorization"] == "Bearer sk-fake-key"
    assert not {"files", "chat_id", "tool_ids"} & set(sent.json)
    assert sent.json["logit_bias"] == {"50256": -100} and sent.json["temperature"] == 0.2
    assert sent.json["stream"] is False


async def test_an_ollama_backend_answers_in_openai_shape_with_open_webui_usage(
    nats_url: str, bus: Bus, ollama_fake: OllamaFake
) -> None:
    body = chat_body("llama3.2:latest", max_tokens=2, temperature=0.1, stop="END", seed=7)
    body["messages"] = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look at"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            ],
        },
    ]
    async with running_proxy(nats_url, ollama_base_urls=ollama_fake.origin):
        reply = await complete(bus, body)
    assert reply["object"] == "chat.completion" and reply["id"].startswith("chatcmpl-")
    assert reply["choices"][0]["message"]["content"] == "Echo: look "
    assert reply["choices"][0]["finish_reason"] == "length"
    usage = reply["usage"]
    assert set(usage) >= OLLAMA_USAGE_FIELDS
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (4, 2, 6)
    assert usage["response_token/s"] == 50.0 and usage["approximate_total"] == "0h0m1s"
    sent = ollama_fake.last("/api/chat").json
    assert sent["stream"] is False
    assert sent["options"] == {"num_predict": 2, "temperature": 0.1, "stop": ["END"], "seed": 7}
    assert sent["messages"][1] == {"role": "user", "content": "look at", "images": ["QUJD"]}


async def test_an_unknown_model_is_not_found(
    nats_url: str, bus: Bus, ollama_fake: OllamaFake
) -> None:
    async with running_proxy(nats_url, ollama_base_urls=ollama_fake.origin):
        with pytest.raises(RagwayError) as missing:
            await complete(bus, chat_body("no-such-model"))
    assert (missing.value.code, missing.value.detail) == ("not_found", "Model not found")


async def test_a_backend_that_went_down_is_a_quick_bad_gateway(nats_url: str, bus: Bus) -> None:
    fake = OpenAIFake(api_key=None)
    await fake.start()
    async with running_proxy(nats_url, openai_api_base_urls=fake.base_url):
        await complete(bus, chat_body("gpt-fake"))  # the model list is now cached
        await fake.stop()
        started = time.monotonic()
        with pytest.raises(RagwayError) as down:
            await complete(bus, chat_body("gpt-fake"))
        assert time.monotonic() - started < 1
    assert down.value.code == "bad_gateway"
    assert down.value.detail == "OpenAI-compatible backend #0 is unreachable"


async def test_a_hanging_backend_times_out_within_the_configured_bound(
    nats_url: str, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with running_proxy(
        nats_url,
        openai_api_base_urls=openai_fake.base_url,
        openai_api_keys="sk-fake-key",
        backend_timeout_seconds=0.5,
    ):
        openai_fake.hang = True
        started = time.monotonic()
        with pytest.raises(RagwayError) as slow:
            await complete(bus, chat_body("gpt-fake"))
        assert 0.4 < time.monotonic() - started < 1.5
    assert slow.value.code == "timeout" and "0.5s" in slow.value.detail


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid"),
        (404, "not_found"),
        (429, "rate_limited"),
        (500, "bad_gateway"),
        (401, "bad_gateway"),
        (307, "bad_gateway"),
    ],
)
async def test_backend_error_statuses_map_to_ragway_codes(
    nats_url: str, bus: Bus, openai_fake: OpenAIFake, status: int, code: str
) -> None:
    async with running_proxy(
        nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
    ):
        openai_fake.error_status = status
        with pytest.raises(RagwayError) as failed:
            await complete(bus, chat_body("gpt-fake"))
    assert failed.value.code == code
    if status in (400, 429):
        assert failed.value.detail == f"Fake backend error {status}"
    if status == 401:
        assert "credentials" in failed.value.detail
    if status == 307:
        assert "redirect (HTTP 307)" in failed.value.detail


async def test_a_wrong_key_is_a_bad_gateway_naming_the_credentials(
    nats_url: str, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with running_proxy(
        nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-wrong"
    ):
        openai_fake.api_key = None  # let the model list through
        await complete(bus, chat_body("gpt-fake"))
        openai_fake.api_key = "sk-right"
        with pytest.raises(RagwayError) as rejected:
            await complete(bus, chat_body("gpt-fake"))
    assert rejected.value.code == "bad_gateway" and "HTTP 401" in rejected.value.detail

"""/metrics through the whole stack: chat completions move the chat and service counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import Account, Stack

MODEL = "gpt-fake"


async def samples(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with stack.http.get(f"{stack.url}/metrics") as reply:
        assert reply.status == 200
        text = await reply.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


def proxy_requests(values: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return sum(
        v
        for (name, labels), v in values.items()
        if name == "ragway_service_requests_total" and dict(labels)["service"] == "inference-proxy"
    )


async def test_completions_move_tokens_ttft_and_the_proxys_stats(
    stack: Stack, user: Account
) -> None:
    before = await samples(stack)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "count my tokens"}]}
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=body
    )
    assert status == 200, reply
    async with stack.http.post(
        f"{stack.url}/api/chat/completions", headers=user.key_auth, json={**body, "stream": True}
    ) as streamed:
        assert streamed.status == 200
        assert (await streamed.read()).rstrip().endswith(b"[DONE]")
    after = await samples(stack)

    ttft = "ragway_chat_time_to_first_token_seconds_count"
    assert get(after, ttft) == get(before, ttft) + 1
    prompt_tokens = reply["usage"]["prompt_tokens"]
    assert prompt_tokens > 0
    tokens_in = get(after, "ragway_chat_tokens_total", model=MODEL, direction="in")
    # the non-streamed reply's usage at least; the stream's end adds its own
    assert tokens_in >= get(before, "ragway_chat_tokens_total", model=MODEL, direction="in") + (
        prompt_tokens
    )
    tokens_out = get(after, "ragway_chat_tokens_total", model=MODEL, direction="out")
    assert tokens_out > get(before, "ragway_chat_tokens_total", model=MODEL, direction="out")
    chat = get(after, "ragway_http_requests_total", route="api_chat", method="POST", status="200")
    assert (
        chat
        - get(before, "ragway_http_requests_total", route="api_chat", method="POST", status="200")
        == 2
    )
    assert proxy_requests(after) >= proxy_requests(before) + 2

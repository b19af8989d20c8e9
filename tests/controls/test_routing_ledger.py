"""The ledger knows which backend answered (`group_by=backend`: chat, streamed or not,
and embeddings), and the Ollama
pass-through counts against limits and is recorded with the tokens Ollama reported."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.controls.conftest import set_limit
from tests.controls.test_ledger import row, usage
from tests.controls.test_limits_http import away_from_a_minute_boundary
from tests.support.stack import Account, Stack

ASK = [{"role": "user", "content": "one two three"}]
OLLAMA_MODEL = "llama3.2:latest"


async def post(api: Stack, account: Account, path: str, body: dict[str, Any]) -> tuple[int, str]:
    async with api.http.post(api.url + path, headers=account.key_auth, json=body) as reply:
        return reply.status, await reply.text()


async def test_the_ledger_records_which_backend_answered(stack: Stack, user: Account) -> None:
    started = time.time()
    for model, stream in (("gpt-fake", False), ("gpt-fake", True), (OLLAMA_MODEL, False)):
        status, text = await post(
            stack,
            user,
            "/api/chat/completions",
            {"model": model, "messages": ASK, "stream": stream},
        )
        assert status == 200, text
    status, text = await post(
        stack, user, "/api/embeddings", {"model": "gpt-fake", "input": ["one", "two"]}
    )
    assert status == 200, text
    by_backend = await usage(stack, user, f"from={started - 1}&group_by=backend")
    assert row(by_backend, "backend", "openai/0")["requests"] == 3
    assert row(by_backend, "backend", "ollama/0")["requests"] == 1


async def test_ollama_pass_through_is_recorded_with_the_tokens_ollama_reported(
    stack: Stack, user: Account
) -> None:
    started = time.time()
    status, text = await post(
        stack,
        user,
        "/ollama/api/chat",
        {"model": OLLAMA_MODEL, "messages": ASK, "stream": False},
    )
    assert status == 200, text
    answer = json.loads(text)
    status, text = await post(
        stack, user, "/ollama/api/generate", {"model": OLLAMA_MODEL, "prompt": "four five"}
    )
    assert status == 200, text
    streamed = json.loads(text.strip().splitlines()[-1])  # NDJSON: the counts come last
    assert streamed["done"] is True
    status, text = await post(
        stack, user, "/ollama/api/embed", {"model": OLLAMA_MODEL, "input": ["a b c", "d"]}
    )
    assert status == 200, text
    embedded = json.loads(text)
    status, _ = await post(stack, user, "/ollama/api/chat", {"model": "no-such-model"})
    assert status == 404

    by_model = await usage(stack, user, f"from={started - 1}&group_by=model")
    ollama = row(by_model, "model", OLLAMA_MODEL)
    assert ollama["requests"] == 3 and ollama["errors"] == 0
    assert ollama["prompt_tokens"] == (
        answer["prompt_eval_count"] + streamed["prompt_eval_count"] + embedded["prompt_eval_count"]
    )
    assert ollama["completion_tokens"] == answer["eval_count"] + streamed["eval_count"]
    assert row(by_model, "model", "no-such-model")["errors"] == 1
    by_backend = await usage(stack, user, f"from={started - 1}&group_by=backend")
    assert row(by_backend, "backend", "ollama/0")["requests"] == 4


async def test_ollama_pass_through_counts_against_the_callers_limits(
    stack: Stack, user: Account
) -> None:
    await away_from_a_minute_boundary()
    await set_limit(stack, scope="user", id=user.id, rpm=2)
    statuses = []
    for _ in range(3):
        status, text = await post(
            stack,
            user,
            "/ollama/api/chat",
            {"model": OLLAMA_MODEL, "messages": ASK, "stream": False},
        )
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert "2 requests per minute" in json.loads(text)["detail"]
    # the chat path shares the same count
    status, _ = await post(
        stack, user, "/api/chat/completions", {"model": "gpt-fake", "messages": ASK}
    )
    assert status == 429
    # what runs no model is not counted
    async with stack.http.get(stack.url + "/ollama/api/tags", headers=user.key_auth) as reply:
        assert reply.status == 200

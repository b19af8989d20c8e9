"""The usage ledger: every completion recorded with its user, key, model, tokens and
outcome; `GET /api/v1/usage` sums them (own rows; admins everyone's); a gateway killed
right after answering has already recorded the answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.controls.conftest import gateway_process, set_limit, wait_listening
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.stack import Account, Stack

ASK = [{"role": "user", "content": "one two three"}]


async def usage(api: Stack, account: Account, query: str) -> dict[str, Any]:
    status, reply = await api.call("GET", f"/api/v1/usage?{query}", headers=account.key_auth)
    assert status == 200, reply
    return dict(reply)


def row(reply: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    found = [r for r in reply["rows"] if r[field] == value]
    assert len(found) == 1, reply
    return found[0]


async def test_completions_are_recorded_with_their_tokens_and_summed(
    stack: Stack,
    second: Stack,
    user: Account,
    admin: Account,
    backend_fakes: tuple[OpenAIFake, OllamaFake],
) -> None:
    openai_fake, _ = backend_fakes
    openai_fake.tokens_per_reply = 5
    started = time.time()
    status, key = await stack.call(
        "POST", "/api/v1/auths/api_keys", headers=user.jwt_auth, json={"name": "ledger"}
    )
    keyed = Account(user.id, user.email, user.role, user.token, key["api_key"])
    for api, account, stream in (
        (stack, user, False),
        (second, keyed, True),
        (stack, keyed, False),
    ):
        status, _ = await api.call(
            "POST",
            "/api/chat/completions",
            headers=account.key_auth,
            json={"model": "gpt-fake", "messages": ASK, "stream": stream},
        )
        assert status == 200
    openai_fake.error_status = 500
    status, _ = await stack.call(
        "POST",
        "/api/chat/completions",
        headers=user.key_auth,
        json={"model": "gpt-fake-mini", "messages": ASK},
    )
    assert status >= 500

    by_model = await usage(second, user, f"from={started - 1}&group_by=model")
    fake = row(by_model, "model", "gpt-fake")
    assert fake == {
        "model": "gpt-fake",
        "requests": 3,
        "errors": 0,
        "prompt_tokens": 9,
        "completion_tokens": 15,
        "total_tokens": 24,
    }
    assert row(by_model, "model", "gpt-fake-mini")["errors"] == 1
    by_key = await usage(stack, user, f"from={started - 1}&group_by=key")
    assert row(by_key, "key", key["id"])["requests"] == 2
    assert row(by_key, "key", "")["requests"] == 2  # the user's own key: no named key
    by_day = await usage(stack, user, "group_by=day")
    assert sum(r["requests"] for r in by_day["rows"]) == 4

    # a user sees only its own rows; an admin everyone's, or one user's
    other = await stack.with_key(await stack.signup())
    assert (await usage(stack, other, "group_by=user"))["rows"] == []
    status, _ = await stack.call("GET", f"/api/v1/usage?user_id={user.id}", headers=other.key_auth)
    assert status == 403
    everyone = await usage(stack, admin, f"from={started - 1}&group_by=user")
    assert row(everyone, "user", user.id)["requests"] == 4
    one = await usage(stack, admin, f"from={started - 1}&group_by=user&user_id={user.id}")
    assert [r["user"] for r in one["rows"]] == [user.id]
    # a range before any of it is empty
    assert (await usage(stack, user, f"from={started - 100}&to={started - 50}"))["rows"] == []


async def test_embeddings_are_recorded_with_their_tokens_and_count_against_limits(
    stack: Stack, user: Account
) -> None:
    started = time.time()
    body = {"model": "gpt-fake", "input": ["one two", "three"]}
    for path in ("/api/embeddings", "/api/v1/embeddings"):
        status, reply = await stack.call("POST", path, headers=user.key_auth, json=body)
        assert status == 200, reply
    by_model = await usage(stack, user, f"from={started - 1}&group_by=model")
    assert row(by_model, "model", "gpt-fake") == {
        "model": "gpt-fake",
        "requests": 2,
        "errors": 0,
        "prompt_tokens": 6,  # the backend's usage: three words each time
        "completion_tokens": 0,
        "total_tokens": 6,
    }
    await set_limit(stack, scope="user", id=user.id, rpm=1)
    # three calls: at most one minute boundary falls between them, so one is over the limit
    refused = []
    for _ in range(3):
        status, reply = await stack.call(
            "POST", "/api/embeddings", headers=user.key_auth, json=body
        )
        if status == 429:
            refused.append(reply["detail"])
    assert refused and "1 requests per minute" in refused[0], refused


async def test_bad_usage_queries_are_400(stack: Stack, user: Account) -> None:
    for query in ("group_by=week", "from=yesterday", "from=10&to=5"):
        status, reply = await stack.call("GET", f"/api/v1/usage?{query}", headers=user.key_auth)
        assert status == 400, (query, reply)


async def test_a_gateway_killed_right_after_answering_has_recorded_the_answer(
    stack: Stack, stack_nats_url: str, user: Account
) -> None:
    started = time.time()
    answered = 0
    async with aiohttp.ClientSession() as http:
        for stream in (False, True):
            with gateway_process(stack_nats_url) as gateway:
                await wait_listening(gateway.url)
                body = {"model": "gpt-fake", "messages": ASK, "stream": stream}
                async with http.post(
                    f"{gateway.url}/api/chat/completions", headers=user.key_auth, json=body
                ) as reply:
                    text = await reply.text()
                    # the answer is complete: the gateway dies before anything else runs
                    gateway.kill()
                assert reply.status == 200, text
                assert (stream and text.rstrip().endswith("[DONE]")) or '"choices"' in text
                answered += 1
    await asyncio.sleep(0)
    rows = (await usage(stack, user, f"from={started - 1}&group_by=model"))["rows"]
    assert sum(r["requests"] for r in rows) == answered == 2

"""Limits over HTTP across two gateways: the openai SDK sees RateLimitError with a
Retry-After and a detail naming the limit; concurrent streams stop at the limit;
budgets are charged the backend's usage; admins manage limits, users may not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai

from tests.controls.conftest import set_limit
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.stack import Account, Stack

MODEL = "gpt-fake"
ASK = [{"role": "user", "content": "one two three four"}]


def sdk(api: Stack, account: Account) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{api.url}/api", api_key=account.api_key, max_retries=0)


async def away_from_a_minute_boundary() -> None:
    left = 60 - time.time() % 60
    if left < 8:
        await asyncio.sleep(left + 0.1)


async def test_two_gateways_share_an_rpm_limit_and_the_sdk_raises_rate_limit_error(
    stack: Stack, second: Stack, user: Account
) -> None:
    await away_from_a_minute_boundary()
    limit = await set_limit(stack, scope="user", id=user.id, rpm=4)
    assert limit["limit_id"] == f"user.{user.id}"
    clients = [sdk(stack, user), sdk(second, user)]
    answered = 0
    refusal: openai.RateLimitError | None = None
    for turn in range(8):
        try:
            await clients[turn % 2].chat.completions.create(model=MODEL, messages=ASK)  # type: ignore[arg-type]
            answered += 1
        except openai.RateLimitError as exc:
            refusal = exc
    assert answered == 4
    assert refusal is not None and refusal.status_code == 429
    assert 1 <= int(refusal.response.headers["Retry-After"]) <= 60
    detail = refusal.response.json()["detail"]
    assert f"user.{user.id}" in detail and "4 requests per minute" in detail


async def test_streams_at_a_concurrency_limit_are_refused_beyond_it(
    stack: Stack,
    second: Stack,
    user: Account,
    backend_fakes: tuple[OpenAIFake, OllamaFake],
) -> None:
    openai_fake, _ = backend_fakes
    openai_fake.token_delay = 0.1  # 20 tokens: each stream lasts about two seconds
    openai_fake.tokens_per_reply = 20
    await set_limit(stack, scope="user", id=user.id, concurrent=2)

    async def stream(api: Stack) -> int:
        body = {"model": MODEL, "messages": ASK, "stream": True}
        async with api.http.post(
            f"{api.url}/api/chat/completions", headers=user.key_auth, json=body
        ) as reply:
            text = await reply.text()
            if reply.status == 200:
                assert text.rstrip().endswith("data: [DONE]"), text[-200:]
            else:
                assert "2 requests at once" in text and reply.headers["Retry-After"] == "1"
            return reply.status

    statuses = await asyncio.gather(*(stream((stack, second)[i % 2]) for i in range(6)))
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
    openai_fake.token_delay = 0.0
    deadline = time.monotonic() + 5
    while await stream(stack) != 200:  # the slots came back once the streams ended
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_a_token_budget_is_charged_the_backends_usage(
    stack: Stack, second: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    openai_fake, _ = backend_fakes
    openai_fake.tokens_per_reply = 40
    # prompt 4 words + 40 pieces = 44 tokens per answer; the estimate is ~bytes/4 + 8
    await set_limit(stack, scope="user", id=user.id, budget={"tokens": 200, "period": "month"})
    answered = 0
    for turn in range(12):
        api = (stack, second)[turn % 2]
        status, reply = await api.call(
            "POST",
            "/api/chat/completions",
            headers=user.key_auth,
            json={"model": MODEL, "messages": ASK, "max_tokens": 8, "stream": turn % 3 == 0},
        )
        if status == 429:
            assert "tokens per month" in reply["detail"]
            break
        assert status == 200
        answered += 1
    # 200 tokens hold four 44-token answers, five at the very most (one settled late)
    assert 4 <= answered <= 5


async def test_admins_manage_limits_and_bad_forms_are_400(
    stack: Stack, admin: Account, user: Account
) -> None:
    auth = admin.key_auth
    for form in (
        {"scope": "team", "id": "x", "rpm": 1},
        {"scope": "user", "id": "bad id!", "rpm": 1},
        {"scope": "user", "id": user.id, "rpm": -1},
        {"scope": "user", "id": user.id},
        {"scope": "user", "id": user.id, "budget": {"tokens": 5, "period": "week"}},
        {"scope": "user", "id": user.id, "rpm": 1, "rmp": 2},
    ):
        status, reply = await stack.call("POST", "/api/v1/limits", headers=auth, json=form)
        assert status == 400, (form, reply)
        assert set(reply) == {"detail"}
    made: dict[str, Any] = await set_limit(stack, scope="role", id="pending", tpm=1000)
    status, listed = await stack.call("GET", "/api/v1/limits", headers=auth)
    assert status == 200 and made in listed
    status, _ = await stack.call("DELETE", f"/api/v1/limits/{made['limit_id']}", headers=auth)
    assert status == 200
    status, listed = await stack.call("GET", "/api/v1/limits", headers=auth)
    assert made not in listed
    status, _ = await stack.call("DELETE", f"/api/v1/limits/{made['limit_id']}", headers=auth)
    assert status == 404
    status, _ = await stack.call("GET", "/api/v1/limits", headers=user.key_auth)
    assert status == 403


async def test_a_key_limit_binds_only_that_key(stack: Stack, user: Account) -> None:
    await away_from_a_minute_boundary()
    status, key = await stack.call(
        "POST", "/api/v1/auths/api_keys", headers=user.jwt_auth, json={"name": "ci"}
    )
    assert status == 200
    await set_limit(stack, scope="key", id=key["id"], rpm=1)
    keyed = {"Authorization": f"Bearer {key['api_key']}"}
    body = {"model": MODEL, "messages": ASK}
    statuses = []
    for headers in (keyed, keyed, user.key_auth):
        status, _ = await stack.call("POST", "/api/chat/completions", headers=headers, json=body)
        statuses.append(status)
    assert statuses == [200, 429, 200]

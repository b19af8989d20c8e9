"""Workspace models ("presets") end to end: made over HTTP, listed to whoever may read
them, and used by their id (plain HTTP and the official openai SDK, streamed or not)."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import openai
import pytest

from tests.e2e.rag_helpers import completed_upload
from tests.e2e.test_chat_flow import content_of, read_events
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.stack import Account, Stack

pytestmark = pytest.mark.usefixtures("rag")

BASE = "gpt-fake"
FACTS = b"# Field guide\n\nCommon swifts can sleep while flying. They land only to nest.\n"
QUESTION = [{"role": "user", "content": "Which bird can sleep while flying?"}]


def backend_body(fakes: tuple[OpenAIFake, OllamaFake]) -> Any:
    return fakes[0].last("/v1/chat/completions").json


async def make_preset(stack: Stack, owner: Account, **fields: Any) -> dict[str, Any]:
    body = {
        "id": f"helper-{uuid.uuid4().hex[:8]}",
        "base_model_id": BASE,
        "name": "Helper",
        "meta": {"description": "answers briefly"},
        "params": {"system": "You are brief.", "temperature": 0.3},
        **fields,
    }
    status, preset = await stack.call(
        "POST", "/api/v1/models/create", headers=owner.key_auth, json=body
    )
    assert status == 200, preset
    return dict(preset)


async def collection_with_facts(stack: Stack, owner: Account) -> str:
    record = await completed_upload(stack, owner, FACTS, "birds.md")
    status, knowledge = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=owner.key_auth, json={"name": "Birds"}
    )
    assert status == 200, knowledge
    status, _ = await stack.call(
        "POST",
        f"/api/v1/knowledge/{knowledge['id']}/file/add",
        headers=owner.key_auth,
        json={"file_id": record["id"]},
    )
    assert status == 200
    return str(knowledge["id"])


async def listed_ids(stack: Stack, account: Account) -> dict[str, Any]:
    status, models = await stack.call("GET", "/api/models", headers=account.key_auth)
    assert status == 200, models
    return {model["id"]: model for model in models["data"]}


async def until_listed(stack: Stack, account: Account, model_id: str, listed: bool) -> None:
    """Wait out the proxy's model-list cache (bounded)."""
    for _ in range(100):
        if (model_id in await listed_ids(stack, account)) == listed:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{model_id} listed={not listed} after 10 s")


async def test_a_preset_applies_its_system_prompt_and_params_and_the_request_wins(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    preset = await make_preset(
        stack,
        user,
        params={
            "system": "Today is {{CURRENT_DATE}}. You help {{USER_NAME}}.",
            "temperature": 0.3,
            "top_p": 0.5,
            "max_tokens": 64,
        },
    )
    assert preset["access_grants"] == [] and preset["write_access"] is True
    entry = (await listed_ids(stack, user))[preset["id"]]
    assert (entry["owned_by"], entry["preset"]) == ("openai", True)
    assert entry["info"]["base_model_id"] == BASE

    status, chat = await stack.call(
        "POST", "/api/v1/chats/new", headers=user.key_auth, json={"chat": {"title": "p"}}
    )
    assert status == 200
    ask = [{"role": "system", "content": "Answer in English."}, *QUESTION]
    for stream in (False, True):
        body = {"model": preset["id"], "messages": ask, "top_p": 0.9, "stream": stream}
        body["chat_id"] = chat["id"]
        async with stack.http.post(
            f"{stack.url}/api/chat/completions", headers=user.key_auth, json=body
        ) as reply:
            assert reply.status == 200, await reply.text()
            answer = content_of(await read_events(reply)) if stream else await reply.json()
        assert answer
        sent = backend_body(backend_fakes)
        today = datetime.date.today().isoformat()
        assert sent["model"] == BASE
        assert sent["messages"][0] == {
            "role": "system",
            "content": f"Today is {today}. You help Test User.\nAnswer in English.",
        }
        assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.3, 0.9, 64)
    status, history = await stack.call("GET", f"/api/v1/chats/{chat['id']}", headers=user.key_auth)
    assert status == 200
    models = [m.get("model") for m in history["chat"]["history"]["messages"].values()]
    assert preset["id"] in models


async def test_a_preset_with_knowledge_answers_with_sources_over_http_and_the_sdk(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    knowledge_id = await collection_with_facts(stack, user)
    preset = await make_preset(
        stack, user, meta={"knowledge": [{"id": knowledge_id, "type": "collection"}]}
    )
    status, answer = await stack.call(
        "POST",
        "/api/chat/completions",
        headers=user.key_auth,
        json={"model": preset["id"], "messages": QUESTION},
    )
    assert status == 200, answer
    assert "swifts can sleep" in answer["sources"][0]["document"][0]
    prompt = backend_body(backend_fakes)["messages"][-1]["content"]
    assert "swifts can sleep while flying" in prompt

    sdk = openai.AsyncOpenAI(base_url=f"{stack.url}/api", api_key=user.api_key, max_retries=0)
    try:
        completion = await sdk.chat.completions.create(
            model=preset["id"],
            messages=QUESTION,  # type: ignore[arg-type]
        )
        assert completion.choices[0].message.content
        sources = (completion.model_extra or {})["sources"]
        assert sources[0]["source"]["id"] == knowledge_id
        stream = await sdk.chat.completions.create(
            model=preset["id"],
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
        )
        pieces = [chunk async for chunk in stream]
        assert (pieces[0].model_extra or {}).get("sources")
        assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
        models = await sdk.models.list()
        assert preset["id"] in {m.id for m in models.data}
    finally:
        await sdk.close()


async def test_another_user_sees_a_preset_only_through_a_user_or_group_grant(
    stack: Stack, admin: Account
) -> None:
    owner = await stack.with_key(await stack.signup())
    other = await stack.with_key(await stack.signup())
    preset = await make_preset(stack, owner)
    one = f"/api/v1/models/model?id={preset['id']}"
    ask = {"model": preset["id"], "messages": QUESTION}

    assert preset["id"] not in await listed_ids(stack, other)
    assert (await stack.call("GET", one, headers=other.key_auth))[0] == 404
    status, listing = await stack.call("GET", "/api/v1/models/", headers=other.key_auth)
    assert status == 200 and preset["id"] not in {p["id"] for p in listing["items"]}
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=other.key_auth, json=ask
    )
    assert (status, reply) == (404, {"detail": "Model not found"})

    status, group = await stack.call(
        "POST", "/api/v1/groups/create", headers=admin.key_auth, json={"name": "Helpers"}
    )
    assert status == 200
    status, _ = await stack.call(
        "POST",
        f"/api/v1/groups/id/{group['id']}/users/add",
        headers=admin.key_auth,
        json={"user_ids": [other.id]},
    )
    assert status == 200
    for grant in (
        {"principal_type": "group", "principal_id": group["id"], "permission": "read"},
        {"principal_type": "user", "principal_id": other.id, "permission": "read"},
    ):
        status, shared = await stack.call(
            "POST",
            "/api/v1/models/model/access/update",
            headers=owner.key_auth,
            json={"id": preset["id"], "access_grants": [grant]},
        )
        assert status == 200 and shared["access_grants"] == [grant], shared
        assert preset["id"] in await listed_ids(stack, other)
        status, seen = await stack.call("GET", one, headers=other.key_auth)
        assert status == 200 and seen["write_access"] is False
        assert seen["params"] == {}  # the system prompt stays the curator's
        status, reply = await stack.call(
            "POST", "/api/chat/completions", headers=other.key_auth, json=ask
        )
        assert status == 200, reply
        for method, path, body in (
            ("POST", f"/api/v1/models/model/update?id={preset['id']}", {**preset, "name": "x"}),
            ("POST", f"/api/v1/models/model/toggle?id={preset['id']}", None),
            ("DELETE", f"/api/v1/models/model/delete?id={preset['id']}", None),
        ):
            status, refused = await stack.call(method, path, headers=other.key_auth, json=body)
            assert status == 403, (path, refused)

    status, _ = await stack.call(
        "POST",
        "/api/v1/models/model/access/update",
        headers=owner.key_auth,
        json={"id": preset["id"], "access_grants": []},
    )
    assert status == 200
    assert (await stack.call("GET", one, headers=other.key_auth))[0] == 404


async def test_a_preset_whose_base_model_or_knowledge_is_gone_says_which(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    knowledge_id = await collection_with_facts(stack, user)
    on_knowledge = await make_preset(
        stack, user, meta={"knowledge": [{"id": knowledge_id, "type": "collection"}]}
    )
    status, _ = await stack.call(
        "DELETE", f"/api/v1/knowledge/{knowledge_id}/delete", headers=user.key_auth
    )
    assert status == 200
    for stream in (False, True):
        status, reply = await stack.call(
            "POST",
            "/api/chat/completions",
            headers=user.key_auth,
            json={"model": on_knowledge["id"], "messages": QUESTION, "stream": stream},
        )
        assert status == 400 and knowledge_id in reply["detail"], reply
        assert on_knowledge["id"] in reply["detail"]

    fake = backend_fakes[0]
    fake.models.append("gpt-fake-retired")
    try:
        await until_listed(stack, user, "gpt-fake-retired", True)
        retired = await make_preset(stack, user, base_model_id="gpt-fake-retired")
    finally:
        fake.models.remove("gpt-fake-retired")
    await until_listed(stack, user, "gpt-fake-retired", False)
    assert retired["id"] not in await listed_ids(stack, user)
    status, reply = await stack.call(
        "POST",
        "/api/chat/completions",
        headers=user.key_auth,
        json={"model": retired["id"], "messages": QUESTION},
    )
    assert status == 400 and "gpt-fake-retired" in reply["detail"], reply


async def test_toggle_update_delete_and_bad_forms(stack: Stack, user: Account) -> None:
    preset = await make_preset(stack, user)
    path = f"/api/v1/models/model/toggle?id={preset['id']}"
    status, off = await stack.call("POST", path, headers=user.key_auth)
    assert status == 200 and off["is_active"] is False
    assert preset["id"] not in await listed_ids(stack, user)
    status, reply = await stack.call(
        "POST",
        "/api/chat/completions",
        headers=user.key_auth,
        json={"model": preset["id"], "messages": QUESTION},
    )
    assert status == 400 and "turned off" in reply["detail"]
    status, on = await stack.call("POST", path, headers=user.key_auth)
    assert on["is_active"] is True

    status, updated = await stack.call(
        "POST",
        f"/api/v1/models/model/update?id={preset['id']}",
        headers=user.key_auth,
        json={
            **{k: v for k, v in preset.items() if k != "access_grants"},
            "name": "Renamed",
            "access_control": None,
        },
    )
    assert status == 200 and updated["name"] == "Renamed", updated
    assert updated["access_control"] is None  # legacy null: public read
    status, updated = await stack.call(
        "POST",
        "/api/v1/models/model/update",
        headers=user.key_auth,
        json={"id": preset["id"], "base_model_id": BASE, "name": "Again", "meta": {}},
    )
    assert status == 200 and updated["access_control"] is None  # grants absent: unchanged

    for body, needle in (
        ({"id": preset["id"]}, "taken"),
        ({"id": BASE}, "taken"),
        ({"base_model_id": "no-such-model"}, "no-such-model"),
        ({"base_model_id": None}, "base_model_id"),
        ({"meta": {"knowledge": [{"id": "no-such-collection"}]}}, "no-such-collection"),
        ({"meta": {"toolIds": ["no_such_tool"]}}, "no_such_tool"),
        ({"params": {"temperature": 9}}, "temperature"),
        ({"id": "has space"}, "id"),
    ):
        body = {"id": f"x-{uuid.uuid4().hex[:6]}", "base_model_id": BASE, "name": "X", **body}
        status, reply = await stack.call(
            "POST", "/api/v1/models/create", headers=user.key_auth, json=body
        )
        assert status in (400, 409) and needle in reply["detail"], (body, reply)

    status, deleted = await stack.call(
        "POST", "/api/v1/models/model/delete", headers=user.key_auth, json={"id": preset["id"]}
    )
    assert (status, deleted) == (200, True)
    assert (
        await stack.call("GET", f"/api/v1/models/model?id={preset['id']}", headers=user.key_auth)
    )[0] == 404

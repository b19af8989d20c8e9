"""Chats over HTTP: CRUD, ownership, paging, and completions with `chat_id` appending."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.test_chat_flow import OLLAMA_MODEL, OPENAI_MODEL, chat_body, read_events
from tests.support.stack import Account, Stack


async def new_chat(stack: Stack, account: Account, **chat: Any) -> dict[str, Any]:
    status, body = await stack.call(
        "POST", "/api/v1/chats/new", headers=account.jwt_auth, json={"chat": chat}
    )
    assert status == 200, body
    return body


async def test_a_new_chat_is_stored_with_its_fields_and_read_back(
    stack: Stack, user: Account
) -> None:
    created = await new_chat(stack, user, title="Trip plans", models=["m"], tags=["x"])
    assert created["user_id"] == user.id
    assert created["title"] == "Trip plans"
    status, got = await stack.call("GET", f"/api/v1/chats/{created['id']}", headers=user.key_auth)
    assert status == 200
    assert got["chat"]["models"] == ["m"]
    assert got["chat"]["tags"] == ["x"]
    assert got["created_at"] == created["created_at"]


async def test_an_untitled_chat_is_called_new_chat(stack: Stack, user: Account) -> None:
    created = await new_chat(stack, user)
    assert created["title"] == "New Chat"


async def test_an_update_merges_chat_fields_and_renames(stack: Stack, user: Account) -> None:
    created = await new_chat(stack, user, title="a", models=["m1"], params={"t": 1})
    status, updated = await stack.call(
        "POST",
        f"/api/v1/chats/{created['id']}",
        headers=user.jwt_auth,
        json={"chat": {"title": "b", "models": ["m2"]}},
    )
    assert status == 200, updated
    assert updated["title"] == "b"
    assert updated["chat"]["models"] == ["m2"]
    assert updated["chat"]["params"] == {"t": 1}  # kept: not in the update


async def test_a_malformed_history_is_refused_naming_the_field(stack: Stack, user: Account) -> None:
    status, body = await stack.call(
        "POST",
        "/api/v1/chats/new",
        headers=user.jwt_auth,
        json={"chat": {"history": {"messages": {"x": {"id": "x", "role": "wizard"}}}}},
    )
    assert status == 400
    assert "history" in body["detail"]


async def test_other_users_chats_are_not_found_even_for_admins(
    stack: Stack, user: Account, admin: Account
) -> None:
    created = await new_chat(stack, user, title="mine")
    path = f"/api/v1/chats/{created['id']}"
    for method, kw in (("GET", {}), ("POST", {"json": {"chat": {"title": "x"}}}), ("DELETE", {})):
        status, body = await stack.call(method, path, headers=admin.jwt_auth, **kw)
        assert status == 404, (method, body)
    status, listed = await stack.call("GET", "/api/v1/chats/", headers=admin.jwt_auth)
    assert created["id"] not in {c["id"] for c in listed}
    status, got = await stack.call("GET", path, headers=user.jwt_auth)
    assert status == 200
    assert got["title"] == "mine"


async def test_a_deleted_chat_is_gone(stack: Stack, user: Account) -> None:
    created = await new_chat(stack, user)
    path = f"/api/v1/chats/{created['id']}"
    assert await stack.call("DELETE", path, headers=user.jwt_auth) == (200, True)
    assert (await stack.call("GET", path, headers=user.jwt_auth))[0] == 404
    assert (await stack.call("DELETE", path, headers=user.jwt_auth))[0] == 404
    _, listed = await stack.call("GET", "/api/v1/chats/", headers=user.jwt_auth)
    assert created["id"] not in {c["id"] for c in listed}


async def test_the_list_is_newest_first_and_paged_by_sixty(stack: Stack) -> None:
    owner = await stack.signup()
    created = []
    for index in range(62):
        created.append(await new_chat(stack, owner, title=f"c{index}"))
    # touching the oldest makes it the most recently updated
    await asyncio.sleep(1.05)  # updated_at has one-second resolution, as Open WebUI's
    await stack.call(
        "POST",
        f"/api/v1/chats/{created[0]['id']}",
        headers=owner.jwt_auth,
        json={"chat": {"title": "touched"}},
    )
    status, first = await stack.call("GET", "/api/v1/chats/?page=1", headers=owner.jwt_auth)
    assert status == 200
    assert len(first) == 60
    assert first[0]["id"] == created[0]["id"]
    assert first[0]["title"] == "touched"
    assert set(first[0]) == {"id", "title", "updated_at", "created_at"}
    stamps = [c["updated_at"] for c in first]
    assert stamps == sorted(stamps, reverse=True)
    _, second = await stack.call("GET", "/api/v1/chats/?page=2", headers=owner.jwt_auth)
    assert len(second) == 2
    _, everything = await stack.call("GET", "/api/v1/chats", headers=owner.jwt_auth)
    assert len(everything) == 62
    assert {c["id"] for c in first + second} == {c["id"] for c in created}


async def test_a_bad_page_is_a_400(stack: Stack, user: Account) -> None:
    status, body = await stack.call("GET", "/api/v1/chats/?page=zero", headers=user.jwt_auth)
    assert status == 400
    assert "page" in body["detail"]


def history_path(chat: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages from the root to `currentId`, following parentId links."""
    nodes = chat["history"]["messages"]
    path, current = [], chat["history"]["currentId"]
    while current is not None:
        path.append(nodes[current])
        current = nodes[current]["parentId"]
    return list(reversed(path))


@pytest.mark.parametrize("model", [OPENAI_MODEL, OLLAMA_MODEL])
async def test_a_completion_with_chat_id_appends_both_turns(
    stack: Stack, user: Account, model: str
) -> None:
    created = await new_chat(stack, user, title="t")
    for text in ("first question", "second question"):
        status, reply = await stack.call(
            "POST",
            "/api/chat/completions",
            headers=user.key_auth,
            json=chat_body(model, text, chat_id=created["id"]),
        )
        assert status == 200, reply
        assert reply["choices"][0]["message"]["content"] == f"Echo: {text}"
    _, got = await stack.call("GET", f"/api/v1/chats/{created['id']}", headers=user.jwt_auth)
    path = history_path(got["chat"])
    assert [m["role"] for m in path] == ["user", "assistant", "user", "assistant"]
    assert path[2]["content"] == "second question"
    assert path[3]["content"] == "Echo: second question"
    assert path[3]["model"] == model
    assert path[3]["usage"]["total_tokens"] > 0
    assert path[1]["childrenIds"] == [path[2]["id"]]
    assert path[3]["childrenIds"] == []
    assert [m["id"] for m in got["chat"]["messages"]] == [m["id"] for m in path]
    assert got["updated_at"] >= created["updated_at"]


@pytest.mark.parametrize("model", [OPENAI_MODEL, OLLAMA_MODEL])
async def test_a_streamed_completion_with_chat_id_is_in_the_chat_when_done_arrives(
    stack: Stack, user: Account, model: str
) -> None:
    created = await new_chat(stack, user)
    async with stack.http.post(
        f"{stack.url}/api/chat/completions",
        headers=user.key_auth,
        json=chat_body(model, "stream me", stream=True, chat_id=created["id"]),
    ) as reply:
        assert reply.status == 200
        events = await read_events(reply)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    _, got = await stack.call("GET", f"/api/v1/chats/{created['id']}", headers=user.jwt_auth)
    path = history_path(got["chat"])
    assert [m["content"] for m in path] == ["stream me", "Echo: stream me"]
    assert path[1]["usage"]["total_tokens"] > 0


async def test_a_chat_id_of_another_user_is_404_before_the_model_runs(
    stack: Stack, user: Account, admin: Account
) -> None:
    theirs = await new_chat(stack, admin)
    for chat_id in (theirs["id"], "no-such-chat"):
        for stream in (False, True):
            status, body = await stack.call(
                "POST",
                "/api/chat/completions",
                headers=user.key_auth,
                json=chat_body(OPENAI_MODEL, "sneaky", chat_id=chat_id, stream=stream),
            )
            assert status == 404, body
            assert body["detail"] == "Chat not found"
    _, got = await stack.call("GET", f"/api/v1/chats/{theirs['id']}", headers=admin.jwt_auth)
    assert "history" not in got["chat"]


async def test_a_temporary_chat_id_answers_without_storing(stack: Stack, user: Account) -> None:
    status, reply = await stack.call(
        "POST",
        "/api/chat/completions",
        headers=user.key_auth,
        json=chat_body(OPENAI_MODEL, "hello", chat_id="local:abc"),
    )
    assert status == 200, reply
    assert reply["choices"][0]["message"]["content"] == "Echo: hello"

"""Object-level authorization over the gateway's route table: user B gets 404 for every
object of user A, and A's objects stay exactly as they were.

The routes come from the router itself. Every route with a path parameter must appear
either in EXERCISES (how B calls it on A's object) or in NOT_PER_USER (why its parameter
names no object of a user), so a new route cannot slip in without this check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import Account, Stack
from tests.security.conftest import Owned, owned_by_new_user, upload

pytestmark = pytest.mark.security


@dataclass(frozen=True)
class Attempt:
    """One call by B: `query` and a JSON `body` made from B's own objects (`Mine`)."""

    query: str = ""
    body: Callable[[Mine], Any] | None = None


@dataclass(frozen=True)
class Mine:
    """B's own objects, for bodies that pair A's object with one of B's."""

    file_id: str
    knowledge_id: str


def _no_body(_: Mine) -> None:
    return None


# route name -> how B exercises it with A's object in the path
EXERCISES: dict[str, list[Attempt]] = {
    "files_get": [Attempt()],
    "files_status": [Attempt(), Attempt(query="?stream=true")],
    "files_content": [Attempt()],
    "files_text": [Attempt()],
    "files_delete": [Attempt()],
    "knowledge_get": [Attempt()],
    "knowledge_update": [
        Attempt(body=lambda _: {"name": "taken over by B", "access_control": None})
    ],
    "knowledge_file_add": [Attempt(body=lambda mine: {"file_id": mine.file_id})],
    "knowledge_file_remove": [Attempt(body=lambda _: {"file_id": "ignored"})],
    "knowledge_reset": [Attempt()],
    "knowledge_delete": [Attempt()],
    "chats_get": [Attempt()],
    "chats_update": [Attempt(body=lambda _: {"chat": {"title": "renamed by B"}})],
    "chats_delete": [Attempt()],
    "delete_named_key": [Attempt()],
}

# route name -> why its path parameter is not another user's object
NOT_PER_USER: dict[str, str] = {
    "update_user": "admin-only (test_roles: 403 to users)",
    "limits_delete": "admin-only (test_roles: 403 to users)",
    "delete_user": "admin-only (test_roles: 403 to users)",
    "functions_get": "admin-only: functions are global, installed by admins",
    "functions_update": "admin-only",
    "functions_delete": "admin-only",
    "tools_get": "tools are global, installed by admins, readable by every user",
    "tools_update": "admin-only",
    "tools_delete": "admin-only",
    "ollama": "an Ollama API path, not an object (test_outbound: no arbitrary URLs)",
    "docs_static": "public Swagger UI assets (dev only)",
}

PARAM = re.compile(r"{(\w+)")


def parametrized_routes(app: web.Application) -> dict[str, list[web.AbstractRoute]]:
    routes: dict[str, list[web.AbstractRoute]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or not PARAM.search(resource.canonical) or route.method == "HEAD":
            continue
        routes.setdefault(route.name or resource.name or "", []).append(route)
    return routes


def path_for(route: web.AbstractRoute, owned: Owned) -> str:
    assert route.resource is not None
    return route.resource.canonical.format(
        file_id=owned.file_id,
        knowledge_id=owned.knowledge_id,
        chat_id=owned.chat_id,
        key_id=owned.named_key_id,
    )


async def snapshot(stack: Stack, owned: Owned) -> dict[str, Any]:
    """Everything A can see of its objects, to compare before and after B's attempts."""
    auth = owned.owner.key_auth
    seen: dict[str, Any] = {}
    for name, path in (
        ("file", f"/api/v1/files/{owned.file_id}"),
        ("text", f"/api/v1/files/{owned.file_id}/data/content"),
        ("knowledge", f"/api/v1/knowledge/{owned.knowledge_id}"),
        ("chat", f"/api/v1/chats/{owned.chat_id}"),
        ("keys", "/api/v1/auths/api_keys"),
    ):
        status, body = await stack.call("GET", path, headers=auth)
        assert status == 200, (path, body)
        seen[name] = body
    async with stack.http.get(
        f"{stack.url}/api/v1/files/{owned.file_id}/content", headers=auth
    ) as reply:
        assert reply.status == 200
        seen["content"] = await reply.read()
    return seen


async def mine(stack: Stack, intruder: Account) -> Mine:
    record = await upload(stack, intruder, b"# B's file\n\nnothing secret\n", "b.md")
    status, knowledge = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=intruder.key_auth, json={"name": "B's"}
    )
    assert status == 200, knowledge
    return Mine(file_id=record["id"], knowledge_id=knowledge["id"])


def test_every_route_with_a_path_parameter_is_exercised_or_explained(second: Stack) -> None:
    # the dev gateway serves every route there is (the docs too)
    names = set(parametrized_routes(second.gateway.app))
    unknown = names - set(EXERCISES) - set(NOT_PER_USER)
    assert not unknown, f"new routes with a path parameter need an object-access check: {unknown}"
    assert not (set(EXERCISES) | set(NOT_PER_USER)) - names, "stale entries in the route map"
    assert not set(EXERCISES) & set(NOT_PER_USER)


async def test_another_user_gets_404_on_every_route_naming_a_users_object(
    stack: Stack, second: Stack, owned: Owned
) -> None:
    intruder = await stack.with_key(await stack.signup())
    own = await mine(stack, intruder)
    before = await snapshot(stack, owned)
    tried = 0
    for name, routes in sorted(parametrized_routes(second.gateway.app).items()):
        for route in routes:
            for attempt in EXERCISES.get(name, []):
                path = path_for(route, owned) + attempt.query
                body = (attempt.body or _no_body)(own)
                status, reply = await stack.call(
                    route.method, path, headers=intruder.key_auth, json=body
                )
                assert status == 404, (name, route.method, path, status, reply)
                assert set(reply) == {"detail"}, reply
                tried += 1
    assert tried >= len(EXERCISES)
    assert await snapshot(stack, owned) == before


async def test_objects_of_another_user_named_in_bodies_are_404_and_leak_nothing(
    stack: Stack, owned: Owned
) -> None:
    intruder = await stack.with_key(await stack.signup())
    own = await mine(stack, intruder)
    before = await snapshot(stack, owned)
    ask = [{"role": "user", "content": "What is the vault code?"}]
    attempts: list[tuple[str, str, Any]] = [
        # A's file into B's own collection
        ("POST", f"/api/v1/knowledge/{own.knowledge_id}/file/add", {"file_id": owned.file_id}),
        ("POST", "/api/v1/retrieval/query/doc", {"collection_name": owned.file_id, "query": "q"}),
        (
            "POST",
            "/api/v1/retrieval/query/doc",
            {"collection_name": f"file-{owned.file_id}", "query": "vault code"},
        ),
        (
            "POST",
            "/api/v1/retrieval/query/collection",
            {"collection_names": [owned.knowledge_id], "query": "vault code"},
        ),
        (
            "POST",
            "/api/v1/retrieval/query/collection",
            {"collection_names": [own.knowledge_id, f"file-{owned.file_id}"], "query": "vault"},
        ),
    ]
    for prefix in ("/api", "/api/v1"):
        for files in (
            [{"type": "file", "id": owned.file_id}],
            [{"type": "collection", "id": owned.knowledge_id}],
            [{"type": "file", "id": own.file_id}, {"type": "file", "id": owned.file_id}],
        ):
            body = {"model": "gpt-fake", "messages": ask, "files": files}
            attempts.append(("POST", f"{prefix}/chat/completions", body))
            attempts.append(("POST", f"{prefix}/chat/completions", {**body, "stream": True}))
        chat = {"model": "gpt-fake", "messages": ask, "chat_id": owned.chat_id}
        attempts.append(("POST", f"{prefix}/chat/completions", chat))
    for method, path, body in attempts:
        async with stack.http.request(
            method, stack.url + path, headers=intruder.key_auth, json=body
        ) as reply:
            text = await reply.text()
            assert reply.status == 404, (path, body, reply.status, text)
            assert "4711" not in text
    status, knowledge = await stack.call(
        "GET", f"/api/v1/knowledge/{own.knowledge_id}", headers=intruder.key_auth
    )
    assert status == 200
    assert owned.file_id not in str(knowledge)
    assert await snapshot(stack, owned) == before


async def test_the_owner_and_an_admin_still_reach_the_objects(stack: Stack, admin: Account) -> None:
    """The 404s above come from ownership, not from broken routes."""
    owned = await owned_by_new_user(stack)
    for account in (owned.owner, admin):
        for path in (
            f"/api/v1/files/{owned.file_id}",
            f"/api/v1/files/{owned.file_id}/process/status",
            f"/api/v1/knowledge/{owned.knowledge_id}",
        ):
            status, _ = await stack.call("GET", path, headers=account.key_auth)
            assert status == 200, (account.role, path)
    status, hits = await stack.call(
        "POST",
        "/api/v1/retrieval/query/collection",
        headers=owned.owner.key_auth,
        json={"collection_names": [owned.knowledge_id], "query": "vault code"},
    )
    assert status == 200
    assert "4711" in str(hits["documents"])

"""Object-level authorization over the gateway's route table: user B gets 404 for every
object of user A, and A's objects stay exactly as they were.

The routes come from the router itself. Every route must appear in EXERCISES (how B calls
it on A's object: in the path, or by `?id=` as the workspace-model routes do), in
NOT_PER_USER (why its path parameter names no object of a user) or in NO_OBJECT (why it
names no object at all), so a new route cannot slip in without this check. Roles and
`pending` accounts are swept over the same table in test_roles.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.security.conftest import Owned, owned_by_new_user, upload
from tests.support.stack import Account, Stack

pytestmark = pytest.mark.security


@dataclass(frozen=True)
class Attempt:
    """One call by B: `query` (placeholders filled from A's objects) and a JSON `body`
    made from B's own objects (`Mine`) and A's (`Owned`)."""

    query: str = ""
    body: Callable[[Mine, Owned], Any] | None = None


@dataclass(frozen=True)
class Mine:
    """B's own objects, for bodies that pair A's object with one of B's."""

    file_id: str
    knowledge_id: str


def _no_body(_: Mine, __: Owned) -> None:
    return None


PUBLIC = [{"principal_type": "user", "principal_id": "*", "permission": "read"}]


def _preset_form(_: Mine, owned: Owned) -> dict[str, Any]:
    return {"id": owned.preset_id, "base_model_id": "gpt-fake", "name": "taken over by B"}


# route name -> how B exercises it with A's object in the path
EXERCISES: dict[str, list[Attempt]] = {
    "files_get": [Attempt()],
    "files_status": [Attempt(), Attempt(query="?stream=true")],
    "files_content": [Attempt()],
    "files_text": [Attempt()],
    "files_delete": [Attempt()],
    "files_text_update": [Attempt(body=lambda _, __: {"content": "overwritten by B"})],
    "files_cancel": [Attempt(), Attempt(body=lambda _, __: {"reason": "stopped by B"})],
    "files_retry": [Attempt()],
    "knowledge_get": [Attempt()],
    "knowledge_update": [
        Attempt(body=lambda _, __: {"name": "taken over by B", "access_control": None})
    ],
    "knowledge_access_update": [Attempt(body=lambda _, __: {"access_grants": PUBLIC})],
    "knowledge_file_add": [Attempt(body=lambda mine, _: {"file_id": mine.file_id})],
    "knowledge_file_remove": [Attempt(body=lambda _, __: {"file_id": "ignored"})],
    "knowledge_file_update": [Attempt(body=lambda _, __: {"file_id": "ignored"})],
    "knowledge_reset": [Attempt()],
    "knowledge_delete": [Attempt()],
    "knowledge_files": [Attempt(), Attempt(query="?page=1&query=private")],
    "knowledge_batch_add": [Attempt(body=lambda mine, _: [{"file_id": mine.file_id}])],
    "knowledge_sync_diff": [
        Attempt(body=lambda _, __: {"manifest": [{"filename": "x.md", "checksum": "0" * 64}]})
    ],
    "knowledge_sync_cleanup": [Attempt(body=lambda mine, _: {"file_ids": [mine.file_id]})],
    "chats_get": [Attempt()],
    "chats_update": [Attempt(body=lambda _, __: {"chat": {"title": "renamed by B"}})],
    "chats_delete": [Attempt()],
    "delete_named_key": [Attempt()],
    # B is no member of A's group (cross-group)
    "groups_get": [Attempt()],
    # workspace models name theirs by `?id=` (or the body's id)
    "presets_get": [Attempt(query="?id={preset_id}")],
    "presets_update": [
        Attempt(query="?id={preset_id}", body=_preset_form),
        Attempt(body=_preset_form),
    ],
    "presets_access_update": [
        Attempt(body=lambda _, owned: {"id": owned.preset_id, "access_grants": PUBLIC})
    ],
    "presets_toggle": [Attempt(query="?id={preset_id}")],
    "presets_delete": [
        Attempt(query="?id={preset_id}"),
        Attempt(body=lambda _, owned: {"id": owned.preset_id}),
    ],
    "presets_delete_http": [Attempt(query="?id={preset_id}")],
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
    **dict.fromkeys(
        [
            "functions_valves",
            "functions_valves_spec",
            "functions_valves_update",
            "tools_valves",
            "tools_valves_spec",
            "tools_valves_update",
        ],
        "admin-only: valves are an admin's settings (test_sandbox: 403 to users)",
    ),
    "ollama": "an Ollama API path, not an object (test_outbound: no arbitrary URLs)",
    "docs_static": "public Swagger UI assets (dev only)",
    "console_asset": "the web console's public static files",
    "groups_update": "admin-only (test_roles: 403 to users)",
    "groups_users_add": "admin-only (test_roles: 403 to users)",
    "groups_users_remove": "admin-only (test_roles: 403 to users)",
    "groups_delete": "admin-only (test_roles: 403 to users)",
}

_LISTS = "lists only what the caller may read (test_listings_show_nothing_of_another_user)"
_CREATES = "makes a new object owned by the caller"
_BODIES = "names objects in its body: test_objects_of_another_user_named_in_bodies..."
# route name -> why it names no object of another user (neither in its path nor by ?id=)
NO_OBJECT: dict[str, str] = {
    **dict.fromkeys(
        ["health", "signup", "signin", "openapi", "docs", "api_version", "api_config"],
        "public (test_roles: the only ones)",
    ),
    "metrics": "Prometheus counters: route/model/service names only, no user's objects",
    **dict.fromkeys(
        ["console", "console_signin", "console_signout", "console_signup"],
        "the web console's page and session cookie (public; test_roles)",
    ),
    **dict.fromkeys(
        [
            "current_user",
            "create_api_key",
            "get_api_key",
            "delete_api_key",
            "update_password",
            "signout",
            "signout_post",
        ],
        "the caller's own account and key (test_credentials: sessions end)",
    ),
    **dict.fromkeys(
        ["create_named_key", "list_named_keys", "usage"],
        "the caller's own named keys and usage (tests/security/test_key_scopes.py, "
        "tests/controls/test_ledger.py: another user's usage is 403)",
    ),
    **dict.fromkeys(
        [
            "list_users",
            "functions_create",
            "tools_create",
            "groups_create",
            "limits_set",
            "limits_list",
            "add_user",
            "retrieval_embedding",
            "files_retry_all",
            "files_failed",
        ],
        "admin-only (test_roles: 403 to users)",
    ),
    **dict.fromkeys(
        ["chats_new", "files_upload", "files_upload_bare", "knowledge_create", "presets_create"],
        _CREATES,
    ),
    **dict.fromkeys(
        [
            "api_models",
            "api_v1_models",
            "chats_list",
            "chats_list_bare",
            "files_list",
            "files_list_bare",
            "knowledge_list",
            "knowledge_list_bare",
            "functions_list",
            "functions_list_bare",
            "tools_list",
            "tools_list_bare",
            "groups_list",
            "presets_list",
            "presets_list_0_12",
            "chats_list_alias",
            "chats_search",
            "knowledge_list_writable",
        ],
        _LISTS,
    ),
    **dict.fromkeys(
        [
            "api_chat",
            "api_v1_chat",
            "retrieval_query_collection",
            "retrieval_query_doc",
            "retrieval_process_text",
        ],
        _BODIES,
    ),
    **dict.fromkeys(
        ["api_embeddings", "api_v1_embeddings"],
        "embeds the texts in its body: no stored object is named or read",
    ),
}

PARAM = re.compile(r"{(\w+)")


def routes_by_name(
    app: web.Application, parametrized: bool | None = None
) -> dict[str, list[web.AbstractRoute]]:
    """Every route by name (HEAD aside); only those with (or without) a path parameter
    when `parametrized` says so."""
    routes: dict[str, list[web.AbstractRoute]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        if parametrized is not None and bool(PARAM.search(resource.canonical)) != parametrized:
            continue
        routes.setdefault(route.name or resource.name or "", []).append(route)
    return routes


def parametrized_routes(app: web.Application) -> dict[str, list[web.AbstractRoute]]:
    return routes_by_name(app, parametrized=True)


def _ids(owned: Owned) -> dict[str, str]:
    return {
        "file_id": owned.file_id,
        "knowledge_id": owned.knowledge_id,
        "chat_id": owned.chat_id,
        "preset_id": owned.preset_id,
        "group_id": owned.group_id,
        "key_id": owned.named_key_id,
    }


def path_for(route: web.AbstractRoute, owned: Owned) -> str:
    assert route.resource is not None
    return route.resource.canonical.format(**_ids(owned))


async def snapshot(stack: Stack, owned: Owned) -> dict[str, Any]:
    """Everything A can see of its objects, to compare before and after B's attempts."""
    auth = owned.owner.key_auth
    seen: dict[str, Any] = {}
    for name, path in (
        ("file", f"/api/v1/files/{owned.file_id}"),
        ("text", f"/api/v1/files/{owned.file_id}/data/content"),
        ("knowledge", f"/api/v1/knowledge/{owned.knowledge_id}"),
        ("chat", f"/api/v1/chats/{owned.chat_id}"),
        ("preset", f"/api/v1/models/model?id={owned.preset_id}"),
        ("group", f"/api/v1/groups/id/{owned.group_id}"),
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


def test_every_route_is_exercised_or_explained(second: Stack) -> None:
    # the dev gateway serves every route there is (the docs too)
    app = second.gateway.app
    parametrized, plain = set(parametrized_routes(app)), set(routes_by_name(app, False))
    unknown = parametrized - set(EXERCISES) - set(NOT_PER_USER)
    assert not unknown, f"new routes with a path parameter need an object-access check: {unknown}"
    unknown = plain - set(EXERCISES) - set(NO_OBJECT)
    assert not unknown, f"new routes need an object-access check or a reason: {unknown}"
    known = set(EXERCISES) | set(NOT_PER_USER) | set(NO_OBJECT)
    assert not known - parametrized - plain, "stale entries in the route map"
    assert not set(NOT_PER_USER) & plain and not set(NO_OBJECT) & parametrized
    assert not set(EXERCISES) & (set(NOT_PER_USER) | set(NO_OBJECT))


async def test_another_user_gets_404_on_every_route_naming_a_users_object(
    stack: Stack, second: Stack, owned: Owned
) -> None:
    intruder = await stack.with_key(await stack.signup())
    own = await mine(stack, intruder)
    before = await snapshot(stack, owned)
    tried = 0
    for name, routes in sorted(routes_by_name(second.gateway.app).items()):
        for route in routes:
            for attempt in EXERCISES.get(name, []):
                path = path_for(route, owned) + attempt.query.format(**_ids(owned))
                body = (attempt.body or _no_body)(own, owned)
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
        # text into A's collection
        (
            "POST",
            "/api/v1/retrieval/process/text",
            {"name": "planted", "content": "planted by B", "collection_name": owned.knowledge_id},
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
        # A's private workspace model (it searches A's collection): no model of B's
        for stream in (False, True):
            body = {"model": owned.preset_id, "messages": ask, "stream": stream}
            attempts.append(("POST", f"{prefix}/chat/completions", body))
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


async def test_listings_show_nothing_of_another_user(stack: Stack, owned: Owned) -> None:
    intruder = await stack.with_key(await stack.signup())
    for path in (
        "/api/v1/files/",
        "/api/v1/knowledge/",
        "/api/v1/chats/",
        "/api/v1/models/",
        "/api/v1/models/list",
        "/api/models",
        "/api/v1/groups/",
    ):
        status, listing = await stack.call("GET", path, headers=intruder.key_auth)
        assert status == 200, (path, listing)
        text = str(listing)
        for mine in (owned.file_id, owned.knowledge_id, owned.chat_id, owned.preset_id):
            assert mine not in text, (path, mine)
        assert owned.group_id not in text


async def test_a_grant_to_one_group_reaches_no_other_and_sharing_a_preset_shares_no_knowledge(
    stack: Stack, second: Stack, owned: Owned, admin: Account
) -> None:
    """Cross-group: A shares its preset with group H. A member of another group gets 404
    on every gateway; a member of H may use the preset, but A's collection behind it is
    still A's: a clear 400 naming it, and nothing of its content."""
    member = await stack.with_key(await stack.signup())
    other = await stack.with_key(await stack.signup())
    groups = []
    for name, who in (("H", member), ("G", other)):
        status, group = await stack.call(
            "POST", "/api/v1/groups/create", headers=admin.key_auth, json={"name": name}
        )
        assert status == 200
        status, _ = await stack.call(
            "POST",
            f"/api/v1/groups/id/{group['id']}/users/add",
            headers=admin.key_auth,
            json={"user_ids": [who.id]},
        )
        assert status == 200
        groups.append(group["id"])
    grant = {"principal_type": "group", "principal_id": groups[0], "permission": "read"}
    status, shared = await stack.call(
        "POST",
        "/api/v1/models/model/access/update",
        headers=owned.owner.key_auth,
        json={"id": owned.preset_id, "access_grants": [grant]},
    )
    assert status == 200, shared
    ask = {"model": owned.preset_id, "messages": [{"role": "user", "content": "vault code?"}]}
    try:
        for gateway in (stack, second):
            path = f"/api/v1/models/model?id={owned.preset_id}"
            assert (await gateway.call("GET", path, headers=other.key_auth))[0] == 404
            assert (await gateway.call("GET", path, headers=member.key_auth))[0] == 200
            for stream in (False, True):
                for who, expected in ((other, 404), (member, 400)):
                    async with gateway.http.post(
                        gateway.url + "/api/chat/completions",
                        headers=who.key_auth,
                        json={**ask, "stream": stream},
                    ) as reply:
                        text = await reply.text()
                        assert reply.status == expected, (who.id, stream, text)
                        assert "4711" not in text
                        if expected == 400:
                            assert owned.knowledge_id in text
    finally:
        status, _ = await stack.call(
            "POST",
            "/api/v1/models/model/access/update",
            headers=owned.owner.key_auth,
            json={"id": owned.preset_id, "access_grants": []},
        )
        assert status == 200

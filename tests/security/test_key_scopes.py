"""Scoped API keys over the gateway's route table: a key scoped to some models and
collections gets 403 on every route that takes another model or collection, while the
same request with its user's unscoped key is not refused; inside its scope it works.

The routes come from the router. Each one is either in SCOPED (how it is called with a
model or collection outside the key's scope), in LISTS (a listing the scope filters) or
in NOT_SCOPED (why it takes neither), so a new route cannot slip past this check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.rag_helpers import settled
from tests.security.conftest import Owned, owned_by_new_user, upload
from tests.support.stack import Account, Stack

pytestmark = pytest.mark.security

IN_MODEL = "gpt-fake-mini"
OUT_MODEL = "gpt-fake"
ASK = [{"role": "user", "content": "What is the vault code?"}]


@dataclass(frozen=True)
class World:
    owned: Owned  # A's file and collection: outside the key's scope
    in_knowledge: str  # A's second collection: the key's scope
    in_file: str  # a file of that collection
    scoped: Account  # A, with the scoped key as `api_key`


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    harmless: bool = True  # the unscoped control call changes nothing worth keeping


def _chat(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"model": OUT_MODEL, "messages": ASK, **extra}


def scoped_calls(w: World) -> dict[str, list[Call]]:
    """route name -> calls that name a model or collection outside the key's scope."""
    out_k, out_f = w.owned.knowledge_id, w.owned.file_id
    in_k = w.in_knowledge
    chats: list[Call] = []
    for prefix in ("/api", "/api/v1"):
        path = f"{prefix}/chat/completions"
        chats += [
            Call("POST", path, _chat(prefix)),
            Call("POST", path, _chat(prefix, stream=True)),
            # an allowed model, but a collection or file outside the scope
            Call(
                "POST",
                path,
                {
                    **_chat(prefix),
                    "model": IN_MODEL,
                    "files": [{"type": "collection", "id": out_k}],
                },
            ),
            Call(
                "POST",
                path,
                {
                    **_chat(prefix),
                    "model": IN_MODEL,
                    "files": [{"type": "collection", "id": in_k}, {"type": "file", "id": out_f}],
                },
            ),
        ]
    by_name: dict[str, list[Call]] = {
        "api_chat": [c for c in chats if c.path.startswith("/api/chat")],
        "api_v1_chat": [c for c in chats if c.path.startswith("/api/v1/chat")],
        "retrieval_query_doc": [
            Call("POST", "/api/v1/retrieval/query/doc", {"collection_name": out_f, "query": "q"}),
            Call(
                "POST",
                "/api/v1/retrieval/query/doc",
                {"collection_name": f"file-{out_f}", "query": "q"},
            ),
        ],
        "retrieval_query_collection": [
            Call(
                "POST",
                "/api/v1/retrieval/query/collection",
                {"collection_names": [in_k, out_k], "query": "q"},
            ),
        ],
        "knowledge_create": [
            Call("POST", "/api/v1/knowledge/create", {"name": "new"}, harmless=False)
        ],
        "knowledge_get": [Call("GET", f"/api/v1/knowledge/{out_k}")],
        "knowledge_update": [
            Call("POST", f"/api/v1/knowledge/{out_k}/update", {"name": "x"}, harmless=False)
        ],
        "knowledge_file_add": [
            Call(
                "POST",
                f"/api/v1/knowledge/{out_k}/file/add",
                {"file_id": w.in_file},
                harmless=False,
            )
        ],
        "knowledge_file_remove": [
            Call(
                "POST",
                f"/api/v1/knowledge/{out_k}/file/remove",
                {"file_id": out_f},
                harmless=False,
            )
        ],
        "knowledge_reset": [Call("POST", f"/api/v1/knowledge/{out_k}/reset", harmless=False)],
        "knowledge_delete": [Call("DELETE", f"/api/v1/knowledge/{out_k}/delete", harmless=False)],
        "knowledge_files": [Call("GET", f"/api/v1/knowledge/{out_k}/files")],
        "knowledge_access_update": [
            Call(
                "POST",
                f"/api/v1/knowledge/{out_k}/access/update",
                {"access_grants": []},
                harmless=False,
            )
        ],
        "knowledge_batch_add": [
            Call(
                "POST",
                f"/api/v1/knowledge/{out_k}/files/batch/add",
                [{"file_id": w.in_file}],
                harmless=False,
            )
        ],
        "knowledge_sync_diff": [
            Call("POST", f"/api/v1/knowledge/{out_k}/sync/diff", {"manifest": []})
        ],
        "knowledge_sync_cleanup": [
            Call(
                "POST",
                f"/api/v1/knowledge/{out_k}/sync/cleanup",
                {"file_ids": []},
                harmless=False,
            )
        ],
        "knowledge_file_update": [
            Call(
                "POST",
                f"/api/v1/knowledge/{out_k}/file/update",
                {"file_id": out_f},
                harmless=False,
            )
        ],
        "retrieval_process_text": [
            Call(
                "POST",
                "/api/v1/retrieval/process/text",
                {"name": "n", "content": "c", "collection_name": out_k},
                harmless=False,
            )
        ],
        "ollama": [
            Call("POST", "/ollama/api/chat", {"model": OUT_MODEL, "messages": ASK}),
            Call("POST", "/ollama/api/show", {"name": OUT_MODEL}),
            Call("POST", "/ollama/v1/chat/completions", {"model": OUT_MODEL, "messages": ASK}),
        ],
        **{
            name: [Call("POST", path, {"model": OUT_MODEL, "input": ["the vault code"]})]
            for name, path in (
                ("api_embeddings", "/api/embeddings"),
                ("api_v1_embeddings", "/api/v1/embeddings"),
            )
        },
        # a scoped key cannot mint itself a wider key, nor drop keys
        "create_named_key": [
            Call("POST", "/api/v1/auths/api_keys", {"name": "wider"}, harmless=False)
        ],
        "delete_named_key": [Call("DELETE", "/api/v1/auths/api_keys/none")],
    }
    return by_name


# listings that show only what the key's scope holds
LISTS = {
    "api_models",
    "api_v1_models",
    "knowledge_list",
    "knowledge_list_bare",
    "knowledge_list_writable",
}

NOT_SCOPED: dict[str, str] = (
    {
        name: "no model or collection: sign-in, the caller's own account and its single key"
        for name in (
            "signup",
            "signin",
            "current_user",
            "create_api_key",
            "get_api_key",
            "delete_api_key",
            "list_named_keys",
        )
    }
    | {
        name: "admin-only user management, no model or collection"
        for name in ("list_users", "update_user", "delete_user", "add_user")
    }
    | {
        name: "the caller's own account: refused to a scoped key (403)"
        for name in ("update_password", "signout", "signout_post")
    }
    | {
        name: "chat history is stored, no model is called (completions are scoped)"
        for name in (
            "chats_new",
            "chats_list",
            "chats_list_bare",
            "chats_get",
            "chats_update",
            "chats_delete",
        )
    }
    | {
        name: "a user's own files, not collections (a collection's files are scoped in RAG)"
        for name in (
            "files_upload",
            "files_upload_bare",
            "files_list",
            "files_list_bare",
            "files_get",
            "files_status",
            "files_content",
            "files_text",
            "files_delete",
            "files_cancel",
            "files_retry",
        )
    }
    | {
        name: "admin-only ingestion control (dead letters), no model or collection"
        for name in ("files_retry_all", "files_failed")
    }
    | {
        name: "functions and tools are installed by admins; using a function model is a chat"
        for name in (
            "functions_create",
            "functions_delete",
            "functions_get",
            "functions_list",
            "functions_list_bare",
            "functions_update",
            "tools_create",
            "tools_delete",
            "tools_get",
            "tools_list",
            "tools_list_bare",
            "tools_update",
            "functions_valves",
            "functions_valves_spec",
            "functions_valves_update",
            "tools_valves",
            "tools_valves_spec",
            "tools_valves_update",
        )
    }
    | {
        "limits_set": "admin-only limits, no model or collection is used",
        "limits_list": "admin-only limits",
        "retrieval_embedding": "admin-only: the embedding model and index state",
        "limits_delete": "admin-only limits",
        "usage": "the caller's own ledger rows (admins: everyone's)",
        "health": "public",
        "metrics": "public to the auth middleware; its own scraper token (RAGWAY_METRICS_TOKEN)",
        "api_config": "public",
        "console": "the console's page, served to anyone (it calls the API like any client)",
        "console_asset": "the console's static files",
        "console_signin": "a cookie session for a password, never for a key",
        "console_signup": "a new account's cookie session",
        "console_signout": "ends the caller's cookie session",
        "api_version": "public",
        "chats_list_alias": "chat history, no model is called",
        "chats_search": "chat history, no model is called",
        "files_text_update": "a user's own file, not a collection",
        **{
            name: "groups: membership, no model or collection"
            for name in (
                "groups_create",
                "groups_delete",
                "groups_get",
                "groups_list",
                "groups_update",
                "groups_users_add",
                "groups_users_remove",
            )
        },
        **{
            name: "workspace models are definitions; using one is a chat, scoped by its id, "
            "its base and its attached knowledge (test below)"
            for name in (
                "presets_access_update",
                "presets_create",
                "presets_delete",
                "presets_delete_http",
                "presets_get",
                "presets_list",
                "presets_list_0_12",
                "presets_toggle",
                "presets_update",
            )
        },
        "openapi": "public (dev)",
        "docs": "public (dev)",
        "docs_static": "public (dev)",
    }
)


def route_names(stack: Stack) -> set[str]:
    app = stack.gateway.app
    return {
        route.name or route.resource.name or ""
        for route in app.router.routes()
        if route.resource is not None
    }


@pytest.fixture(scope="module")
async def world(stack: Stack, rag: object) -> World:
    owned = await owned_by_new_user(stack)
    owner = owned.owner
    record = await upload(stack, owner, b"# In scope\n\nThe door code is 1234.\n", "in.md")
    assert (await settled(stack, owner, record["id"]))["status"] == "completed"
    status, knowledge = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=owner.key_auth, json={"name": "in scope"}
    )
    assert status == 200, knowledge
    status, linked = await stack.call(
        "POST",
        f"/api/v1/knowledge/{knowledge['id']}/file/add",
        headers=owner.key_auth,
        json={"file_id": record["id"]},
    )
    assert status == 200, linked
    status, key = await stack.call(
        "POST",
        "/api/v1/auths/api_keys",
        headers=owner.jwt_auth,
        json={"name": "scoped", "models": [IN_MODEL], "collections": [knowledge["id"]]},
    )
    assert status == 200, key
    scoped = Account(owner.id, owner.email, owner.role, owner.token, key["api_key"])
    return World(owned, knowledge["id"], record["id"], scoped)


def test_every_route_is_scope_checked_listed_or_explained(stack: Stack, second: Stack) -> None:
    names = route_names(second)
    nobody = Account("", "", "", "")
    fake = World(Owned(nobody, "f", "k", "c", "p", "g"), "k2", "f2", nobody)
    checked = set(scoped_calls(fake))
    unknown = names - checked - LISTS - set(NOT_SCOPED)
    assert not unknown, f"new routes need a key-scope decision: {unknown}"
    assert not (checked | LISTS | set(NOT_SCOPED)) - names, "stale entries"
    assert not checked & set(NOT_SCOPED) and not LISTS & set(NOT_SCOPED)


async def test_a_scoped_key_gets_403_outside_its_scope_on_every_route(
    stack: Stack, second: Stack, world: World
) -> None:
    tried = 0
    for name, calls in sorted(scoped_calls(world).items()):
        for call in calls:
            for api in (stack, second):
                status, reply = await api.call(
                    call.method, call.path, headers=world.scoped.key_auth, json=call.body
                )
                assert status == 403, (name, call, status, reply)
                assert set(reply) == {"detail"} and "key" in reply["detail"], reply
                tried += 1
            if call.harmless:  # the user's own key: the 403 came from the scope alone
                status, reply = await stack.call(
                    call.method, call.path, headers=world.owned.owner.key_auth, json=call.body
                )
                assert status != 403, (name, call, status, reply)
    assert tried >= 2 * len(scoped_calls(world))


async def test_a_scoped_key_works_inside_its_scope_and_sees_only_it(
    stack: Stack, world: World
) -> None:
    auth = world.scoped.key_auth
    status, models = await stack.call("GET", "/api/models", headers=auth)
    assert status == 200 and [m["id"] for m in models["data"]] == [IN_MODEL]
    status, listed = await stack.call("GET", "/api/v1/knowledge/", headers=auth)
    assert status == 200 and [k["id"] for k in listed] == [world.in_knowledge]
    status, unscoped = await stack.call(
        "GET", "/api/v1/knowledge/", headers=world.owned.owner.key_auth
    )
    assert {world.in_knowledge, world.owned.knowledge_id} <= {k["id"] for k in unscoped}

    body = {"model": IN_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    status, reply = await stack.call("POST", "/api/chat/completions", headers=auth, json=body)
    assert status == 200 and reply["choices"], reply
    for files in (
        [{"type": "collection", "id": world.in_knowledge}],
        [{"type": "file", "id": world.in_file}],
    ):
        status, reply = await stack.call(
            "POST",
            "/api/chat/completions",
            headers=auth,
            json={**body, "messages": ASK, "files": files},
        )
        assert status == 200, reply
        assert reply["sources"], reply
    status, hits = await stack.call(
        "POST",
        "/api/v1/retrieval/query/collection",
        headers=auth,
        json={"collection_names": [world.in_knowledge], "query": "door code"},
    )
    assert status == 200 and "1234" in " ".join(hits["documents"][0]), hits
    status, got = await stack.call("GET", f"/api/v1/knowledge/{world.in_knowledge}", headers=auth)
    assert status == 200 and got["id"] == world.in_knowledge


async def test_a_revoked_named_key_is_refused_by_every_gateway_at_once(
    stack: Stack, second: Stack, user: Account
) -> None:
    status, key = await stack.call(
        "POST", "/api/v1/auths/api_keys", headers=user.jwt_auth, json={"name": "short-lived"}
    )
    assert status == 200, key
    auth = {"Authorization": f"Bearer {key['api_key']}"}
    for api in (stack, second):  # both cache the principal now
        status, me = await api.call("GET", "/api/v1/auths/", headers=auth)
        assert (status, me["id"]) == (200, user.id)
    status, listed = await stack.call("GET", "/api/v1/auths/api_keys", headers=user.jwt_auth)
    assert status == 200 and [k["id"] for k in listed] == [key["id"]]
    assert "api_key" not in listed[0] and listed[0]["key_hint"].startswith("sk-")
    status, _ = await stack.call(
        "DELETE", f"/api/v1/auths/api_keys/{key['id']}", headers=user.jwt_auth
    )
    assert status == 200
    for api in (second, stack):
        status, reply = await api.call("GET", "/api/v1/auths/", headers=auth)
        assert status == 401, reply
    status, listed = await stack.call("GET", "/api/v1/auths/api_keys", headers=user.jwt_auth)
    assert listed == []


async def test_named_key_forms_are_checked(stack: Stack, user: Account) -> None:
    for form in (
        {"name": "typo", "model": ["x"]},  # a misspelt scope must not make an unscoped key
        {"name": ""},
        {"name": "k", "models": "gpt-fake"},
        {"name": "k", "expires_at": 1},
    ):
        status, reply = await stack.call(
            "POST", "/api/v1/auths/api_keys", headers=user.jwt_auth, json=form
        )
        assert status == 400, (form, reply)
        assert set(reply) == {"detail"}


async def test_a_workspace_model_needs_its_base_and_its_knowledge_in_scope(
    stack: Stack, world: World
) -> None:
    owner, preset = world.owned.owner, world.owned.preset_id

    async def key(**scope: Any) -> dict[str, str]:
        status, made = await stack.call(
            "POST", "/api/v1/auths/api_keys", headers=owner.jwt_auth, json={"name": "p", **scope}
        )
        assert status == 200, made
        return {"Authorization": f"Bearer {made['api_key']}"}

    body = {"model": preset, "messages": ASK}
    refused = [
        await key(models=[preset]),  # its base model is outside the scope
        await key(models=[preset, OUT_MODEL], collections=[world.in_knowledge]),  # knowledge
    ]
    for headers in refused:
        status, reply = await stack.call(
            "POST", "/api/chat/completions", headers=headers, json=body
        )
        assert status == 403, reply
    allowed = await key(models=[preset, OUT_MODEL])
    status, reply = await stack.call("POST", "/api/chat/completions", headers=allowed, json=body)
    assert status == 200, reply

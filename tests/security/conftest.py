"""Security tests run against the e2e stack (auth, inference-proxy with the backend fakes,
gateway, and retrieval + ingestion for files and knowledge) plus a SECOND gateway on the
same NATS, built with `env=dev` so it also serves `/openapi.json`.

Two gateways matter: each caches principals, and a revoked key or a deleted user must be
refused by both on their very next request.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from tests.e2e.rag_helpers import settled
from tests.support.stack import Account, RagServices, Stack


@pytest.fixture(scope="session")
async def second(stack: Stack, stack_nats_url: str) -> AsyncIterator[Stack]:
    """Another gateway on the same NATS (and the dev docs on): the same users, its own cache."""
    settings = GatewaySettings(
        nats_url=stack_nats_url,
        port=0,
        env="dev",
        request_timeout_seconds=5,
        completion_timeout_seconds=6,
        stream_idle_timeout_seconds=4,
        # its own principal cache lives long: only events can make it forget
        auth_cache_seconds=600,
        # the fuzzer names a client address of its own (X-Forwarded-For) so that the sign-in
        # failures it provokes do not rate-limit 127.0.0.1 for the rest of the session
        trusted_proxies="127.0.0.1",
    )
    async with serve_gateway(settings) as handle:
        other = Stack(url=handle.url, http=stack.http, gateway=handle)
        other._admin = await stack.admin()
        yield other


@dataclass
class Owned:
    """What user A owns: a completed file, a private collection holding it, a chat, and a
    private workspace model (preset) that searches that collection; and a group A is in
    (made by the admin), shared nothing."""

    owner: Account
    file_id: str
    knowledge_id: str
    chat_id: str
    preset_id: str
    group_id: str
    named_key_id: str = ""


async def upload(
    api: Stack, account: Account, content: bytes, name: str, content_type: str = "text/markdown"
) -> dict[str, Any]:
    data = aiohttp.FormData()
    data.add_field("file", content, filename=name, content_type=content_type)
    status, record = await api.call("POST", "/api/v1/files/", headers=account.key_auth, data=data)
    assert status == 200, record
    return dict(record)


async def owned_by_new_user(api: Stack) -> Owned:
    """A fresh user with a processed file, a private collection containing it, and a chat."""
    owner = await api.with_key(await api.signup())
    text = f"# Private notes {uuid.uuid4().hex}\n\nThe vault code is 4711 and only A knows it.\n"
    record = await upload(api, owner, text.encode(), "private.md")
    state = await settled(api, owner, record["id"])
    assert state["status"] == "completed", state
    status, knowledge = await api.call(
        "POST",
        "/api/v1/knowledge/create",
        headers=owner.key_auth,
        json={"name": "A's private collection", "access_control": {}},
    )
    assert status == 200, knowledge
    status, linked = await api.call(
        "POST",
        f"/api/v1/knowledge/{knowledge['id']}/file/add",
        headers=owner.key_auth,
        json={"file_id": record["id"]},
    )
    assert status == 200, linked
    status, chat = await api.call(
        "POST", "/api/v1/chats/new", headers=owner.key_auth, json={"chat": {"title": "A's chat"}}
    )
    assert status == 200, chat
    status, key = await api.call(
        "POST", "/api/v1/auths/api_keys", headers=owner.jwt_auth, json={"name": "A's key"}
    )
    assert status == 200, key
    preset_id = f"a-vault-{uuid.uuid4().hex[:8]}"
    status, preset = await api.call(
        "POST",
        "/api/v1/models/create",
        headers=owner.key_auth,
        json={
            "id": preset_id,
            "base_model_id": "gpt-fake",
            "name": "A's vault keeper",
            "meta": {"knowledge": [{"id": knowledge["id"], "type": "collection"}]},
            "params": {"system": "Only A may hear about the vault."},
        },
    )
    assert status == 200, preset
    root = await api.admin()
    status, group = await api.call(
        "POST", "/api/v1/groups/create", headers=root.key_auth, json={"name": "A's group"}
    )
    assert status == 200, group
    status, group = await api.call(
        "POST",
        f"/api/v1/groups/id/{group['id']}/users/add",
        headers=root.key_auth,
        json={"user_ids": [owner.id]},
    )
    assert status == 200, group
    return Owned(
        owner, record["id"], knowledge["id"], chat["id"], preset_id, group["id"], key["id"]
    )


@pytest.fixture(scope="session")
async def owned(stack: Stack, rag: RagServices) -> Owned:
    return await owned_by_new_user(stack)

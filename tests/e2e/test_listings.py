"""Listings over HTTP through the real services, at a size where the per-user indexes
matter: a user's whole file list (more than one chunk of the streamed bare list) and its
pages, newest first with the right total and never another user's; chats found by the
text of their messages; collections listed without their files' records.

The file records are written straight into the gateway's catalog (as uploads leave them,
pending), so a thousand files take a second rather than a thousand uploads.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from catalog.files import LIST_CHUNK, FileCatalog, now
from common.nats_conn import connect_nats
from contracts import subjects
from contracts.files import FileData, FileMeta, FileRecord
from tests.conformance import shapes
from tests.support.nats import SecuredNats
from tests.support.stack import Account, Stack

pytestmark = pytest.mark.usefixtures("rag")

GATEWAY_PREFIX = "ragway"  # the gateway's default bucket prefix in the stack fixture
FILES = LIST_CHUNK + 234  # the bare list spans two chunks


async def planted(stack_nats: SecuredNats, owner: Account, count: int) -> list[str]:
    """`count` file records of `owner`, one second apart; their ids, newest first."""
    base = now() - count
    records = [
        FileRecord(
            id=str(uuid.uuid4()),
            user_id=owner.id,
            hash=uuid.uuid4().hex,
            filename=f"f{n}.md",
            data=FileData(status="pending"),
            meta=FileMeta(name=f"f{n}.md", content_type="text/markdown", size=n + 1),
            created_at=base + n,
            updated_at=base + n,
        )
        for n in range(count)
    ]
    gateway = stack_nats.users[subjects.GATEWAY_SERVICE]  # file records: as the gateway writes
    async with connect_nats([stack_nats.url], name="listings-test", auth=gateway) as nc:
        catalog = await FileCatalog.open(nc.jetstream(timeout=10), GATEWAY_PREFIX)
        for start in range(0, count, 200):
            await asyncio.gather(*(catalog.create(r) for r in records[start : start + 200]))
    return [r.id for r in reversed(records)]


async def test_a_thousand_files_list_whole_and_in_pages_newest_first_and_only_the_users(
    stack: Stack, stack_nats: SecuredNats
) -> None:
    owner = await stack.with_key(await stack.signup())
    other = await stack.with_key(await stack.signup())
    mine = await planted(stack_nats, owner, FILES)
    theirs = await planted(stack_nats, other, 30)

    status, bare = await stack.call("GET", "/api/v1/files/", headers=owner.key_auth)
    assert status == 200 and [f["id"] for f in bare] == mine
    assert {f["user_id"] for f in bare} == {owner.id}
    assert not shapes.missing(shapes.FILE, bare[-1])
    assert bare[0]["meta"]["name"] == f"f{FILES - 1}.md" and "dense_ranges" not in bare[0]["data"]

    paged: list[dict[str, Any]] = []
    for page in range(1, FILES // 50 + 2):
        status, body = await stack.call(
            "GET", f"/api/v1/files/?page={page}", headers=owner.key_auth
        )
        assert status == 200 and body["total"] == FILES
        paged += body["items"]
    assert [f["id"] for f in paged] == mine and len(body["items"]) == FILES % 50
    status, beyond = await stack.call("GET", "/api/v1/files/?page=999", headers=owner.key_auth)
    assert (status, beyond) == (200, {"items": [], "total": FILES})

    status, bare = await stack.call("GET", "/api/v1/files", headers=other.key_auth)
    assert status == 200 and [f["id"] for f in bare] == theirs
    # a deleted file leaves both listings at once
    status, _ = await stack.call("DELETE", f"/api/v1/files/{mine[0]}", headers=owner.key_auth)
    assert status == 200
    _, first = await stack.call("GET", "/api/v1/files/?page=1", headers=owner.key_auth)
    assert first["total"] == FILES - 1 and first["items"][0]["id"] == mine[1]
    newcomer = await stack.with_key(await stack.signup())
    assert await stack.call("GET", "/api/v1/files/", headers=newcomer.key_auth) == (200, [])


def a_chat(title: str, question: str, answer: str) -> dict[str, Any]:
    return {
        "chat": {
            "title": title,
            "history": {
                "currentId": "a",
                "messages": {
                    "q": {"id": "q", "role": "user", "content": question, "childrenIds": ["a"]},
                    "a": {"id": "a", "parentId": "q", "role": "assistant", "content": answer},
                },
            },
        }
    }


async def test_chats_are_found_by_the_text_of_their_messages(stack: Stack, user: Account) -> None:
    word = f"zq{uuid.uuid4().hex[:8]}"
    body = a_chat("Trip planning", "Which ferry goes to the island?", f"The {word} ferry, daily.")
    status, chat = await stack.call("POST", "/api/v1/chats/new", headers=user.key_auth, json=body)
    assert status == 200
    status, titled = await stack.call(
        "POST", "/api/v1/chats/new", headers=user.key_auth,
        json={"chat": {"title": f"About {word}"}},
    )  # fmt: skip
    assert status == 200

    status, found = await stack.call(
        "GET", f"/api/v1/chats/search?text={word.upper()}%20FERRY", headers=user.key_auth
    )
    assert status == 200 and [c["id"] for c in found] == [chat["id"]]  # the title lacks "ferry"
    assert (
        found[0]["snippet"] == f"The {word} ferry, daily." and found[0]["title"] == "Trip planning"
    )
    status, found = await stack.call(
        "GET", f"/api/v1/chats/search?text={word}", headers=user.key_auth
    )
    assert status == 200 and {c["id"] for c in found} == {chat["id"], titled["id"]}

    stranger = await stack.with_key(await stack.signup())
    status, found = await stack.call(
        "GET", f"/api/v1/chats/search?text={word}", headers=stranger.key_auth
    )
    assert (status, found) == (200, [])
    # a chat edited to other words is no longer found by the old ones
    status, _ = await stack.call(
        "POST", f"/api/v1/chats/{chat['id']}", headers=user.key_auth,
        json=a_chat("Trip planning", "Which bus?", "The night bus."),
    )  # fmt: skip
    assert status == 200
    _, found = await stack.call("GET", f"/api/v1/chats/search?text={word}", headers=user.key_auth)
    assert [c["id"] for c in found] == [titled["id"]]


async def test_collection_lists_carry_counts_not_file_records(
    stack: Stack, user: Account, stack_nats: SecuredNats
) -> None:
    status, created = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=user.key_auth,
        json={"name": f"kb-{uuid.uuid4().hex[:6]}", "access_control": {}},
    )  # fmt: skip
    assert status == 200
    (file_id,) = await planted(stack_nats, user, 1)
    status, added = await stack.call(
        "POST", f"/api/v1/knowledge/{created['id']}/file/add", headers=user.key_auth,
        json={"file_id": file_id},
    )  # fmt: skip
    assert status == 200 and [f["id"] for f in added["files"]] == [file_id]

    for path in ("/api/v1/knowledge/", "/api/v1/knowledge/list"):
        status, listed = await stack.call("GET", path, headers=user.key_auth)
        assert status == 200
        (item,) = [k for k in listed if k["id"] == created["id"]]
        assert item["file_count"] == 1 and "files" not in item
        assert not shapes.missing(shapes.KNOWLEDGE | {"write_access"}, item)
    status, one = await stack.call(
        "GET", f"/api/v1/knowledge/{created['id']}", headers=user.key_auth
    )
    assert status == 200 and [f["id"] for f in one["files"]] == [file_id]

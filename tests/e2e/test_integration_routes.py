"""The routes integrations call, over HTTP through every service: lists in both client
generations' shapes, batch add, incremental sync, text without a file, synchronous
upload, and editing a file's text with the next search seeing only the new text."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import aiohttp
import pytest

from contracts.retrieval import FileVectorsRef
from tests.e2e.rag_helpers import completed_upload, settled, upload
from tests.support.stack import Account, RagServices, Stack

pytestmark = pytest.mark.usefixtures("rag")


async def new_collection(stack: Stack, owner: Account, name: str | None = None) -> dict[str, Any]:
    status, created = await stack.call(
        "POST",
        "/api/v1/knowledge/create",
        headers=owner.key_auth,
        json={"name": name or f"kb-{uuid.uuid4().hex[:8]}", "access_control": {}},
    )
    assert status == 200, created
    return dict(created)


async def query_doc(stack: Stack, who: Account, file_id: str, text: str) -> list[str]:
    status, found = await stack.call(
        "POST",
        "/api/v1/retrieval/query/doc",
        headers=who.key_auth,
        json={"collection_name": file_id, "query": text, "k": 10},
    )
    assert status == 200, found
    return list(found["documents"][0])


async def query_collection(stack: Stack, who: Account, knowledge_id: str, text: str) -> list[str]:
    status, found = await stack.call(
        "POST",
        "/api/v1/retrieval/query/collection",
        headers=who.key_auth,
        json={"collection_names": [knowledge_id], "query": text, "k": 10},
    )
    assert status == 200, found
    return list(found["documents"][0])


async def test_a_client_finds_its_collection_by_name_in_either_list_shape(
    stack: Stack, user: Account
) -> None:
    name = f"Handbook {uuid.uuid4().hex[:6]}"
    created = await new_collection(stack, user, name)
    status, bare = await stack.call("GET", "/api/v1/knowledge/list", headers=user.key_auth)
    assert status == 200 and [k["id"] for k in bare if k["name"] == name] == [created["id"]]
    status, page = await stack.call("GET", "/api/v1/knowledge/?page=1", headers=user.key_auth)
    assert status == 200 and page["total"] >= 1
    assert created["id"] in {k["id"] for k in page["items"]}
    status, legacy = await stack.call("GET", "/api/v1/knowledge/", headers=user.key_auth)
    assert isinstance(legacy, list) and created["id"] in {k["id"] for k in legacy}


async def test_files_list_bare_or_paged(stack: Stack, user: Account) -> None:
    ids = [(await upload(stack, user, f"# n{n}\n".encode(), f"n{n}.md"))["id"] for n in range(3)]
    status, bare = await stack.call("GET", "/api/v1/files/", headers=user.key_auth)
    assert status == 200 and {f["id"] for f in bare} >= set(ids)
    status, page = await stack.call("GET", "/api/v1/files/?page=1", headers=user.key_auth)
    assert status == 200 and page["total"] == len(bare) and len(page["items"]) == len(bare)
    status, body = await stack.call("GET", "/api/v1/files/?page=0", headers=user.key_auth)
    assert status == 400 and "page" in body["detail"]


async def test_a_chat_is_found_again_by_title(stack: Stack, user: Account) -> None:
    title = f"Support ticket {uuid.uuid4().hex[:6]}"
    status, chat = await stack.call(
        "POST", "/api/v1/chats/new", headers=user.key_auth, json={"chat": {"title": title}}
    )
    assert status == 200
    query = title.split()[-1].upper()
    status, found = await stack.call(
        "GET", f"/api/v1/chats/search?text={query}", headers=user.key_auth
    )
    assert status == 200 and [c["id"] for c in found] == [chat["id"]]
    status, listed = await stack.call("GET", "/api/v1/chats/list", headers=user.key_auth)
    assert status == 200 and chat["id"] in {c["id"] for c in listed}
    status, body = await stack.call("GET", "/api/v1/chats/search", headers=user.key_auth)
    assert status == 400 and "text" in body["detail"]


async def test_batch_add_links_good_files_and_reports_the_rest(stack: Stack, user: Account) -> None:
    collection = await new_collection(stack, user)
    good = [await upload(stack, user, f"# d{n}\ntext {n}\n".encode(), f"d{n}.md") for n in range(4)]
    body = [{"file_id": f["id"]} for f in good] + [{"file_id": "missing"}]
    status, reply = await stack.call(
        "POST",
        f"/api/v1/knowledge/{collection['id']}/files/batch/add",
        headers=user.key_auth,
        json=body,
    )
    assert status == 200, reply
    outcome = {r["file_id"]: r["status"] for r in reply["results"]}
    assert outcome == {**{f["id"]: "added" for f in good}, "missing": "failed"}
    assert reply["warnings"]["errors"] == ["missing: File not found"]
    status, files = await stack.call(
        "GET", f"/api/v1/knowledge/{collection['id']}/files?query=D1", headers=user.key_auth
    )
    assert status == 200 and [f["meta"]["name"] for f in files["items"]] == ["d1.md"]
    status, bad = await stack.call(
        "POST",
        f"/api/v1/knowledge/{collection['id']}/files/batch/add",
        headers=user.key_auth,
        json={"file_id": "not a list"},
    )
    assert status == 400 and "detail" in bad


async def test_a_folder_syncs_incrementally_by_content_hash(stack: Stack, user: Account) -> None:
    collection = await new_collection(stack, user)
    folder = {"a.md": b"# A\nalpha\n", "b.md": b"# B\nbeta\n"}

    def manifest(files: dict[str, bytes]) -> dict[str, Any]:
        return {
            "manifest": [
                {"filename": n, "path": "", "checksum": hashlib.sha256(c).hexdigest(), "size": 1}
                for n, c in files.items()
            ]
        }

    async def diff(files: dict[str, bytes]) -> dict[str, Any]:
        status, reply = await stack.call(
            "POST",
            f"/api/v1/knowledge/{collection['id']}/sync/diff",
            headers=user.key_auth,
            json=manifest(files),
        )
        assert status == 200, reply
        return dict(reply)

    async def push(name: str, content: bytes) -> None:
        data = aiohttp.FormData()
        data.add_field("file", content, filename=name, content_type="text/markdown")
        data.add_field("metadata", json.dumps({"knowledge_id": collection["id"]}))
        status, record = await stack.call(
            "POST", "/api/v1/files/", headers=user.key_auth, data=data
        )
        assert status == 200, record

    first = await diff(folder)
    assert {a["filename"] for a in first["added"]} == set(folder)
    for name, content in folder.items():
        await push(name, content)
    assert (await diff(folder))["unmodified_count"] == 2

    changed = {"a.md": b"# A\nalpha, edited\n", "c.md": b"# C\ngamma\n"}
    second = await diff(changed)
    assert [a["filename"] for a in second["added"]] == ["c.md"]
    assert [m["filename"] for m in second["modified"]] == ["a.md"]
    assert [d["filename"] for d in second["deleted"]] == ["b.md"]
    stale = [m["stale_file_id"] for m in second["modified"]] + [
        d["file_id"] for d in second["deleted"]
    ]
    status, cleaned = await stack.call(
        "POST",
        f"/api/v1/knowledge/{collection['id']}/sync/cleanup",
        headers=user.key_auth,
        json={"file_ids": stale},
    )
    assert (status, cleaned) == (200, {"status": True})
    for name in changed:
        await push(name, changed[name])
    assert (await diff(changed))["unmodified_count"] == 2
    for file_id in stale:  # in no collection any more, and the caller's: deleted
        status, _ = await stack.call("GET", f"/api/v1/files/{file_id}", headers=user.key_auth)
        assert status == 404


async def test_an_upload_into_a_collection_it_may_not_write_is_refused(
    stack: Stack, user: Account
) -> None:
    owner = await stack.with_key(await stack.signup())
    theirs = await new_collection(stack, owner)
    data = aiohttp.FormData()
    data.add_field("file", b"# x\n", filename="x.md", content_type="text/markdown")
    data.add_field("metadata", json.dumps({"knowledge_id": theirs["id"]}))
    status, body = await stack.call("POST", "/api/v1/files/", headers=user.key_auth, data=data)
    assert status == 404, body
    status, mine = await stack.call("GET", "/api/v1/files/?page=1", headers=user.key_auth)
    assert "x.md" not in {f["meta"]["name"] for f in mine["items"]}


async def test_a_synchronous_upload_answers_once_processed(stack: Stack, user: Account) -> None:
    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("file", b"# Sync\nready\n", filename="s.md", content_type="text/markdown")
        return data

    status, record = await stack.call(
        "POST", "/api/v1/files/?process_in_background=false", headers=user.key_auth, data=form()
    )
    assert status == 200, record
    assert record["data"]["status"] == "completed"
    _, before = await stack.call("GET", "/api/v1/files/?page=1", headers=user.key_auth)
    status, body = await stack.call(
        "POST", "/api/v1/files/?process_in_background=maybe", headers=user.key_auth, data=form()
    )
    assert status == 400 and "process_in_background" in body["detail"]
    _, after = await stack.call("GET", "/api/v1/files/?page=1", headers=user.key_auth)
    assert after["total"] == before["total"]  # refused before anything was stored


async def test_plain_text_becomes_a_searchable_file_in_a_collection(
    stack: Stack, user: Account
) -> None:
    collection = await new_collection(stack, user)
    marker = f"zebrafish{uuid.uuid4().hex[:6]}"
    status, reply = await stack.call(
        "POST",
        "/api/v1/retrieval/process/text",
        headers=user.key_auth,
        json={
            "name": "notes",
            "content": f"Field notes: the {marker} swims upstream.",
            "collection_name": collection["id"],
        },
    )
    assert status == 200, reply
    assert reply["status"] is True and reply["collection_name"] == collection["id"]
    assert reply["file"]["data"]["status"] == "completed"
    found = await query_collection(stack, user, collection["id"], marker)
    assert any(marker in chunk for chunk in found)
    status, bad = await stack.call(
        "POST",
        "/api/v1/retrieval/process/text",
        headers=user.key_auth,
        json={"name": "empty", "content": "   "},
    )
    assert status == 400 and "empty" in bad["detail"]


async def test_an_edited_text_replaces_every_old_chunk_in_every_search(
    stack: Stack, user: Account, rag: RagServices
) -> None:
    old, new = f"walrus{uuid.uuid4().hex[:6]}", f"pelican{uuid.uuid4().hex[:6]}"
    body = "\n\n".join(f"## Part {n}\n" + f"The {old} appears here. " * 40 for n in range(6))
    record = await completed_upload(stack, user, body.encode(), "animals.md")
    collection = await new_collection(stack, user)
    status, _ = await stack.call(
        "POST",
        f"/api/v1/knowledge/{collection['id']}/file/add",
        headers=user.key_auth,
        json={"file_id": record["id"]},
    )
    assert status == 200
    assert any(old in c for c in await query_doc(stack, user, record["id"], old))

    status, reply = await stack.call(
        "POST",
        f"/api/v1/files/{record['id']}/data/content/update",
        headers=user.key_auth,
        json={"content": f"A short note about the {new}."},
    )
    assert status == 200, reply
    assert reply["status"] == "completed" and new in reply["content"]
    for search in (
        await query_doc(stack, user, record["id"], old),
        await query_doc(stack, user, record["id"], new),
        await query_collection(stack, user, collection["id"], old),
        await query_collection(stack, user, collection["id"], new),
    ):
        assert search and not any(old in chunk for chunk in search), search
        assert any(new in chunk for chunk in search)
    stored = await rag.retrieval.vectors.stored(FileVectorsRef(file_id=record["id"]))
    assert stored.count == 1  # the store holds the new text's one chunk alone
    status, text = await stack.call(
        "GET", f"/api/v1/files/{record['id']}/data/content", headers=user.key_auth
    )
    assert text["content"] == f"A short note about the {new}."

    status, again = await stack.call(
        "POST",
        f"/api/v1/knowledge/{collection['id']}/file/update",
        headers=user.key_auth,
        json={"file_id": record["id"]},
    )
    assert status == 200, again
    assert (await settled(stack, user, record["id"]))["status"] == "completed"
    assert any(new in c for c in await query_doc(stack, user, record["id"], new))
    status, body404 = await stack.call(
        "POST",
        f"/api/v1/knowledge/{collection['id']}/file/update",
        headers=user.key_auth,
        json={"file_id": "not-in-it"},
    )
    assert status == 404, body404

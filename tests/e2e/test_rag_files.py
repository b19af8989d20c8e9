"""Files and knowledge collections through the gateway, with real ingestion workers and the
real retrieval service (embedding model, embedded Qdrant engine)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.rag_helpers import completed_upload, settled, upload
from tests.ingestion.files import docx_bytes, pdf_bytes
from tests.support.stack import Account, RagServices, Stack

pytestmark = pytest.mark.usefixtures("rag")

SAMPLES: list[tuple[str, bytes, str]] = [
    ("notes.txt", b"The lighthouse keeper logs the weather every morning.", "lighthouse"),
    ("guide.md", b"# Garden\n\n## Roses\n\nPrune roses in late winter.", "roses"),
    ("table.csv", b"city,river\nParis,Seine\nLondon,Thames\n", "Thames"),
    ("data.json", json.dumps({"planet": "Mars", "moons": ["Phobos"]}).encode(), "Phobos"),
    ("page.html", b"<html><body><h1>Kites</h1><p>Kites need wind.</p></body></html>", "wind"),
    ("report.pdf", pdf_bytes([["Quarterly report", "Revenue grew by nine percent."]]), "nine"),
    ("letter.docx", docx_bytes(), ""),
]


@pytest.mark.parametrize(("name", "content", "word"), SAMPLES, ids=[s[0] for s in SAMPLES])
async def test_each_supported_type_is_ingested_and_its_text_served(
    stack: Stack, user: Account, name: str, content: bytes, word: str
) -> None:
    record = await completed_upload(stack, user, content, name)
    status, text = await stack.call(
        "GET", f"/api/v1/files/{record['id']}/data/content", headers=user.key_auth
    )
    assert status == 200
    assert text["content"].strip()
    assert word in text["content"]
    status, again = await stack.call("GET", f"/api/v1/files/{record['id']}", headers=user.key_auth)
    assert again["data"]["status"] == "completed"


async def test_a_broken_pdf_ends_failed_with_a_reason(stack: Stack, user: Account) -> None:
    record = await upload(stack, user, b"%PDF-1.4\nthis is not really a pdf", "broken.pdf")
    state = await settled(stack, user, record["id"])
    assert state["status"] == "failed"
    assert state["error"]
    status, body = await stack.call(
        "GET", f"/api/v1/files/{record['id']}/data/content", headers=user.key_auth
    )
    assert status == 404 and state["error"] in body["detail"]


async def test_deleting_a_file_removes_it_and_only_its_owner_may(
    stack: Stack, user: Account, rag: RagServices
) -> None:
    other = await stack.with_key(await stack.signup())
    record = await completed_upload(stack, user, b"Delete me: the owl sleeps by day.", "owl.txt")
    status, _ = await stack.call("DELETE", f"/api/v1/files/{record['id']}", headers=other.key_auth)
    assert status == 404
    status, body = await stack.call(
        "DELETE", f"/api/v1/files/{record['id']}", headers=user.key_auth
    )
    assert (status, body) == (200, True)
    status, _ = await stack.call("GET", f"/api/v1/files/{record['id']}", headers=user.key_auth)
    assert status == 404
    status, _ = await stack.call(
        "GET", f"/api/v1/files/{record['id']}/content", headers=user.key_auth
    )
    assert status == 404


async def test_a_knowledge_collection_lives_through_add_remove_reset_and_delete(
    stack: Stack, user: Account
) -> None:
    status, knowledge = await stack.call(
        "POST",
        "/api/v1/knowledge/create",
        headers=user.key_auth,
        json={"name": "Field notes", "description": "birds", "access_control": {}},
    )
    assert status == 200, knowledge
    kid = knowledge["id"]
    assert knowledge["files"] == [] and knowledge["name"] == "Field notes"
    ready = await completed_upload(stack, user, b"Swifts sleep while flying.", "swifts.txt")
    # added while still pending: accepted, and it joins the search once completed
    pending = await upload(stack, user, b"Herons stand still in shallow water.", "herons.txt")
    for file_id in (ready["id"], pending["id"]):
        status, knowledge = await stack.call(
            "POST", f"/api/v1/knowledge/{kid}/file/add", headers=user.key_auth,
            json={"file_id": file_id},
        )  # fmt: skip
        assert status == 200, knowledge
    assert knowledge["data"]["file_ids"] == [ready["id"], pending["id"]]
    assert {f["id"] for f in knowledge["files"]} == {ready["id"], pending["id"]}

    status, found = await stack.call(
        "POST", "/api/v1/retrieval/query/collection", headers=user.key_auth,
        json={"collection_names": [kid], "query": "herons in water", "k": 5},
    )  # fmt: skip
    assert status == 200, found
    assert found["metadatas"][0][0]["file_id"] == pending["id"]
    assert {m["file_id"] for m in found["metadatas"][0]} == {ready["id"], pending["id"]}

    status, knowledge = await stack.call(
        "POST", f"/api/v1/knowledge/{kid}/file/remove", headers=user.key_auth,
        json={"file_id": pending["id"]},
    )  # fmt: skip
    assert status == 200 and knowledge["data"]["file_ids"] == [ready["id"]]
    status, found = await stack.call(
        "POST", "/api/v1/retrieval/query/collection", headers=user.key_auth,
        json={"collection_names": [kid], "query": "herons in water"},
    )  # fmt: skip
    assert {m["file_id"] for m in found["metadatas"][0]} == {ready["id"]}
    # the removed file itself is untouched
    status, _ = await stack.call("GET", f"/api/v1/files/{pending['id']}", headers=user.key_auth)
    assert status == 200

    status, knowledge = await stack.call(
        "POST", f"/api/v1/knowledge/{kid}/reset", headers=user.key_auth
    )
    assert status == 200 and knowledge["files"] == [] and knowledge["data"]["file_ids"] == []
    status, listed = await stack.call("GET", "/api/v1/knowledge/", headers=user.key_auth)
    assert kid in {k["id"] for k in listed}
    status, body = await stack.call(
        "DELETE", f"/api/v1/knowledge/{kid}/delete", headers=user.key_auth
    )
    assert (status, body) == (200, True)
    status, _ = await stack.call("GET", f"/api/v1/knowledge/{kid}", headers=user.key_auth)
    assert status == 404


async def test_another_user_cannot_reach_a_private_collection_or_add_your_files(
    stack: Stack, user: Account
) -> None:
    other = await stack.with_key(await stack.signup())
    mine = await completed_upload(stack, user, b"Private: the vault code is 4417.", "vault.txt")
    _, knowledge = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=user.key_auth,
        json={"name": "Private", "access_control": {}},
    )  # fmt: skip
    kid = knowledge["id"]
    status, _ = await stack.call("GET", f"/api/v1/knowledge/{kid}", headers=other.key_auth)
    assert status == 404
    status, _ = await stack.call(
        "POST", f"/api/v1/knowledge/{kid}/file/add", headers=other.key_auth,
        json={"file_id": mine["id"]},
    )  # fmt: skip
    assert status == 404
    _, theirs = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=other.key_auth, json={"name": "Theirs"}
    )
    status, _ = await stack.call(
        "POST", f"/api/v1/knowledge/{theirs['id']}/file/add", headers=other.key_auth,
        json={"file_id": mine["id"]},
    )  # fmt: skip
    assert status == 404
    status, _ = await stack.call(
        "DELETE", f"/api/v1/knowledge/{kid}/delete", headers=other.key_auth
    )
    assert status == 404
    _, listed = await stack.call("GET", "/api/v1/knowledge/", headers=other.key_auth)
    assert kid not in {k["id"] for k in listed}
    status, _ = await stack.call(
        "POST", "/api/v1/retrieval/query/collection", headers=other.key_auth,
        json={"collection_names": [kid], "query": "vault code"},
    )  # fmt: skip
    assert status == 404
    status, _ = await stack.call(
        "POST", "/api/v1/retrieval/query/doc", headers=other.key_auth,
        json={"collection_name": f"file-{mine['id']}", "query": "vault code"},
    )  # fmt: skip
    assert status == 404


async def test_query_doc_answers_in_open_webuis_shape_best_first(
    stack: Stack, user: Account
) -> None:
    text = "\n\n".join(
        f"Paragraph {n}: " + ("the tide rises twice a day. " if n == 7 else "filler words. ") * 40
        for n in range(12)
    )
    record = await completed_upload(stack, user, text.encode(), "tides.txt")
    for name in (f"file-{record['id']}", record["id"]):
        status, found = await stack.call(
            "POST", "/api/v1/retrieval/query/doc", headers=user.key_auth,
            json={"collection_name": name, "query": "how often does the tide rise", "k": 3},
        )  # fmt: skip
        assert status == 200, found
        assert set(found) == {"documents", "metadatas", "distances"}
        assert len(found["documents"][0]) == 3
        assert "tide rises" in found["documents"][0][0]
        assert found["distances"][0] == sorted(found["distances"][0], reverse=True)
        meta = found["metadatas"][0][0]
        assert meta["file_id"] == record["id"] and meta["name"] == "tides.txt"
        assert {"source", "chunk_index"} <= set(meta)

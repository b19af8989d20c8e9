"""Upload metadata and the filters on it, through the gateway with the real services: file
and collection listings, the retrieval routes and RAG in chat."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.e2e.rag_helpers import settled
from tests.support.stack import Account, Stack

pytestmark = pytest.mark.usefixtures("rag")

# The swift reports are the best matches for the question; only older reports are in English.
DOCS: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "swifts-2024.txt",
        b"Common swifts sleep while flying high over the sea.",
        {"year": 2024, "lang": "de", "published": "2024-05-01"},
    ),
    (
        "swifts-2023.txt",
        b"Swifts sleep on the wing and rarely land at all.",
        {"year": 2023, "lang": "de", "published": "2023-07-15T09:30:00Z"},
    ),
    (
        "gulls-2019.txt",
        b"Gulls float on calm water at dusk.",
        {"year": 2019, "lang": "en", "published": "2019-02-01"},
    ),
    (
        "owls-2018.txt",
        b"Owls sleep in tree hollows during the day.",
        {"year": 2018, "lang": "en", "published": "2018-11-30"},
    ),
]
QUESTION = "Which birds sleep while flying?"
OLD_ENGLISH = {"must": [{"key": "lang", "eq": "en"}, {"key": "year", "range": {"lt": 2020}}]}


async def upload_with(
    stack: Stack, user: Account, name: str, content: bytes, metadata: Any
) -> tuple[int, Any]:
    data = aiohttp.FormData()
    data.add_field("file", content, filename=name, content_type="text/plain")
    data.add_field("metadata", metadata if isinstance(metadata, str) else json.dumps(metadata))
    return await stack.call("POST", "/api/v1/files/", headers=user.key_auth, data=data)


@pytest.fixture
async def library(stack: Stack, user: Account) -> tuple[str, dict[str, str]]:
    """A collection of the four reports; returns its id and each file's id by name."""
    status, knowledge = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=user.key_auth,
        json={"name": "Birds", "description": "sleep", "access_control": {}},
    )  # fmt: skip
    assert status == 200, knowledge
    ids: dict[str, str] = {}
    for name, content, metadata in DOCS:
        status, record = await upload_with(
            stack, user, name, content, {**metadata, "knowledge_id": knowledge["id"]}
        )
        assert status == 200, record
        ids[name] = record["id"]
    for file_id in ids.values():
        assert (await settled(stack, user, file_id))["status"] == "completed"
    return knowledge["id"], ids


def names_of(ids: dict[str, str], file_ids: list[str]) -> set[str]:
    by_id = {file_id: name for name, file_id in ids.items()}
    return {by_id[file_id] for file_id in file_ids}


async def test_a_collection_query_returns_k_chunks_that_pass_the_filter(
    stack: Stack, user: Account, library: tuple[str, dict[str, str]]
) -> None:
    knowledge_id, ids = library
    body = {"collection_names": [knowledge_id], "query": QUESTION, "k": 2}
    status, unfiltered = await stack.call(
        "POST", "/api/v1/retrieval/query/collection", headers=user.key_auth, json=body
    )
    assert status == 200, unfiltered
    best = [meta["file_id"] for meta in unfiltered["metadatas"][0]]
    assert names_of(ids, best[:1]) <= {"swifts-2024.txt", "swifts-2023.txt"}
    status, filtered = await stack.call(
        "POST", "/api/v1/retrieval/query/collection", headers=user.key_auth,
        json={**body, "filter": OLD_ENGLISH},
    )  # fmt: skip
    assert status == 200, filtered
    metadatas = filtered["metadatas"][0]
    assert len(metadatas) == 2  # k, though neither is among the unfiltered best
    assert names_of(ids, [meta["file_id"] for meta in metadatas]) == {
        "gulls-2019.txt",
        "owls-2018.txt",
    }
    # the upload's metadata rides with every hit
    assert {meta["file_metadata"]["lang"] for meta in metadatas} == {"en"}


async def test_dates_filter_the_doc_query_and_the_listings(
    stack: Stack, user: Account, library: tuple[str, dict[str, str]]
) -> None:
    knowledge_id, ids = library
    since_2023 = {"must": [{"key": "published", "range": {"gte": "2023-06-01T00:00:00+00:00"}}]}
    status, reply = await stack.call(
        "POST", "/api/v1/retrieval/query/doc", headers=user.key_auth,
        json={"collection_name": ids["gulls-2019.txt"], "query": QUESTION, "filter": since_2023},
    )  # fmt: skip
    assert (status, reply["documents"]) == (200, [[]])
    status, reply = await stack.call(
        "POST", "/api/v1/retrieval/query/doc", headers=user.key_auth,
        json={"collection_name": ids["swifts-2024.txt"], "query": QUESTION, "filter": since_2023},
    )  # fmt: skip
    assert status == 200 and len(reply["documents"][0]) == 1

    param = quote(json.dumps(since_2023))
    status, files = await stack.call("GET", f"/api/v1/files/?filter={param}", headers=user.key_auth)
    assert status == 200, files
    assert names_of(ids, [f["id"] for f in files]) == {"swifts-2024.txt", "swifts-2023.txt"}
    status, page = await stack.call(
        "GET", f"/api/v1/files/?page=1&filter={param}", headers=user.key_auth
    )
    assert status == 200 and page["total"] == 2

    in_langs = quote(json.dumps({"must_not": [{"key": "lang", "in": ["de"]}]}))
    status, listed = await stack.call(
        "GET", f"/api/v1/knowledge/{knowledge_id}/files?filter={in_langs}", headers=user.key_auth
    )
    assert status == 200, listed
    assert listed["total"] == 2
    assert names_of(ids, [f["id"] for f in listed["items"]]) == {"gulls-2019.txt", "owls-2018.txt"}


async def test_a_chat_searches_only_the_files_that_pass_its_filter(
    stack: Stack, user: Account, library: tuple[str, dict[str, str]]
) -> None:
    knowledge_id, ids = library
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth,
        json={
            "model": "gpt-fake",
            "messages": [{"role": "user", "content": QUESTION}],
            "files": [{"type": "collection", "id": knowledge_id, "filter": OLD_ENGLISH}],
        },
    )  # fmt: skip
    assert status == 200, reply
    [source] = reply["sources"]
    assert names_of(ids, [meta["file_id"] for meta in source["metadata"]]) <= {
        "gulls-2019.txt",
        "owls-2018.txt",
    }
    assert source["metadata"]


@pytest.mark.parametrize(
    ("method", "path", "body", "reason"),
    [
        ("GET", "/api/v1/files/?filter=%7Bnope", None, "not JSON"),
        ("GET", "/api/v1/files/?filter=" + quote('{"must":[{"key":"y"}]}'), None, "exactly one"),
        (
            "POST",
            "/api/v1/retrieval/query/collection",
            {"collection_names": ["x"], "query": "q", "filter": {"must": [{"key": "y", "lt": 1}]}},
            "unknown field",
        ),
        (
            "POST",
            "/api/v1/retrieval/query/doc",
            {
                "collection_name": "x",
                "query": "q",
                "filter": {"must": [{"key": "d", "range": {"gte": "soon"}}]},
            },
            "ISO 8601",
        ),
    ],
)
async def test_a_bad_filter_is_a_400_that_says_why(
    stack: Stack, user: Account, method: str, path: str, body: Any, reason: str
) -> None:
    status, reply = await stack.call(method, path, headers=user.key_auth, json=body)
    assert status == 400, reply
    assert reason in reply["detail"]


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [("{not json", "must be a JSON object"), ({"blob": "x" * 9000}, "larger than 8 KiB")],
)
async def test_bad_or_oversized_upload_metadata_is_a_400(
    stack: Stack, user: Account, metadata: Any, reason: str
) -> None:
    status, reply = await upload_with(stack, user, "a.txt", b"some text", metadata)
    assert status == 400, reply
    assert reason in reply["detail"]

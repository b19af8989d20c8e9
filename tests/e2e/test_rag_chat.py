"""RAG in chat: retrieval through the gateway, the prompt the backend receives, `sources`."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import aiohttp
import pytest

from catalog.files import FileCatalog, now
from common.bus import Bus
from common.nats_conn import connect_nats
from contracts import subjects
from contracts.files import FileData, FileMeta, FileRecord
from contracts.retrieval import ChunkVector, UpsertChunks
from embedding.embedder import Embedder
from embedding.settings import EmbedderSettings
from gateway.app import Settings, serve
from tests.e2e.rag_helpers import completed_upload, settled, upload
from tests.e2e.test_chat_flow import content_of, read_events
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.nats import SecuredNats
from tests.support.stack import Account, Stack

pytestmark = pytest.mark.usefixtures("rag")

MODEL = "gpt-fake"
QUESTION = "Which bird can sleep while flying?"
FACTS = b"Common swifts can sleep while flying. They land only to nest."


def chat(files: list[dict[str, Any]], stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Earlier question"},
            {"role": "assistant", "content": "Earlier answer"},
            {"role": "user", "content": QUESTION},
        ],
        "files": files,
        **extra,
    }


def backend_body(fakes: tuple[OpenAIFake, OllamaFake]) -> Any:
    return fakes[0].last("/v1/chat/completions").json


def source_ids(prompt: str) -> list[str]:
    return re.findall(r'<source id="(\d+)" name="([^"]*)">', prompt)  # type: ignore[return-value]


async def test_a_chat_with_a_file_gets_the_rag_prompt_and_sources(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    record = await completed_upload(stack, user, FACTS, "birds.txt")
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth,
        json=chat([{"type": "file", "id": record["id"]}]),
    )  # fmt: skip
    assert status == 200, reply
    assert reply["object"] == "chat.completion"
    [source] = reply["sources"]
    assert source["source"] == {"type": "file", "id": record["id"], "name": "birds.txt"}
    assert source["document"] == [FACTS.decode()]
    assert source["metadata"][0]["file_id"] == record["id"]
    assert source["metadata"][0]["name"] == "birds.txt"
    assert len(source["distances"]) == 1
    assert "indexing" not in source  # completed: nothing to say

    sent = backend_body(backend_fakes)
    assert "files" not in sent
    messages = sent["messages"]
    assert [m["content"] for m in messages[:3]] == [
        "Be brief.",
        "Earlier question",
        "Earlier answer",
    ]
    prompt = messages[-1]["content"]
    assert source_ids(prompt) == [("1", "birds.txt")]
    assert FACTS.decode() in prompt
    assert "[n]" in prompt or "[1]" in prompt
    assert prompt.endswith(QUESTION)
    assert prompt.index("<context>") < prompt.index(QUESTION)


async def test_a_streamed_chat_with_a_collection_sends_sources_first(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    first = await completed_upload(stack, user, FACTS, "swifts.txt")
    second = await completed_upload(
        stack, user, b"Albatrosses glide for hours over the ocean.", "albatross.txt"
    )
    _, knowledge = await stack.call(
        "POST", "/api/v1/knowledge/create", headers=user.key_auth, json={"name": "Birds"}
    )
    for record in (first, second):
        status, _ = await stack.call(
            "POST", f"/api/v1/knowledge/{knowledge['id']}/file/add", headers=user.key_auth,
            json={"file_id": record["id"]},
        )  # fmt: skip
        assert status == 200
    body = chat([{"type": "collection", "id": knowledge["id"]}], stream=True)
    async with stack.http.post(
        stack.url + "/api/chat/completions", json=body, headers=user.key_auth
    ) as reply:
        assert reply.status == 200
        assert reply.content_type == "text/event-stream"
        events = await read_events(reply)
    assert set(events[0]) == {"sources"}
    [source] = events[0]["sources"]
    assert source["source"] == {"type": "collection", "id": knowledge["id"], "name": "Birds"}
    assert source["metadata"][0]["file_id"] == first["id"]  # the best match first
    assert {m["file_id"] for m in source["metadata"]} == {first["id"], second["id"]}
    assert events[-1] == "[DONE]"
    assert content_of(events[1:]).startswith("Echo: ")
    prompt = backend_body(backend_fakes)["messages"][-1]["content"]
    names = [name for _, name in source_ids(prompt)]
    assert [n for n, _ in source_ids(prompt)] == ["1", "2"]
    assert names == [m["name"] for m in source["metadata"]]


async def test_sources_are_numbered_across_files_items_in_order(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    a = await completed_upload(stack, user, FACTS, "a.txt")
    b = await completed_upload(stack, user, b"Penguins cannot fly but swim well.", "b.txt")
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth,
        json=chat([{"type": "file", "id": a["id"]}, {"type": "file", "id": b["id"]}]),
    )  # fmt: skip
    assert status == 200, reply
    assert [s["source"]["id"] for s in reply["sources"]] == [a["id"], b["id"]]
    prompt = backend_body(backend_fakes)["messages"][-1]["content"]
    assert source_ids(prompt) == [("1", "a.txt"), ("2", "b.txt")]


async def test_full_context_uses_every_chunk_of_the_file(stack: Stack, user: Account) -> None:
    text = "\n\n".join(f"Section {n}. " + "words " * 200 for n in range(6))
    record = await completed_upload(stack, user, text.encode(), "long.txt")
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth,
        json=chat([{"type": "file", "id": record["id"], "context": "full"}]),
    )  # fmt: skip
    assert status == 200, reply
    indexes = [m["chunk_index"] for m in reply["sources"][0]["metadata"]]
    assert indexes == list(range(len(indexes))) and len(indexes) > 4  # more than top-k


async def test_content_part_messages_get_the_prompt_in_their_text_part(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    record = await completed_upload(stack, user, FACTS, "parts.txt")
    body = chat([{"type": "file", "id": record["id"]}])
    body["messages"][-1]["content"] = [{"type": "text", "text": QUESTION}]
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=body
    )
    assert status == 200, reply
    [part] = backend_body(backend_fakes)["messages"][-1]["content"]
    assert part["type"] == "text"
    assert source_ids(part["text"]) == [("1", "parts.txt")] and part["text"].endswith(QUESTION)


@pytest.mark.parametrize("stream", [False, True])
async def test_another_users_file_in_chat_is_404_before_any_stream(
    stack: Stack, user: Account, stream: bool
) -> None:
    other = await stack.with_key(await stack.signup())
    record = await completed_upload(stack, user, FACTS, "mine.txt")
    async with stack.http.post(
        stack.url + "/api/chat/completions", headers=other.key_auth,
        json=chat([{"type": "file", "id": record["id"]}], stream=stream),
    ) as reply:  # fmt: skip
        assert reply.status == 404
        assert reply.content_type == "application/json"
        assert record["id"] in (await reply.json())["detail"]


async def test_a_failed_file_in_chat_is_a_400_naming_it(stack: Stack, user: Account) -> None:
    record = await upload(stack, user, b"%PDF-1.4 nothing here", "empty.pdf")
    assert (await settled(stack, user, record["id"]))["status"] == "failed"
    status, body = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth,
        json=chat([{"type": "file", "id": record["id"]}], stream=True),
    )  # fmt: skip
    assert status == 400
    assert "empty.pdf" in body["detail"]


async def test_a_file_still_processing_after_the_wait_is_409_naming_it(
    stack: Stack, user: Account, stack_nats: SecuredNats
) -> None:
    """A record with no job stays pending; a gateway with a short wait reports it."""
    async with connect_nats(  # the catalog and the vector store as ingestion writes them
        [stack_nats.url], name="rag-test", auth=stack_nats.users[subjects.INGESTION_SERVICE]
    ) as nc:
        catalog = await FileCatalog.open(nc.jetstream())
        stamp = now()
        file_id = str(uuid.uuid4())
        await catalog.create(
            FileRecord(
                id=file_id, user_id=user.id, hash="0" * 64, filename="stuck.txt",
                data=FileData(status="processing"),
                meta=FileMeta(name="stuck.txt", content_type="text/plain", size=1),
                created_at=stamp, updated_at=stamp,
            )
        )  # fmt: skip
    settings = Settings(**stack_nats.login(subjects.GATEWAY_SERVICE), port=0, rag_wait_seconds=0.3)
    async with serve(settings) as gateway, aiohttp.ClientSession() as http, http.post(
        gateway.url + "/api/chat/completions", headers=user.key_auth,
        json=chat([{"type": "file", "id": file_id}], stream=True),
    ) as reply:  # fmt: skip
        assert reply.status == 409
        assert "stuck.txt" in (await reply.json())["detail"]


def bm25_chunk(text: str) -> ChunkVector:
    """A chunk as the keyword phase of ingestion stores it: text and BM25, no dense yet."""
    [sparse] = Embedder(EmbedderSettings(threads=1)).sparse_documents([text])
    return ChunkVector(
        index=0, text=text, dense=[], sparse_indices=sparse.indices, sparse_values=sparse.values
    )


async def test_a_file_still_being_embedded_is_searched_by_keywords_and_named_in_sources(
    stack: Stack,
    user: Account,
    stack_nats: SecuredNats,
    backend_fakes: tuple[OpenAIFake, OllamaFake],
) -> None:
    """Keyword-searchable, dense vectors not written: after the bounded wait the chat is
    answered from what is indexed, and `sources` says the file is still indexing."""
    text = FACTS.decode()
    file_id = str(uuid.uuid4())
    async with connect_nats(  # the catalog and the vector store as ingestion writes them
        [stack_nats.url], name="rag-test", auth=stack_nats.users[subjects.INGESTION_SERVICE]
    ) as nc:
        catalog = await FileCatalog.open(nc.jetstream())
        stamp = now()
        await catalog.create(
            FileRecord(
                id=file_id, user_id=user.id, hash="1" * 64, filename="swifts.txt",
                data=FileData(status="processing", chunks_total=1, keyword_searchable=True),
                meta=FileMeta(name="swifts.txt", content_type="text/plain", size=len(FACTS)),
                created_at=stamp, updated_at=stamp,
            )
        )  # fmt: skip
        chunk = await asyncio.to_thread(bm25_chunk, text)
        written = await Bus(nc).call(
            subjects.VECTORS_UPSERT,
            UpsertChunks(file_id=file_id, owner=user.id, name="swifts.txt", chunks=[chunk]),
            timeout=10,
        )
        assert written.count == 1
    settings = Settings(
        **stack_nats.login(subjects.GATEWAY_SERVICE), port=0, rag_complete_wait_seconds=0.2
    )
    async with serve(settings) as gateway, aiohttp.ClientSession() as http, http.post(
        gateway.url + "/api/chat/completions", headers=user.key_auth,
        json=chat([{"type": "file", "id": file_id}]),
    ) as reply:  # fmt: skip
        assert reply.status == 200, await reply.text()
        body = await reply.json()
    [source] = body["sources"]
    assert source["document"] == [text]
    assert source["indexing"] == [
        {"file_id": file_id, "name": "swifts.txt", "chunks_embedded": 0, "chunks_total": 1}
    ]
    assert text in backend_body(backend_fakes)["messages"][-1]["content"]


async def test_a_chat_without_files_is_forwarded_untouched(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    body = chat([])
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=body
    )
    assert status == 200 and "sources" not in reply
    assert backend_body(backend_fakes)["messages"][-1]["content"] == QUESTION

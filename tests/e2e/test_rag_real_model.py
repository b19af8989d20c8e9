"""RAG in chat with the real small model (llama.cpp serving SmolLM2-135M-Instruct):
the sources come from our retrieval, the answer from a real LLM that stops by itself."""

from __future__ import annotations

import json
from typing import Any

from stack.llm_setup import MODEL_ID
from tests.e2e.rag_helpers import completed_upload
from tests.support.stack import Account, RagServices, Stack

FACT = (
    "The ragway lighthouse stands on Korrin Island. Its keeper is named Ada Voss, "
    "and the light flashes green every nine seconds."
)


def ask(file_ref: dict[str, str], stream: bool) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "Who keeps the ragway lighthouse?"}],
        "files": [file_ref],
        "max_tokens": 24,
        "temperature": 0,
        "stream": stream,
    }


async def test_the_real_model_answers_a_chat_with_a_file_and_its_sources(
    stack: Stack, user: Account, rag: RagServices
) -> None:
    record = await completed_upload(stack, user, FACT.encode(), "lighthouse.txt")
    status, reply = await stack.call(
        "POST",
        "/api/chat/completions",
        json=ask({"type": "file", "id": record["id"]}, False),
        headers=user.key_auth,
    )
    assert status == 200, reply
    assert reply["model"] == MODEL_ID
    assert reply["choices"][0]["message"]["content"].strip()
    assert reply["usage"]["completion_tokens"] > 0
    [source] = reply["sources"]
    assert source["source"] == {"type": "file", "id": record["id"], "name": "lighthouse.txt"}
    assert "Ada Voss" in source["document"][0]
    assert source["metadata"][0]["file_id"] == record["id"]


async def test_the_real_model_streams_a_chat_with_a_collection_sources_first(
    stack: Stack, user: Account, rag: RagServices
) -> None:
    record = await completed_upload(stack, user, FACT.encode(), "lighthouse.md")
    status, knowledge = await stack.call(
        "POST",
        "/api/v1/knowledge/create",
        json={"name": "lights", "description": ""},
        headers=user.key_auth,
    )
    assert status == 200, knowledge
    status, _ = await stack.call(
        "POST",
        f"/api/v1/knowledge/{knowledge['id']}/file/add",
        json={"file_id": record["id"]},
        headers=user.key_auth,
    )
    assert status == 200
    body = ask({"type": "collection", "id": knowledge["id"]}, True)
    async with stack.http.post(
        f"{stack.url}/api/chat/completions", json=body, headers=user.key_auth
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [
            line[len(b"data: ") :].strip()
            async for line in response.content
            if line.startswith(b"data: ")
        ]
    assert events[-1] == b"[DONE]"
    first = json.loads(events[0])
    assert first["sources"][0]["source"]["id"] == knowledge["id"]
    assert "Ada Voss" in first["sources"][0]["document"][0]
    chunks = [json.loads(event) for event in events[1:-1]]
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text.strip()
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}

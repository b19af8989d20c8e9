"""`/ollama/...` through the gateway and the inference-proxy to the Ollama fake."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import aiohttp
import ollama
import openai
import pytest

from tests.fakes.ollama_fake import OllamaFake, embedding_of
from tests.fakes.openai_fake import OpenAIFake
from tests.support.stack import Account, Stack

MODEL = "llama3.2:latest"
NDJSON = "application/x-ndjson"


@pytest.fixture
def ollama_fake(backend_fakes: tuple[OpenAIFake, OllamaFake]) -> OllamaFake:
    return backend_fakes[1]


async def ndjson_lines(reply: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in reply.content if line.strip()]


async def direct(fake: OllamaFake, method: str, path: str, **kw: Any) -> bytes:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, fake.origin + path, **kw) as reply,
    ):
        return await reply.read()


async def test_tags_and_version_come_through_byte_for_byte(
    stack: Stack, user: Account, ollama_fake: OllamaFake
) -> None:
    for path in ("/api/tags", "/api/version"):
        for suffix in ("", "/0"):
            async with stack.http.get(
                f"{stack.url}/ollama{path}{suffix}", headers=user.key_auth
            ) as reply:
                assert reply.status == 200
                assert reply.content_type == "application/json"
                body = await reply.read()
            assert body == await direct(ollama_fake, "GET", path)
    assert ollama_fake.last("/api/tags").headers.get("Authorization") is None


async def test_show_answers_and_an_unknown_model_is_ollamas_own_404(
    stack: Stack, user: Account
) -> None:
    status, body = await stack.call(
        "POST", "/ollama/api/show", headers=user.jwt_auth, json={"model": MODEL}
    )
    assert status == 200
    assert body["details"]["format"] == "gguf"
    status, body = await stack.call(
        "POST", "/ollama/api/show", headers=user.jwt_auth, json={"model": "nope:1b"}
    )
    assert status == 404
    assert body == {"error": "model 'nope:1b' not found"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/ollama/api/generate", {"model": MODEL, "prompt": "a b c"}, "response"),
        (
            "/ollama/api/chat",
            {"model": MODEL, "messages": [{"role": "user", "content": "a b c"}]},
            "message",
        ),
    ],
)
async def test_generate_and_chat_stream_ndjson(
    stack: Stack, user: Account, path: str, body: dict[str, Any], field: str
) -> None:
    async with stack.http.post(stack.url + path, headers=user.key_auth, json=body) as reply:
        assert reply.status == 200
        assert reply.content_type == NDJSON
        lines = await ndjson_lines(reply)
    assert len(lines) > 3
    assert lines[-1]["done"] is True
    pieces = [line[field] if field == "response" else line[field]["content"] for line in lines]
    assert "".join(pieces) == "Echo: a b c"


async def test_embed_and_embeddings_answer(stack: Stack, user: Account) -> None:
    status, body = await stack.call(
        "POST",
        "/ollama/api/embed",
        headers=user.key_auth,
        json={"model": MODEL, "input": ["x", "y"]},
    )
    assert status == 200
    assert len(body["embeddings"]) == 2
    status, body = await stack.call(
        "POST",
        "/ollama/api/embeddings",
        headers=user.key_auth,
        json={"model": MODEL, "prompt": "x"},
    )
    assert status == 200
    assert len(body["embedding"]) == 8


async def test_the_official_ollama_client_works_against_the_pass_through(
    stack: Stack, user: Account
) -> None:
    async with ollama.AsyncClient(host=f"{stack.url}/ollama", headers=user.key_auth) as client:
        listed = await client.list()
        assert MODEL in [m.model for m in listed.models]
        pieces = [
            part.message.content
            async for part in await client.chat(
                model=MODEL, messages=[{"role": "user", "content": "hi there"}], stream=True
            )
        ]
    assert "".join(pieces) == "Echo: hi there"


async def test_ollamas_openai_routes_answer_through_the_pass_through(
    stack: Stack, user: Account, ollama_fake: OllamaFake
) -> None:
    for suffix in ("", "/0"):
        async with stack.http.get(
            f"{stack.url}/ollama/v1/models{suffix}", headers=user.key_auth
        ) as reply:
            assert reply.status == 200
            body = await reply.read()
        assert body == await direct(ollama_fake, "GET", "/v1/models")
    question = {"model": MODEL, "messages": [{"role": "user", "content": "a b c"}]}
    status, answer = await stack.call(
        "POST", "/ollama/v1/chat/completions", headers=user.key_auth, json=question
    )
    assert status == 200, answer
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Echo: a b c"
    async with stack.http.post(
        f"{stack.url}/ollama/v1/chat/completions",
        headers=user.key_auth,
        json={**question, "stream": True},
    ) as reply:
        assert reply.status == 200 and reply.content_type == "text/event-stream"
        events = [line async for line in reply.content if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]\n"
    chunks = [json.loads(event[6:]) for event in events[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Echo: a b c"
    status, embedded = await stack.call(
        "POST",
        "/ollama/v1/embeddings",
        headers=user.key_auth,
        json={"model": MODEL, "input": ["x", "y"], "encoding_format": "base64"},
    )
    assert status == 200, embedded
    assert [item["index"] for item in embedded["data"]] == [0, 1]
    assert isinstance(embedded["data"][0]["embedding"], str)
    status, completed = await stack.call(
        "POST",
        "/ollama/v1/completions",
        headers=user.key_auth,
        json={"model": MODEL, "prompt": "x"},
    )
    assert (status, completed["choices"][0]["text"]) == (200, "Echo: x")


async def test_the_openai_sdk_works_against_ollamas_openai_routes_through_ragway(
    stack: Stack, user: Account
) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{stack.url}/ollama/v1", api_key=user.api_key, max_retries=0
    )
    try:
        assert MODEL in [m.id for m in (await client.models.list()).data]
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Echo: hi there" and chunks[-1].usage is not None
        embedded = await client.embeddings.create(model=MODEL, input=["one", "two"])
        assert embedded.data[1].embedding == pytest.approx(embedding_of("two"), abs=1e-6)
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(
                model="nope:1b", messages=[{"role": "user", "content": "x"}]
            )
        assert "try pulling it first" in str(missing.value.body)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/ollama/api/ps", None),
        ("POST", "/ollama/api/pull", {"model": "x:1b"}),
        ("POST", "/ollama/api/push", {"model": MODEL}),
        ("POST", "/ollama/api/create", {"model": "y", "from": MODEL}),
        ("POST", "/ollama/api/copy", {"source": MODEL, "destination": "z"}),
        ("DELETE", "/ollama/api/delete", {"model": MODEL}),
        ("POST", "/ollama/api/pull/0", {"model": "x:1b"}),
    ],
)
async def test_admin_routes_are_403_for_users_and_never_reach_the_backend(
    stack: Stack, user: Account, ollama_fake: OllamaFake, method: str, path: str, body: Any
) -> None:
    seen = len(ollama_fake.requests)
    status, reply = await stack.call(method, path, headers=user.key_auth, json=body)
    assert status == 403, reply
    assert reply["detail"] == "Only administrators may do this"
    assert len(ollama_fake.requests) == seen


async def test_admins_may_use_admin_routes(stack: Stack, admin: Account) -> None:
    status, body = await stack.call("GET", "/ollama/api/ps", headers=admin.key_auth)
    assert status == 200
    assert body["models"][0]["name"] == MODEL
    status, _ = await stack.call(
        "POST",
        "/ollama/api/copy",
        headers=admin.key_auth,
        json={"source": MODEL, "destination": MODEL},
    )
    assert status == 200


async def test_unknown_paths_and_indexes_are_404_and_anonymous_is_401(
    stack: Stack, user: Account
) -> None:
    status, body = await stack.call("GET", "/ollama/api/secrets", headers=user.key_auth)
    assert status == 404
    assert "api/secrets" in body["detail"]
    status, body = await stack.call("GET", "/ollama/api/tags/7", headers=user.key_auth)
    assert status == 404
    assert body["detail"] == "Ollama backend index 7 is not configured"
    assert (await stack.call("GET", "/ollama/api/tags"))[0] == 401


async def test_a_large_pull_stream_arrives_complete_and_unchanged(
    stack: Stack, admin: Account, ollama_fake: OllamaFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama_fake, "pull_steps", 20_000)
    body = {"model": "big:1b"}
    async with stack.http.post(
        f"{stack.url}/ollama/api/pull", headers=admin.key_auth, json=body
    ) as reply:
        assert reply.status == 200
        assert reply.content_type == NDJSON
        relayed = await reply.read()
    expected = await direct(ollama_fake, "POST", "/api/pull", json=body)
    assert len(relayed) > 2_000_000
    assert relayed == expected
    lines = relayed.splitlines()
    assert len(lines) == 20_004
    assert json.loads(lines[-1]) == {"status": "success"}


async def test_a_pull_stream_is_relayed_while_the_backend_is_still_producing(
    stack: Stack, admin: Account, ollama_fake: OllamaFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama_fake, "pull_steps", 200)
    ollama_fake.chunk_delay = 0.003  # ~0.6 s of streaming
    finished_before = ollama_fake.streams_finished
    async with stack.http.post(
        f"{stack.url}/ollama/api/pull", headers=admin.key_auth, json={"model": "slow:1b"}
    ) as reply:
        first = json.loads(await reply.content.readline())
        assert ollama_fake.streams_finished == finished_before  # the fake is still writing
        rest = await ndjson_lines(reply)
    assert first == {"status": "pulling manifest"}
    assert len(rest) == 203
    completed = [line["completed"] for line in rest if "completed" in line]
    assert completed == sorted(completed)
    assert completed[-1] == rest[0]["total"]


async def test_a_client_leaving_mid_pull_stops_the_backend_stream(
    stack: Stack, admin: Account, ollama_fake: OllamaFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama_fake, "pull_steps", 2000)
    ollama_fake.chunk_delay = 0.005  # 10 s if nobody stopped it
    ollama_fake.client_disconnected.clear()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.url}/ollama/api/pull", headers=admin.key_auth, json={"model": "gone:1b"}
        ) as reply,
    ):
        await reply.content.readline()
        reply.close()
    await asyncio.wait_for(ollama_fake.client_disconnected.wait(), timeout=3)


async def test_a_binary_blob_goes_through_byte_exact(
    stack: Stack, admin: Account, user: Account, ollama_fake: OllamaFake
) -> None:
    data = bytes(range(256)) * 64
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    url = f"{stack.url}/ollama/api/blobs/{digest}"
    async with stack.http.head(url, headers=admin.key_auth) as reply:
        assert reply.status == 404
    async with stack.http.post(
        url, headers={**admin.key_auth, "Content-Type": "application/octet-stream"}, data=data
    ) as reply:
        assert reply.status == 201, await reply.text()
    assert ollama_fake.blobs[digest] == data
    async with stack.http.head(url, headers=admin.key_auth) as reply:
        assert reply.status == 200
    async with stack.http.post(url, headers=user.key_auth, data=data) as reply:
        assert reply.status == 403


async def test_a_pull_stream_that_goes_quiet_ends_with_an_error_line_after_the_idle_bound(
    stack: Stack, admin: Account, ollama_fake: OllamaFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama_fake, "pull_steps", 3)
    ollama_fake.chunk_delay = 3.0  # longer than the proxy's idle bound here (2 s)
    started = asyncio.get_running_loop().time()
    async with stack.http.post(
        f"{stack.url}/ollama/api/pull", headers=admin.key_auth, json={"model": "slow:1b"}
    ) as reply:
        lines = await ndjson_lines(reply)
    elapsed = asyncio.get_running_loop().time() - started
    assert "sent nothing for 2s" in lines[-1]["error"]
    assert elapsed < 2.9  # the idle bound ended it, not the backend's next line

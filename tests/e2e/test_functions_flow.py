"""Function models and tools over HTTP: an admin installs the examples, users chat with
them; bad, slow and crashing code gives clear errors and the API keeps serving."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_chat_flow import chat_body, content_of, read_events
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake, ScriptedReply
from tests.support.stack import Account, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STATS_PIPE = (EXAMPLES / "functions/text_stats_pipe.py").read_text()
UNIT_TOOL = (EXAMPLES / "tools/unit_converter.py").read_text()
STATS_ANSWER = "Words: 7\nCharacters: 29\nSentences: 2\nMost frequent: the (3), cat (1), dog (1)\n"
QUESTION = "The cat saw the dog. The end!"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def install(
    stack: Stack, account: Account, kind: str, source: str, plugin_id: str
) -> tuple[int, Any]:
    return await stack.call(
        "POST",
        f"/api/v1/{kind}s/create",
        headers=account.jwt_auth,
        json={
            "id": plugin_id,
            "name": f"My {plugin_id}",
            "content": source,
            # every user may use it (absent: admins only)
            "access_grants": [
                {"principal_type": "user", "principal_id": "*", "permission": "read"}
            ],
        },
    )


@pytest.fixture
def openai_fake(backend_fakes: tuple[OpenAIFake, OllamaFake]) -> Iterator[OpenAIFake]:
    fake = backend_fakes[0]
    fake.responder = None
    yield fake
    fake.responder = None


async def test_an_admin_installs_the_example_pipe_and_users_chat_with_it(
    stack: Stack, admin: Account, user: Account
) -> None:
    pipe_id = new_id("stats")
    status, record = await install(stack, admin, "function", STATS_PIPE, pipe_id)
    assert status == 200, record
    assert record["id"] == pipe_id and record["type"] == "pipe"

    status, models = await stack.call("GET", "/api/models", headers=user.key_auth)
    assert status == 200
    entry = next(m for m in models["data"] if m["id"] == pipe_id)
    assert entry["owned_by"] == "function" and entry["pipe"] == {"type": "pipe"}
    assert entry["name"] == f"My {pipe_id}"

    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=chat_body(pipe_id, QUESTION)
    )
    assert status == 200, reply
    assert reply["choices"][0]["message"]["content"] == STATS_ANSWER

    async with stack.http.post(
        f"{stack.url}/api/chat/completions",
        headers=user.key_auth,
        json=chat_body(pipe_id, QUESTION, stream=True),
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        events = await read_events(response)
    assert events[-1] == "[DONE]"
    assert content_of(events) == STATS_ANSWER
    assert len([e for e in events if isinstance(e, dict)]) == 5  # 4 lines, then the finish


async def test_functions_are_listed_read_updated_and_deleted_by_admins(
    stack: Stack, admin: Account, user: Account
) -> None:
    pipe_id = new_id("stats")
    assert (await install(stack, admin, "function", STATS_PIPE, pipe_id))[0] == 200
    status, listed = await stack.call("GET", "/api/v1/functions/", headers=user.jwt_auth)
    assert status == 200 and pipe_id in {f["id"] for f in listed}
    status, _ = await stack.call("GET", f"/api/v1/functions/id/{pipe_id}", headers=user.jwt_auth)
    assert status == 403
    status, record = await stack.call(
        "GET", f"/api/v1/functions/id/{pipe_id}", headers=admin.jwt_auth
    )
    assert status == 200 and record["content"] == STATS_PIPE
    status, updated = await stack.call(
        "POST",
        f"/api/v1/functions/id/{pipe_id}/update",
        headers=admin.jwt_auth,
        json={"id": pipe_id, "name": "Renamed", "content": STATS_PIPE},
    )
    assert status == 200 and updated["name"] == "Renamed"
    assert updated["created_at"] == record["created_at"]
    status, deleted = await stack.call(
        "DELETE", f"/api/v1/functions/id/{pipe_id}/delete", headers=admin.jwt_auth
    )
    assert status == 200 and deleted is True
    status, models = await stack.call("GET", "/api/models", headers=user.key_auth)
    assert pipe_id not in {m["id"] for m in models["data"]}
    status, _ = await stack.call("GET", f"/api/v1/functions/id/{pipe_id}", headers=admin.jwt_auth)
    assert status == 404


async def test_users_cannot_install_and_invalid_source_is_a_400(
    stack: Stack, admin: Account, user: Account
) -> None:
    status, body = await install(stack, user, "function", STATS_PIPE, new_id("mine"))
    assert status == 403, body
    status, body = await install(stack, user, "tool", UNIT_TOOL, new_id("mine"))
    assert status == 403, body
    status, body = await install(stack, admin, "function", "class Pipe:\n  pass\n", new_id("bad"))
    assert status == 400
    assert (
        body["detail"] == "Invalid function source: class `Pipe` has no method `pipe(self, body)`"
    )
    status, body = await install(stack, admin, "function", STATS_PIPE, "not-an-identifier")
    assert status == 400 and "alphanumeric" in body["detail"]
    taken = new_id("twice")
    assert (await install(stack, admin, "function", STATS_PIPE, taken))[0] == 200
    assert (await install(stack, admin, "function", STATS_PIPE, taken))[0] == 409


async def test_a_slow_function_is_a_504_within_the_limit_and_the_api_keeps_serving(
    stack: Stack, admin: Account, user: Account
) -> None:
    slow = new_id("slow")
    source = "import time\nclass Pipe:\n    def pipe(self, body):\n        time.sleep(30)\n"
    assert (await install(stack, admin, "function", source, slow))[0] == 200
    started = time.monotonic()
    status, body = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=chat_body(slow)
    )
    assert status == 504
    assert body["detail"] == f"Function '{slow}' did not finish within 2s"
    assert time.monotonic() - started < 4
    status, body = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=chat_body("gpt-fake", "hi")
    )
    assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: hi"


async def test_a_crashing_function_is_a_clear_502(
    stack: Stack, admin: Account, user: Account
) -> None:
    broken = new_id("broken")
    source = "class Pipe:\n    def pipe(self, body):\n        raise KeyError('model')\n"
    assert (await install(stack, admin, "function", source, broken))[0] == 200
    status, body = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=chat_body(broken, stream=True)
    )
    assert status == 502
    assert body == {"detail": f"Function '{broken}' failed: KeyError: 'model'"}


def converter_responder(body: dict[str, Any]) -> ScriptedReply:
    results = [m["content"] for m in body["messages"] if m.get("role") == "tool"]
    if results:
        return ScriptedReply(pieces=["That is ", results[-1], "."])
    arguments = {"value": 100, "from_unit": "C", "to_unit": "F"}
    call = {
        "id": "call_t1",
        "type": "function",
        "function": {"name": "convert_temperature", "arguments": json.dumps(arguments)},
    }
    return ScriptedReply(pieces=[], tool_calls=[call], finish_reason="tool_calls")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_completion_with_tool_ids_runs_the_tool_and_answers_with_its_result(
    stack: Stack, admin: Account, user: Account, openai_fake: OpenAIFake, stream: bool
) -> None:
    tool_id = new_id("units")
    status, record = await install(stack, admin, "tool", UNIT_TOOL, tool_id)
    assert status == 200, record
    status, tools = await stack.call("GET", "/api/v1/tools/", headers=user.jwt_auth)
    listed = next(t for t in tools if t["id"] == tool_id)
    assert "convert_temperature" in {spec["name"] for spec in listed["specs"]}

    openai_fake.responder = converter_responder
    before = len(openai_fake.requests)
    body = chat_body("gpt-fake", "100 C in F?", tool_ids=[tool_id], stream=stream)
    async with stack.http.post(
        f"{stack.url}/api/chat/completions", headers=user.key_auth, json=body
    ) as response:
        assert response.status == 200
        if stream:
            answer = content_of(await read_events(response))
        else:
            answer = (await response.json())["choices"][0]["message"]["content"]
    assert answer == "That is 100 C = 212 F."
    sent = [r.json for r in openai_fake.requests[before:] if r.path == "/v1/chat/completions"]
    assert len(sent) == 2
    assert sent[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_t1",
        "content": "100 C = 212 F",
    }

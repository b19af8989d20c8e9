"""Function models (pipes) and tools in the inference-proxy: installed over NATS, run in
sandbox worker processes with a time and memory limit, never taking the proxy down."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from common.bus import Bus
from common.codec import encode
from common.errors import RagwayError
from contracts import subjects
from contracts.access import PUBLIC_READ, Grant
from contracts.auth import Principal
from contracts.functions import (
    PluginForm,
    PluginListRequest,
    PluginRef,
    PluginSave,
    ValvesRef,
    ValvesUpdate,
)
from contracts.models import ModelsRequest
from tests.fakes.openai_fake import OpenAIFake, ScriptedReply
from tests.inference_proxy.conftest import chat_body, complete, open_stream, running_proxy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADMIN = Principal(id="admin1", email="a@example.com", name="A", role="admin")
USER = Principal(id="user1", email="u@example.com", name="U", role="user")
TIMEOUT = 2.0

REVERSE_PIPE = """
class Pipe:
    async def pipe(self, body, __user__=None):
        words = body["messages"][-1]["content"].split()
        for word in words:
            yield word[::-1] + " "
"""
SLEEPY_PIPE = """
import time
class Pipe:
    def pipe(self, body):
        time.sleep(60)
        return "too late"
"""
RAISING_PIPE = """
class Pipe:
    def pipe(self, body):
        raise ValueError("boom")
"""
EXITING_PIPE = """
import os
class Pipe:
    def pipe(self, body):
        os._exit(7)
"""
HUNGRY_PIPE = """
class Pipe:
    def pipe(self, body):
        hoard = bytearray(4 * 1024 ** 3)
        return str(len(hoard))
"""
ENV_PIPE = """
import json, os
class Pipe:
    def pipe(self, body, __user__):
        return json.dumps({"env": sorted(os.environ), "user": __user__["id"]})
"""


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[OpenAIFake]:
    backend = OpenAIFake()
    await backend.start()
    yield backend
    await backend.stop()


@pytest.fixture(scope="module")
async def proxy(nats_url: str, fake: OpenAIFake) -> AsyncIterator[None]:
    async with running_proxy(
        nats_url,
        openai_api_base_urls=fake.base_url,
        openai_api_keys=fake.api_key or "",
        bucket_prefix=f"fn{uuid.uuid4().hex[:10]}",
        function_timeout_seconds=TIMEOUT,
        function_memory_mb=256,
    ):
        yield


@pytest.fixture(autouse=True)
def _reset(fake: OpenAIFake) -> None:
    fake.responder = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def install(
    bus: Bus,
    kind: str,
    source: str,
    plugin_id: str,
    principal: Principal = ADMIN,
    grants: list[Grant] | None = None,
) -> dict[str, Any]:
    """Installed for every user to use (`grants` None), or with exactly `grants`."""
    form = PluginForm(
        id=plugin_id,
        name=f"{kind} {plugin_id}",
        content=source,
        access_grants=[PUBLIC_READ] if grants is None else grants,
    )
    message = PluginSave(principal=principal, kind=kind, form=form)  # type: ignore[arg-type]
    raw = await bus.call_raw(subjects.PLUGINS_SAVE, encode(message), timeout=10)
    reply: dict[str, Any] = msgspec.json.decode(raw)
    return reply


async def model_ids(bus: Bus) -> dict[str, dict[str, Any]]:
    reply = await bus.call(subjects.MODELS_LIST, ModelsRequest(), timeout=5)
    return {m.id: msgspec.to_builtins(m) for m in reply.data}


async def test_an_installed_pipe_is_listed_as_a_function_model(proxy: None, bus: Bus) -> None:
    pipe_id = new_id("rev")
    record = await install(bus, "function", REVERSE_PIPE, pipe_id)
    assert record["id"] == pipe_id and record["type"] == "pipe" and record["user_id"] == "admin1"
    models = await model_ids(bus)
    assert models[pipe_id]["owned_by"] == "function"
    assert models[pipe_id]["pipe"] == {"type": "pipe"}
    # `object` is the Struct default "model" (omitted on the wire by Model's omit_defaults)
    assert "gpt-fake" in models  # the backends' models are still there
    listed = await bus.call_raw(
        subjects.PLUGINS_LIST, encode(PluginListRequest(principal=USER, kind="function")), timeout=5
    )
    entry = next(e for e in msgspec.json.decode(listed) if e["id"] == pipe_id)
    assert "content" not in entry  # lists show no source


async def test_a_pipe_answers_a_completion_and_a_stream(proxy: None, nc: Client, bus: Bus) -> None:
    pipe_id = new_id("rev")
    await install(bus, "function", REVERSE_PIPE, pipe_id)
    reply = await complete(bus, chat_body(pipe_id, "abc def"))
    assert reply["object"] == "chat.completion" and reply["model"] == pipe_id
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "cba fed "}
    async with open_stream(nc, bus, chat_body(pipe_id, "abc def ghi", stream=True)) as (
        accepted,
        stream,
        collect,
    ):
        assert accepted.model == pipe_id
        await collect()
    chunks = stream.chunks
    assert stream.events[-1] == b"[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:3]] == ["cba ", "fed ", "ihg "]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len({c["id"] for c in chunks}) == 1
    assert stream.end is not None and stream.end.content == "cba fed ihg " and not stream.end.error


async def test_non_admins_cannot_install_or_remove_functions(proxy: None, bus: Bus) -> None:
    with pytest.raises(RagwayError) as raised:
        await install(bus, "function", REVERSE_PIPE, new_id("nope"), principal=USER)
    assert raised.value.code == "forbidden"
    with pytest.raises(RagwayError) as raised:
        await bus.call_raw(
            subjects.PLUGINS_DELETE,
            encode(PluginRef(principal=USER, kind="function", id="anything")),
            timeout=5,
        )
    assert raised.value.code == "forbidden"


@pytest.mark.parametrize(
    ("kind", "source", "reason"),
    [
        ("function", "class Pipe:\n  def pipe(self, body)\n", "SyntaxError"),
        ("function", "class Pype:\n  pass\n", "no class `Pipe`"),
        ("function", "import not_a_module_anywhere\n", "ModuleNotFoundError"),
        ("tool", "class Tools:\n  def add(self, a, b):\n    'Add.'\n", "needs a type hint"),
        ("tool", "class Tools:\n  def add(self, a: int) -> int:\n    return a\n", "docstring"),
    ],
)
async def test_invalid_sources_are_refused_with_the_reason(
    proxy: None, bus: Bus, kind: str, source: str, reason: str
) -> None:
    with pytest.raises(RagwayError) as raised:
        await install(bus, kind, source, new_id("bad"))
    assert raised.value.code == "invalid"
    assert reason in raised.value.detail


async def test_a_pipe_past_its_time_limit_is_killed_and_the_proxy_serves_on(
    proxy: None, nc: Client, bus: Bus
) -> None:
    slow, fine = new_id("slow"), new_id("fine")
    await install(bus, "function", SLEEPY_PIPE, slow)
    await install(bus, "function", REVERSE_PIPE, fine)
    started = time.monotonic()
    with pytest.raises(RagwayError) as raised:
        await complete(bus, chat_body(slow))
    assert raised.value.code == "timeout"
    assert f"Function '{slow}' did not finish within 2s" in raised.value.detail
    assert time.monotonic() - started < TIMEOUT + 1.5
    with pytest.raises(RagwayError) as raised:  # a stream fails before it starts: a clean error
        async with open_stream(nc, bus, chat_body(slow, stream=True)):
            pass
    assert raised.value.code == "timeout"
    reply = await complete(bus, chat_body(fine, "still here"))
    assert reply["choices"][0]["message"]["content"] == "llits ereh "


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        (RAISING_PIPE, "failed: ValueError: boom"),
        (EXITING_PIPE, "failed: its process exited with code 7"),
        (HUNGRY_PIPE, "failed: MemoryError"),
    ],
)
async def test_a_failing_pipe_is_a_clear_error_and_the_proxy_stays_up(
    proxy: None, bus: Bus, source: str, detail: str
) -> None:
    pipe_id = new_id("broken")
    await install(bus, "function", source, pipe_id)
    with pytest.raises(RagwayError) as raised:
        await complete(bus, chat_body(pipe_id))
    assert raised.value.code == "bad_gateway"
    assert raised.value.detail == f"Function '{pipe_id}' {detail}"
    reply = await complete(bus, chat_body("gpt-fake", "alive"))
    assert reply["choices"][0]["message"]["content"] == "Echo: alive"


async def test_function_code_sees_no_secrets_of_the_proxy(
    proxy: None, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGWAY_TEST_SECRET", "do-not-leak")
    pipe_id = new_id("env")
    await install(bus, "function", ENV_PIPE, pipe_id)
    reply = await complete(bus, chat_body(pipe_id))
    seen = json.loads(reply["choices"][0]["message"]["content"])
    assert seen["user"] == "u1"
    assert not [name for name in seen["env"] if "SECRET" in name or "OPENAI" in name]


def converter_responder(body: dict[str, Any]) -> ScriptedReply:
    """Asks for a tool call first; answers with the tool's result once it is there."""
    results = [m["content"] for m in body["messages"] if m.get("role") == "tool"]
    if results:
        return ScriptedReply(pieces=["The answer: ", results[-1]])
    call = {
        "id": "call_1",
        "type": "function",
        "function": {
            "name": "convert_length",
            "arguments": json.dumps({"value": 5, "from_unit": "km", "to_unit": "mi"}),
        },
    }
    return ScriptedReply(pieces=[], tool_calls=[call], finish_reason="tool_calls")


async def test_a_tool_is_installed_with_openai_specs_from_its_hints_and_docstrings(
    proxy: None, bus: Bus
) -> None:
    tool_id = new_id("units")
    record = await install(bus, "tool", (EXAMPLES / "tools/unit_converter.py").read_text(), tool_id)
    specs = {spec["name"]: spec for spec in record["specs"]}
    assert set(specs) == {"convert_length", "convert_mass", "convert_temperature"}
    length = specs["convert_length"]
    assert length["description"] == "Convert a length between metric and imperial units."
    params = length["parameters"]
    assert params["required"] == ["value", "from_unit", "to_unit"]
    assert params["properties"]["value"] == {
        "type": "number",
        "description": "The length to convert.",
    }
    assert "km" in params["properties"]["from_unit"]["enum"]


async def test_the_tool_loop_runs_the_call_and_feeds_the_result_back(
    proxy: None, bus: Bus, fake: OpenAIFake
) -> None:
    tool_id = new_id("units")
    await install(bus, "tool", (EXAMPLES / "tools/unit_converter.py").read_text(), tool_id)
    fake.responder = converter_responder
    before = len(fake.requests)
    reply = await complete(bus, chat_body("gpt-fake", "5 km in miles?", tool_ids=[tool_id]))
    assert reply["choices"][0]["message"]["content"] == "The answer: 5 km = 3.10686 mi"
    sent = [r.json for r in fake.requests[before:] if r.path == "/v1/chat/completions"]
    assert len(sent) == 2
    assert "tool_ids" not in sent[0]
    assert {t["function"]["name"] for t in sent[0]["tools"]} >= {"convert_length"}
    assistant, tool = sent[1]["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "5 km = 3.10686 mi"}


VALVED_TOOL = """
from pydantic import BaseModel

class Tools:
    class Valves(BaseModel):
        PREFIX: str = "default"

    def __init__(self):
        self.valves = self.Valves()

    def convert_length(self, value: float, from_unit: str, to_unit: str) -> str:
        \"\"\"Says which prefix its valves hold.\"\"\"
        return f"{self.valves.PREFIX}: {value} {from_unit} in {to_unit}"
"""


async def test_the_tool_loop_hands_the_admins_valves_to_the_tool(
    proxy: None, bus: Bus, fake: OpenAIFake
) -> None:
    tool_id = new_id("valved")
    await install(bus, "tool", VALVED_TOOL, tool_id)
    update = ValvesUpdate(principal=ADMIN, kind="tool", id=tool_id, values={"PREFIX": "set"})
    assert await bus.call(subjects.PLUGINS_VALVES_UPDATE, update, timeout=10) == {"PREFIX": "set"}
    with pytest.raises(RagwayError) as refused:
        await bus.call(
            subjects.PLUGINS_VALVES_UPDATE,
            msgspec.structs.replace(update, principal=USER),
            timeout=10,
        )
    assert refused.value.code == "forbidden"
    fake.responder = converter_responder
    reply = await complete(bus, chat_body("gpt-fake", "5 km in miles?", tool_ids=[tool_id]))
    assert reply["choices"][0]["message"]["content"] == "The answer: set: 5 km in mi"
    # removing the tool removes its valves: installed again, it starts from its defaults
    await bus.call(
        subjects.PLUGINS_DELETE, PluginRef(principal=ADMIN, kind="tool", id=tool_id), timeout=5
    )
    await install(bus, "tool", VALVED_TOOL, tool_id)
    ref = ValvesRef(principal=ADMIN, kind="tool", id=tool_id)
    assert await bus.call(subjects.PLUGINS_VALVES_GET, ref, timeout=5) == {}


async def test_the_tool_loop_streams_the_final_answer(
    proxy: None, nc: Client, bus: Bus, fake: OpenAIFake
) -> None:
    tool_id = new_id("units")
    await install(bus, "tool", (EXAMPLES / "tools/unit_converter.py").read_text(), tool_id)
    fake.responder = converter_responder
    body = chat_body("gpt-fake", "5 km in miles?", tool_ids=[tool_id], stream=True)
    async with open_stream(nc, bus, body) as (accepted, stream, collect):
        assert accepted.model == "gpt-fake"
        await collect()
    chunks = stream.chunks
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "5 km = 3.10686 mi" in pieces  # streamed piece by piece
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"])
    assert stream.events[-1] == b"[DONE]"
    assert stream.end is not None and stream.end.content == "The answer: 5 km = 3.10686 mi"


async def test_plain_openai_tools_pass_through_to_the_caller(
    proxy: None, bus: Bus, fake: OpenAIFake
) -> None:
    fake.responder = converter_responder
    caller_tool = {
        "type": "function",
        "function": {"name": "convert_length", "parameters": {"type": "object"}},
    }
    reply = await complete(bus, chat_body("gpt-fake", "5 km?", tools=[caller_tool]))
    message = reply["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "convert_length"
    assert reply["choices"][0]["finish_reason"] == "tool_calls"


async def test_an_unknown_tool_id_is_not_found(proxy: None, bus: Bus) -> None:
    with pytest.raises(RagwayError) as raised:
        await complete(bus, chat_body("gpt-fake", tool_ids=["no_such_tool"]))
    assert raised.value.code == "not_found"


async def test_a_tool_that_raises_tells_the_model_instead_of_failing_the_reply(
    proxy: None, bus: Bus, fake: OpenAIFake
) -> None:
    tool_id = new_id("broken")
    source = (
        "class Tools:\n"
        "    def convert_length(self, value: float, from_unit: str, to_unit: str) -> str:\n"
        "        'Convert.'\n"
        "        raise RuntimeError('no units today')\n"
    )
    await install(bus, "tool", source, tool_id)
    fake.responder = converter_responder
    reply = await complete(bus, chat_body("gpt-fake", "5 km?", tool_ids=[tool_id]))
    content = reply["choices"][0]["message"]["content"]
    assert content == (
        f"The answer: Error: Tool '{tool_id}.convert_length' failed: RuntimeError: no units today"
    )


async def test_the_example_pipe_streams_its_statistics(proxy: None, nc: Client, bus: Bus) -> None:
    pipe_id = new_id("stats")
    await install(bus, "function", (EXAMPLES / "functions/text_stats_pipe.py").read_text(), pipe_id)
    body = chat_body(pipe_id, "The cat saw the dog. The end!", stream=True)
    async with open_stream(nc, bus, body) as (_, stream, collect):
        await collect()
    assert stream.end is not None
    assert stream.end.content == (
        "Words: 7\nCharacters: 29\nSentences: 2\nMost frequent: the (3), cat (1), dog (1)\n"
    )
    assert len([c for c in stream.chunks if c["choices"][0]["delta"].get("content")]) == 4


async def _listed(bus: Bus, kind: str, principal: Principal) -> set[str]:
    raw = await bus.call_raw(
        subjects.PLUGINS_LIST,
        encode(PluginListRequest(principal=principal, kind=kind)),  # type: ignore[arg-type]
        timeout=5,
    )
    return {entry["id"] for entry in msgspec.json.decode(raw)}


async def _models_for(bus: Bus, principal: Principal) -> set[str]:
    reply = await bus.call(subjects.MODELS_LIST, ModelsRequest(principal=principal), timeout=5)
    return {m.id for m in reply.data}


async def test_plugins_installed_without_grants_are_for_admins_and_grants_open_them(
    proxy: None, bus: Bus
) -> None:
    """PRINCIPAL (the conftest's user, who makes the completions) gets nothing ungranted."""
    from tests.inference_proxy.conftest import PRINCIPAL

    pipe_id, tool_id = new_id("rev"), new_id("units")
    pipe = await install(bus, "function", REVERSE_PIPE, pipe_id, grants=[])
    tool_source = (EXAMPLES / "tools/unit_converter.py").read_text()
    tool = await install(bus, "tool", tool_source, tool_id, grants=[])
    assert pipe["access_grants"] == [] and tool["access_grants"] == []
    assert pipe_id in await _models_for(bus, ADMIN)
    assert pipe_id not in await _models_for(bus, PRINCIPAL)
    assert pipe_id not in await _listed(bus, "function", PRINCIPAL)
    assert tool_id not in await _listed(bus, "tool", PRINCIPAL)
    for body in (chat_body(pipe_id), chat_body("gpt-fake", tool_ids=[tool_id])):
        with pytest.raises(RagwayError) as raised:
            await complete(bus, body)
        assert raised.value.code == "not_found"
    with pytest.raises(RagwayError) as raised:
        await bus.call_raw(
            subjects.PLUGINS_GET,
            encode(PluginRef(principal=PRINCIPAL, kind="tool", id=tool_id)),
            timeout=5,
        )
    assert raised.value.code == "not_found"

    team = msgspec.structs.replace(PRINCIPAL, group_ids=("team",))
    grant = msgspec.convert(
        {"principal_type": "group", "principal_id": "team", "permission": "read"}, Grant
    )
    update = PluginSave(
        principal=ADMIN,
        kind="tool",
        id=tool_id,
        form=PluginForm(id=tool_id, name="units", content=tool_source, access_grants=[grant]),
    )
    saved = msgspec.json.decode(
        await bus.call_raw(subjects.PLUGINS_SAVE, encode(update), timeout=10)
    )
    assert saved["access_grants"] == [msgspec.to_builtins(grant)]
    assert tool_id in await _listed(bus, "tool", team)
    assert tool_id not in await _listed(bus, "tool", PRINCIPAL)
    seen = msgspec.json.decode(
        await bus.call_raw(
            subjects.PLUGINS_GET,
            encode(PluginRef(principal=team, kind="tool", id=tool_id)),
            timeout=5,
        )
    )
    assert "content" not in seen and seen["specs"]  # the source is for admins only
    # an update without grants leaves them as they are
    keep = PluginSave(
        principal=ADMIN,
        kind="tool",
        id=tool_id,
        form=PluginForm(id=tool_id, name="units 2", content=tool_source),
    )
    kept = msgspec.json.decode(await bus.call_raw(subjects.PLUGINS_SAVE, encode(keep), timeout=10))
    assert kept["access_grants"] == [msgspec.to_builtins(grant)]

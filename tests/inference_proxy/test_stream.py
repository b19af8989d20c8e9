"""CHAT_STREAM: SSE relayed to the caller's inbox with one id, the role first, a last
chunk carrying finish_reason and usage, [DONE], and always an end message."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from aiohttp import web
from nats.aio.client import Client

from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.subjects import CHAT_CANCEL
from tests.fakes.base import FakeBackend
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake, ScriptedReply, sse_events
from tests.inference_proxy.conftest import Stream, chat_body, job, open_stream, running_proxy
from tests.inference_proxy.test_complete import OLLAMA_USAGE_FIELDS


def assert_well_formed(stream: Stream) -> list[dict[str, Any]]:
    """The stream contract every client relies on."""
    assert stream.events[-1] == b"[DONE]"
    chunks = stream.chunks
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert stream.end is not None and stream.end.error is None
    assert stream.end.content == text and stream.end.finish_reason == "stop"
    assert stream.end.usage == last["usage"]
    return chunks


def backend_of(
    kind: str, openai_fake: OpenAIFake, ollama_fake: OllamaFake
) -> tuple[dict[str, Any], str]:
    """The proxy settings for one fake backend, and a model it serves."""
    if kind == "openai":
        return {
            "openai_api_base_urls": openai_fake.base_url,
            "openai_api_keys": "sk-fake-key",
        }, "gpt-fake"
    return {"ollama_base_urls": ollama_fake.origin}, "qwen2.5:0.5b"


def comparable(stream: Stream) -> list[dict[str, Any]]:
    """The stream's chunks without what differs from stream to stream (id, created)."""
    chunks = assert_well_formed(stream)
    return [{k: v for k, v in c.items() if k not in ("id", "created")} for c in chunks]


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_first_bytes_in_the_reply_make_the_same_stream_as_messages_only(
    nats_url: str,
    nc: Client,
    bus: Bus,
    openai_fake: OpenAIFake,
    ollama_fake: OllamaFake,
    kind: str,
) -> None:
    """The first chunk may ride in StreamAccepted.first, only when the caller asked."""
    backends, model = backend_of(kind, openai_fake, ollama_fake)
    streams: dict[bool, Stream] = {}
    firsts: dict[bool, bytes] = {}
    async with running_proxy(nats_url, **backends):
        for inline in (False, True, True, True):
            async with open_stream(nc, bus, chat_body(model, "same"), first_in_reply=inline) as (
                accepted,
                stream,
                collect,
            ):
                await collect()
            streams[inline] = stream
            firsts[inline] = firsts.get(inline, b"") or accepted.first
    assert firsts[False] == b""  # never sent to a caller that did not ask
    assert firsts[True].startswith(b"data: {")  # the fake sends its head and first chunk at once

    assert comparable(streams[True]) == comparable(streams[False])
    assert streams[True].events[-1] == b"[DONE]"
    assert streams[True].end == streams[False].end


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_closing_bytes_in_the_end_message_make_the_same_stream_as_messages_only(
    nats_url: str,
    nc: Client,
    bus: Bus,
    openai_fake: OpenAIFake,
    ollama_fake: OllamaFake,
    kind: str,
) -> None:
    """The closing bytes may ride in StreamEnd.tail, only when the caller asked."""
    backends, model = backend_of(kind, openai_fake, ollama_fake)
    streams: dict[bool, Stream] = {}
    async with running_proxy(nats_url, **backends):
        for in_end in (False, True):
            async with open_stream(
                nc, bus, chat_body(model, "same"), first_in_reply=True, tail_in_end=in_end
            ) as (_, stream, collect):
                await collect()
            streams[in_end] = stream

    assert comparable(streams[True]) == comparable(streams[False])
    asked, not_asked = streams[True].end, streams[False].end
    assert asked is not None and not_asked is not None
    assert not_asked.tail == b""  # never sent to a caller that did not ask
    assert asked.tail.endswith(b"data: [DONE]\n\n")
    assert b"[DONE]" not in b"".join(streams[True].messages[:-1])  # no message carried it
    assert msgspec.structs.replace(asked, tail=b"") == not_asked


@dataclass
class LateFinishBackend(FakeBackend):
    """An OpenAI-style backend that sends the role chunk with its headers, then, 50 ms
    later, its last content chunk, the finish and usage chunks and `[DONE]` in one write."""

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/models", self.models), web.post("/v1/chat/completions", self.chat)]

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "late-model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        role, *rest = sse_events(await request.json(), ScriptedReply(pieces=["last words"]))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(role)
        await asyncio.sleep(0.05)
        await response.write(b"".join(rest))
        await response.write_eof()
        return response


async def test_what_came_with_the_backends_done_rides_in_the_end_message_when_asked(
    nats_url: str, nc: Client, bus: Bus
) -> None:
    """The chunks read together with the backend's `[DONE]` join the closing bytes in
    StreamEnd.tail (one message fewer); the stream is the same as sent message by message."""
    streams: dict[bool, Stream] = {}
    firsts: dict[bool, bytes] = {}
    backend = LateFinishBackend()
    base_url = await backend.start() + "/v1"
    try:
        async with running_proxy(nats_url, openai_api_base_urls=base_url, openai_api_keys="none"):
            for in_end in (False, True):
                async with open_stream(
                    nc, bus, chat_body("late-model"), first_in_reply=True, tail_in_end=in_end
                ) as (accepted, stream, collect):
                    await collect()
                streams[in_end], firsts[in_end] = stream, accepted.first
    finally:
        await backend.stop()

    assert comparable(streams[True]) == comparable(streams[False])
    assert streams[True].end is not None and streams[True].end.content == "last words"
    # messages: the reply's first bytes, then each stream message, then the end's tail
    assert firsts[True] and streams[True].messages[0] == firsts[True]
    assert len(streams[True].messages) == 2  # nothing travelled as a message of its own
    assert b"last words" in streams[True].messages[-1]  # it came in StreamEnd.tail
    assert len(streams[False].messages) == 3  # not asked: the chunk, then the closing bytes
    assert b"last words" in streams[False].messages[1]


async def test_an_openai_stream_has_one_id_role_first_and_usage_on_the_finish_chunk(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with (
        running_proxy(
            nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
        ),
        open_stream(nc, bus, chat_body("gpt-fake", "stream me", chat_id="c")) as (
            accepted,
            stream,
            collect,
        ),
    ):
        assert accepted.model == "gpt-fake"
        await collect()
    chunks = assert_well_formed(stream)
    assert stream.end is not None and stream.end.content == "Echo: stream me"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert not any(c["choices"] == [] for c in chunks)  # usage chunk merged into the last
    sent = openai_fake.last("/v1/chat/completions").json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert "chat_id" not in sent


async def test_the_backend_gets_the_callers_fields_as_sent_with_the_stream_fields_set(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    history = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f'line {n} \u00e9"\\ \U0001f600'}
        for n in range(40)
    ]
    body = {
        "model": "gpt-fake",
        "messages": history,
        "stream": False,  # overridden: this is a stream
        "stream_options": {"other": 1},
        "temperature": 0.25,
        "logit_bias": {"50256": -100},
        "files": [{"type": "file", "id": "f1"}],
        "tool_ids": [],
        "chat_id": "c",
    }
    async with (
        running_proxy(
            nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
        ),
        open_stream(nc, bus, body) as (_, stream, collect),
    ):
        await collect()
    assert_well_formed(stream)
    sent = openai_fake.last("/v1/chat/completions").json
    expected = {k: v for k, v in body.items() if k not in ("files", "tool_ids", "chat_id")}
    expected["stream"] = True
    expected["stream_options"] = {"other": 1, "include_usage": True}
    assert sent == expected


async def test_an_ollama_stream_is_translated_into_openai_chunks_with_timings(
    nats_url: str, nc: Client, bus: Bus, ollama_fake: OllamaFake
) -> None:
    async with (
        running_proxy(nats_url, ollama_base_urls=ollama_fake.origin),
        open_stream(nc, bus, chat_body("qwen2.5:0.5b", "a b c d")) as (_, stream, collect),
    ):
        await collect()
    chunks = assert_well_formed(stream)
    assert stream.end is not None and stream.end.content == "Echo: a b c d"
    assert set(chunks[-1]["usage"]) >= OLLAMA_USAGE_FIELDS
    assert ollama_fake.last("/api/chat").json["stream"] is True


async def test_a_stream_to_an_unknown_model_is_refused_before_it_starts(
    nats_url: str, nc: Client, bus: Bus, ollama_fake: OllamaFake
) -> None:
    async with running_proxy(nats_url, ollama_base_urls=ollama_fake.origin):
        with pytest.raises(RagwayError) as missing:
            async with open_stream(nc, bus, chat_body("nope")):
                pass
    assert missing.value.code == "not_found"


async def test_a_stream_to_a_backend_that_redirects_is_refused_naming_the_redirect(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with running_proxy(
        nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
    ):
        openai_fake.error_status = 308
        with pytest.raises(RagwayError) as redirected:
            async with open_stream(nc, bus, chat_body("gpt-fake")):
                pass
    assert redirected.value.code == "bad_gateway"
    assert "redirect (HTTP 308)" in redirected.value.detail


async def test_a_backend_dropping_mid_stream_yields_an_error_event_done_and_an_end(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    openai_fake.tokens_per_reply, openai_fake.fail_after_chunks = 50, 5
    async with (
        running_proxy(
            nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
        ),
        open_stream(nc, bus, chat_body("gpt-fake")) as (_, stream, collect),
    ):
        await collect()
    events = stream.events
    assert events[-1] == b"[DONE]"
    error = msgspec.json.decode(events[-2])
    assert "broke" in error["error"]["message"]
    assert stream.end is not None and stream.end.error == error["error"]["message"]
    assert stream.end.content == "t0 t1 t2 t3 "  # what arrived before the drop


async def test_a_stream_that_goes_quiet_ends_with_an_error_after_the_idle_bound(
    nats_url: str, nc: Client, bus: Bus, ollama_fake: OllamaFake
) -> None:
    ollama_fake.chunk_delay = 1.0
    async with (
        running_proxy(
            nats_url, ollama_base_urls=ollama_fake.origin, backend_idle_timeout_seconds=0.3
        ),
        open_stream(nc, bus, chat_body("llama3.2:latest")) as (_, stream, collect),
    ):
        started = time.monotonic()
        await collect()
        assert time.monotonic() - started < 1.5
    assert stream.events[-1] == b"[DONE]"
    assert stream.end is not None and stream.end.error == "The model backend sent nothing for 0.3s"
    await asyncio.wait_for(ollama_fake.client_disconnected.wait(), 3)


async def test_a_stream_that_never_starts_is_a_timeout_within_the_bound(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    openai_fake.hang = True
    async with running_proxy(
        nats_url,
        openai_api_base_urls=openai_fake.base_url,
        openai_api_keys="sk-fake-key",
        backend_timeout_seconds=0.4,
    ):
        started = time.monotonic()
        with pytest.raises(RagwayError) as slow:
            async with open_stream(nc, bus, chat_body("gpt-fake")):
                pass
        assert time.monotonic() - started < 1.5
    assert slow.value.code == "timeout"


async def test_cancelling_a_stream_closes_the_backend_response(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    openai_fake.tokens_per_reply, openai_fake.token_delay = 1000, 0.01
    async with (
        running_proxy(
            nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
        ),
        open_stream(nc, bus, chat_body("gpt-fake")) as (_, stream, collect),
    ):
        await asyncio.sleep(0.1)
        await nc.publish(CHAT_CANCEL.subject_for(stream.stream_id), b"")
        await collect()
        await asyncio.wait_for(openai_fake.client_disconnected.wait(), 2)
    assert stream.end is not None and stream.end.error == "The stream was cancelled"
    assert 0 < len(stream.chunks) < 500
    assert openai_fake.streams_finished == 0


async def test_cancelling_a_stream_while_the_backend_opens_answers_at_once_and_keeps_serving(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    openai_fake.hang = True
    async with running_proxy(
        nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
    ):
        body = chat_body("gpt-fake")

        async def cancel_soon() -> None:
            await asyncio.sleep(0.3)
            await nc.publish(CHAT_CANCEL.subject_for(stream_id), b"")

        stream_id = uuid.uuid4().hex
        canceller = asyncio.create_task(cancel_soon())
        started = time.monotonic()
        with pytest.raises(RagwayError) as cancelled:
            await bus.call(
                subjects.CHAT_STREAM,
                job(body, stream_inbox=nc.new_inbox(), stream_id=stream_id),
                timeout=10,
            )
        await canceller
        assert cancelled.value.code == "timeout"
        assert "cancelled by its caller" in cancelled.value.detail
        assert time.monotonic() - started < 2
        openai_fake.hang = False
        async with open_stream(nc, bus, body) as (_, stream, collect):
            await collect()
        assert_well_formed(stream)


async def test_many_concurrent_streams_each_get_their_own_complete_answer(
    nats_url: str, nc: Client, bus: Bus, openai_fake: OpenAIFake
) -> None:
    async with running_proxy(
        nats_url, openai_api_base_urls=openai_fake.base_url, openai_api_keys="sk-fake-key"
    ):

        async def one(i: int) -> Stream:
            async with open_stream(nc, bus, chat_body("gpt-fake", f"n {i}")) as (_, _s, collect):
                return await collect()

        streams = await asyncio.gather(*(one(i) for i in range(30)))
    for i, stream in enumerate(streams):
        assert_well_formed(stream)
        assert stream.end is not None and stream.end.content == f"Echo: n {i}"


async def test_a_relay_cancelled_before_its_first_step_gives_its_backend_connection_back(
    nats_url: str, nc: Client, openai_fake: OpenAIFake
) -> None:
    # One connection in the pool: a response left open by a relay that never ran would
    # keep the only slot, and the next stream could not reach the backend at all.
    openai_fake.tokens_per_reply, openai_fake.token_delay = 1000, 0.01
    async with running_proxy(
        nats_url,
        openai_api_base_urls=openai_fake.base_url,
        openai_api_keys="sk-fake-key",
        max_backend_connections=1,
    ) as proxy:
        stream_job = job(chat_body("gpt-fake"), stream_inbox=nc.new_inbox(), stream_id="s1")
        await proxy.chat.stream(stream_job)
        # `stream` returned without yielding since it spawned the relay: it has not run yet
        relays = [
            task
            for task in asyncio.all_tasks()
            if task.get_coro().__qualname__.endswith("Relays._run")  # type: ignore[union-attr]
        ]
        assert len(relays) == 1
        relays[0].cancel()
        await asyncio.wait(relays, timeout=2)
        await asyncio.wait_for(openai_fake.client_disconnected.wait(), 2)
        second = job(chat_body("gpt-fake"), stream_inbox=nc.new_inbox(), stream_id="s2")
        accepted = await asyncio.wait_for(proxy.chat.stream(second), 5)
    assert accepted.model == "gpt-fake"

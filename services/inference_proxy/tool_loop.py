"""Completions with `tool_ids`: the model gets those tools' specs, ragway runs the calls
it makes (each in a sandbox worker) and feeds the results back until it answers.

Non-streamed, every round is one backend answer. Streamed, every round is a backend
stream into a private inbox: a round that starts with tool calls is consumed here; the
first round that starts answering (content, or a call of a tool the caller brought in
`tools`) is relayed to the caller's inbox as it arrives, so the final answer streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from common.codec import encode
from common.errors import RagwayError, not_found
from common.tasks import BackgroundTasks
from contracts.auth import Principal
from contracts.chat import STREAM_END, STREAM_HEADER, CompletionJob, StreamAccepted, StreamEnd
from contracts.functions import ToolRecord
from inference_proxy.cancels import CancelRegistry
from inference_proxy.chat import ChatRunner
from inference_proxy.pipes import failure_error
from inference_proxy.plugins import PluginStore, usable, user_of
from inference_proxy.sandbox import Sandbox, SandboxCrash, SandboxTimeout
from inference_proxy.sandbox_protocol import Call, Chunk, Failure
from inference_proxy.settings import Settings
from inference_proxy.translate import error_event

log = structlog.get_logger()

_END_HEADERS = {STREAM_HEADER: STREAM_END}
MAX_RESULT_CHARS = 64 * 1024


@dataclass
class _Tools:
    """The tools of one completion: the specs sent and who answers each name."""

    specs: list[dict[str, Any]]
    owners: dict[str, ToolRecord]


@dataclass
class _Round:
    """What a streamed round said before ragway decided whether to relay it."""

    held: list[bytes] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    content: list[str] = field(default_factory=list)
    relaying: bool = False


class ToolLoop:
    def __init__(
        self,
        nc: Client,
        chat: ChatRunner,
        sandbox: Sandbox,
        store: PluginStore,
        settings: Settings,
        cancels: CancelRegistry,
    ) -> None:
        self._nc = nc
        self._cancels = cancels
        self._chat = chat
        self._sandbox = sandbox
        self._store = store
        self._rounds = settings.max_tool_rounds
        self._idle = settings.backend_idle_timeout_seconds
        self._relays = BackgroundTasks()

    def tools_for(self, body: dict[str, Any], tool_ids: list[str], principal: Principal) -> _Tools:
        specs = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        taken = {t["function"].get("name") for t in specs if isinstance(t.get("function"), dict)}
        owners: dict[str, ToolRecord] = {}
        for tool_id in tool_ids:
            record = self._store.tool(tool_id)
            if record is None or not usable(record, principal):
                raise not_found(f"Tool '{tool_id}' not found")
            for spec in record.specs:
                name = spec.get("name")
                if isinstance(name, str) and name not in taken and name not in owners:
                    owners[name] = record
                    specs.append({"type": "function", "function": spec})
        return _Tools(specs, owners)

    def _job(
        self, job: CompletionJob, body: dict[str, Any], tools: _Tools, **extra: str
    ) -> CompletionJob:
        payload = {k: v for k, v in body.items() if k != "tool_ids"}
        payload["tools"] = tools.specs
        return msgspec.structs.replace(job, body=msgspec.Raw(encode(payload)), **extra)

    # --- not streamed -------------------------------------------------------------------

    async def complete(
        self, job: CompletionJob, body: dict[str, Any], tool_ids: list[str]
    ) -> bytes:
        tools = self.tools_for(body, tool_ids, job.principal)
        messages = list(body.get("messages") or [])
        for _ in range(self._rounds):
            reply = await self._chat.complete(self._job(job, {**body, "messages": messages}, tools))
            message = _message_of(reply)
            calls = message.get("tool_calls") or []
            if not calls or not _all_ours(calls, tools):
                return reply
            messages += await self._results(job, message.get("content"), calls, tools)
        raise _too_many_rounds(self._rounds)

    # --- streamed -----------------------------------------------------------------------

    async def stream(
        self, job: CompletionJob, body: dict[str, Any], tool_ids: list[str]
    ) -> StreamAccepted:
        if not job.stream_inbox:
            raise RagwayError("invalid", "A stream needs a `stream_inbox`")
        tools = self.tools_for(body, tool_ids, job.principal)
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        messages = list(body.get("messages") or [])
        try:
            accepted = await self._open_round(job, body, messages, tools, inbox)
        except BaseException:
            await _unsubscribe(sub)
            raise
        self._relays.spawn(self._relay(job, body, messages, tools, sub, inbox))
        return accepted

    async def _open_round(
        self,
        job: CompletionJob,
        body: dict[str, Any],
        messages: list[Any],
        tools: _Tools,
        inbox: str,
    ) -> StreamAccepted:
        # the caller's stream id: its cancel message stops the round's backend stream too
        round_job = self._job(job, {**body, "messages": messages}, tools, stream_inbox=inbox)
        return await self._chat.stream(round_job)

    async def _relay(
        self,
        job: CompletionJob,
        body: dict[str, Any],
        messages: list[Any],
        tools: _Tools,
        sub: Subscription,
        inbox: str,
    ) -> None:
        caller = job.stream_inbox
        cancel = await self._cancels.watch(job.stream_id, asyncio.current_task())
        try:
            for number in range(self._rounds):
                if number:
                    try:
                        await self._open_round(job, body, messages, tools, inbox)
                    except RagwayError as exc:
                        await self._fail(caller, exc.detail)
                        return
                step = await self._read_round(sub, caller, tools)
                if step is None:
                    return  # relayed to the caller, end included
                content, calls = step
                messages += await self._results(job, content, calls, tools)
            await self._fail(caller, _too_many_rounds(self._rounds).detail)
        except asyncio.CancelledError:
            await self._fail(caller, "The stream was cancelled")
        finally:
            await _unsubscribe(sub)
            self._cancels.forget(cancel)

    async def _read_round(
        self, sub: Subscription, caller: str, tools: _Tools
    ) -> tuple[str | None, list[dict[str, Any]]] | None:
        """Relay the round (None), or its tool calls when it is a round of ours."""
        state = _Round()
        while True:
            try:
                msg = await sub.next_msg(timeout=self._idle + 1)
            except nats.errors.TimeoutError:
                await self._fail(caller, "The model stopped responding")
                return None
            end = (msg.headers or {}).get(STREAM_HEADER) == STREAM_END
            if state.relaying:
                await self._nc.publish(caller, msg.data, headers=msg.headers if end else None)
                if end:
                    return None
                continue
            if end:
                calls = [state.calls[i] for i in sorted(state.calls)]
                if calls and _all_ours(calls, tools) and not _end_error(msg.data):
                    return "".join(state.content) or None, calls
                await self._flush(caller, state)
                await self._nc.publish(caller, msg.data, headers=msg.headers)
                return None
            state.held.append(msg.data)
            _inspect(msg.data, state, tools)
            if state.relaying:
                await self._flush(caller, state)

    async def _flush(self, caller: str, state: _Round) -> None:
        held, state.held = state.held, []
        for data in held:
            await self._nc.publish(caller, data)

    async def _fail(self, caller: str, error: str) -> None:
        with contextlib.suppress(Exception):
            await self._nc.publish(caller, error_event(error))
            await self._nc.publish(caller, encode(StreamEnd(error=error)), headers=_END_HEADERS)

    # --- running the calls --------------------------------------------------------------

    async def _results(
        self,
        job: CompletionJob,
        content: str | None,
        calls: list[dict[str, Any]],
        tools: _Tools,
    ) -> list[dict[str, Any]]:
        """The assistant's tool-call message and one `tool` message per call."""
        results = await asyncio.gather(*(self._run(job, call, tools) for call in calls))
        said: list[dict[str, Any]] = [
            {"role": "assistant", "content": content or "", "tool_calls": calls}
        ]
        for call, result in zip(calls, results, strict=True):
            said.append({"role": "tool", "tool_call_id": call.get("id") or "", "content": result})
        return said

    async def _run(self, job: CompletionJob, call: dict[str, Any], tools: _Tools) -> str:
        """The call's result text; failures become text the model can read."""
        function = call.get("function") or {}
        name = function.get("name") or ""
        record = tools.owners[name]
        label = f"Tool '{record.id}.{name}'"
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = msgspec.json.decode(arguments) if arguments.strip() else {}
            except msgspec.DecodeError:
                return f"Error: the arguments of {name} are not valid JSON"
        if not isinstance(arguments, dict):
            return f"Error: the arguments of {name} must be a JSON object"
        started = time.perf_counter()
        run_call = Call(
            op="tool",
            plugin_id=record.id,
            source=record.content,
            method=name,
            arguments=arguments,
            user=user_of(job.principal),
        )
        parts: list[str] = []
        outcome, result = "ok", ""
        try:
            async with self._sandbox.run(run_call) as run:
                while isinstance(frame := await run.next_frame(), Chunk):
                    parts.append(frame.text)
            if isinstance(frame, Failure):
                outcome, result = "failed", f"Error: {failure_error(label, frame).detail}"
            else:
                result = "".join(parts) + frame.text
        except (SandboxTimeout, SandboxCrash) as exc:
            outcome, result = "failed", f"Error: {failure_error(label, exc).detail}"
        log.info(
            "tool_call",
            tool_id=record.id,
            function=name,
            outcome=outcome,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result[:MAX_RESULT_CHARS]

    async def aclose(self, grace_seconds: float = 5.0) -> None:
        await self._relays.drain(grace_seconds)


def _message_of(reply: bytes) -> dict[str, Any]:
    try:
        data = msgspec.json.decode(reply)
        message = data["choices"][0]["message"]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        return {}
    return message if isinstance(message, dict) else {}


def _all_ours(calls: list[dict[str, Any]], tools: _Tools) -> bool:
    return all(
        isinstance(call, dict) and (call.get("function") or {}).get("name") in tools.owners
        for call in calls
    )


def _too_many_rounds(rounds: int) -> RagwayError:
    return RagwayError("bad_gateway", f"The model was still calling tools after {rounds} rounds")


def _inspect(data: bytes, state: _Round, tools: _Tools) -> None:
    """Note content and tool-call deltas; decide to relay once the model starts answering."""
    for block in data.split(b"\n\n"):
        if not block.startswith(b"data: ") or block == b"data: [DONE]":
            continue
        try:
            chunk = msgspec.json.decode(block[6:])
        except msgspec.DecodeError:
            state.relaying = True  # let the caller see what the backend sent
            return
        if not isinstance(chunk, dict) or chunk.get("error") is not None:
            state.relaying = True
            return
        for choice in chunk.get("choices") or []:
            delta = (choice.get("delta") or {}) if isinstance(choice, dict) else {}
            if delta.get("content"):
                state.content.append(delta["content"])
                if not state.calls:
                    state.relaying = True
            for piece in delta.get("tool_calls") or []:
                _merge_call(state, piece)
    if any(
        (call.get("function") or {}).get("name") not in tools.owners
        for call in state.calls.values()
        if (call.get("function") or {}).get("name")
    ):
        state.relaying = True  # a tool the caller brought: the caller runs it


def _merge_call(state: _Round, piece: dict[str, Any]) -> None:
    """Join streamed tool-call fragments (OpenAI sends arguments in pieces)."""
    index = piece.get("index", len(state.calls))
    call = state.calls.setdefault(
        index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if piece.get("id"):
        call["id"] = piece["id"]
    function = piece.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        call["function"]["arguments"] += arguments
    elif isinstance(arguments, dict):
        call["function"]["arguments"] = encode(arguments).decode()


def _end_error(data: bytes) -> str | None:
    try:
        return msgspec.json.decode(data, type=StreamEnd).error
    except msgspec.DecodeError:
        return "The stream ended unexpectedly"


async def _unsubscribe(subscription: Subscription) -> None:
    with contextlib.suppress(Exception):
        await subscription.unsubscribe()

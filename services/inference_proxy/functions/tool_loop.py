"""Completions with `tool_ids`: the model gets those tools' specs, ragway runs the calls
it makes (each in a sandbox worker) and feeds the results back until it answers.

Non-streamed, every round is one backend answer. Streamed, every round is a backend
stream read in process (`ChatStream`): a round that starts with tool calls is consumed
here; the first round that starts answering (content, or a call of a tool the caller
brought in `tools`) is relayed to the caller's inbox as it arrives, so the final answer
streams.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from nats.aio.client import Client

from common.codec import encode
from common.errors import RagwayError, not_found
from contracts.auth import Principal
from contracts.chat import BackendRef, CompletionJob, StreamAccepted, StreamEnd
from contracts.functions import ToolRecord
from contracts.streams import error_event
from inference_proxy.cancels import CancelRegistry
from inference_proxy.chat import ChatRunner, ChatStream
from inference_proxy.errors import StreamFailure
from inference_proxy.functions.pipes import failure_error
from inference_proxy.functions.plugins import PluginStore, usable, user_of
from inference_proxy.functions.sandbox import Sandbox, SandboxCrash, SandboxTimeout
from inference_proxy.functions.sandbox_protocol import Call, Chunk, Failure
from inference_proxy.relay import Outbox, Relay, Relays
from inference_proxy.settings import Settings
from inference_proxy.translate import OllamaStream, OpenAIStream

log = structlog.get_logger()

MAX_RESULT_CHARS = 64 * 1024


@dataclass
class _Tools:
    """The tools of one completion: the specs sent and who answers each name."""

    specs: list[dict[str, Any]]
    owners: dict[str, ToolRecord]


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
        self._chat = chat
        self._sandbox = sandbox
        self._store = store
        self.rounds = settings.max_tool_rounds
        self._relays = Relays(cancels)

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

    def _job(self, job: CompletionJob, body: dict[str, Any], tools: _Tools) -> CompletionJob:
        payload = {k: v for k, v in body.items() if k != "tool_ids"}
        payload["tools"] = tools.specs
        return msgspec.structs.replace(job, body=msgspec.Raw(encode(payload)))

    # --- not streamed -------------------------------------------------------------------

    async def complete(
        self, job: CompletionJob, body: dict[str, Any], tool_ids: list[str]
    ) -> bytes:
        tools = self.tools_for(body, tool_ids, job.principal)
        messages = list(body.get("messages") or [])
        for _ in range(self.rounds):
            round_job = self._job(job, {**body, "messages": messages}, tools)
            reply = (await self._chat.complete(round_job)).body
            message = _message_of(reply)
            calls = message.get("tool_calls") or []
            if not calls or not _all_ours(calls, tools):
                return reply
            messages += await self.results(job, message.get("content"), calls, tools)
        raise _too_many_rounds(self.rounds)

    # --- streamed -----------------------------------------------------------------------

    async def stream(
        self, job: CompletionJob, body: dict[str, Any], tool_ids: list[str]
    ) -> StreamAccepted:
        if not job.stream_inbox:
            raise RagwayError("invalid", "A stream needs a `stream_inbox`")
        tools = self.tools_for(body, tool_ids, job.principal)
        messages = list(body.get("messages") or [])
        first, cancel = await self._relays.open(
            job.stream_id, lambda: self.open_round(job, body, messages, tools)
        )
        relay = _ToolRelay(self, job, body, messages, tools, first)
        self._relays.start(relay, Outbox(self._nc, job.stream_inbox), cancel)
        backend = first.request.backend
        return StreamAccepted(
            model=first.request.model, backend=BackendRef(kind=backend.kind, idx=backend.idx)
        )

    async def open_round(
        self, job: CompletionJob, body: dict[str, Any], messages: list[Any], tools: _Tools
    ) -> ChatStream:
        return await self._chat.open(self._job(job, {**body, "messages": messages}, tools))

    # --- running the calls --------------------------------------------------------------

    async def results(
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
        await self._relays.aclose(grace_seconds)


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


def _answering(translator: OpenAIStream | OllamaStream, tools: _Tools) -> bool:
    """The round answers the caller: content before any tool call, or a call of a tool
    the caller brought (the caller runs it)."""
    calls = translator.tool_calls
    if not calls:
        return bool(translator.parts)
    return any(
        (name := call["function"]["name"]) and name not in tools.owners for call in calls.values()
    )


class _ToolRelay(Relay):
    """The rounds of one streamed completion: tool rounds consumed here, the answering
    round relayed to the caller as it arrives."""

    event = "tool_stream"

    def __init__(
        self,
        loop: ToolLoop,
        job: CompletionJob,
        body: dict[str, Any],
        messages: list[Any],
        tools: _Tools,
        first: ChatStream,
    ) -> None:
        self._loop = loop
        self._job = job
        self._body = body
        self._messages = messages
        self._tools = tools
        self._stream = first  # the round being read
        self._rounds = 0

    async def pump(self, out: Outbox) -> None:
        loop = self._loop
        for number in range(loop.rounds):
            self._rounds = number + 1
            if number:
                try:
                    self._stream = await loop.open_round(
                        self._job, self._body, self._messages, self._tools
                    )
                except RagwayError as exc:
                    raise StreamFailure(exc.detail) from None
            step = await self._round(out)
            if step is None:
                return  # the answer, relayed
            await self._stream.release()  # the connection is not held while tools run
            content, calls = step
            self._messages += await loop.results(self._job, content, calls, self._tools)
        raise StreamFailure(_too_many_rounds(loop.rounds).detail)

    async def _round(self, out: Outbox) -> tuple[str | None, list[dict[str, Any]]] | None:
        """Relay the round (None), or its tool calls when it is a round of ours."""
        stream = self._stream
        translator = stream.translator
        held: list[bytes] = []
        relaying = False
        try:
            async with stream.reading():
                while data := await stream.next():
                    if relaying:
                        await out.send(data)
                        continue
                    held.append(data)
                    if _answering(translator, self._tools):
                        relaying = True
                        for piece in held:
                            await out.send(piece)
                        held.clear()
            closing = stream.closing()
        except StreamFailure:
            for piece in held:  # the caller sees what the backend said before it failed
                await out.send(piece)
            raise
        calls = [translator.tool_calls[i] for i in sorted(translator.tool_calls)]
        if not relaying and calls and _all_ours(calls, self._tools):
            return translator.content or None, calls
        for piece in held:
            await out.send(piece)
        await out.send(closing)
        return None

    async def failed(self, out: Outbox, error: str) -> None:
        await out.send(error_event(error))

    def end_message(self, error: str | None) -> StreamEnd:
        return self._stream.end(error)

    def stop(self) -> None:
        self._stream.close()

    async def release(self) -> None:
        await self._stream.release()

    def log_fields(self) -> dict[str, Any]:
        return {"model": self._stream.request.model, "rounds": self._rounds}

"""CHAT_COMPLETE and CHAT_STREAM: a function model answers itself, `tool_ids` go
through the tool loop, everything else straight to the backend."""

from __future__ import annotations

from typing import Any

import msgspec

from common.codec import encode
from contracts.chat import BackendRef, CompletionJob, CompletionReply, StreamAccepted
from inference_proxy.chat import ChatRunner
from inference_proxy.functions.pipes import PipeRunner
from inference_proxy.functions.plugins import PluginStore, usable
from inference_proxy.functions.tool_loop import ToolLoop


class _Routing(msgspec.Struct):
    """The two fields that pick the path (the rest is decoded only when needed)."""

    model: Any = None
    tool_ids: Any = None


_routing = msgspec.json.Decoder(_Routing)


class Completions:
    def __init__(
        self, chat: ChatRunner, pipes: PipeRunner, tools: ToolLoop, store: PluginStore
    ) -> None:
        self._chat = chat
        self._pipes = pipes
        self._tools = tools
        self._store = store

    def _route(self, job: CompletionJob) -> tuple[str, Any]:
        try:
            routing = _routing.decode(job.body)
        except msgspec.DecodeError:
            return "backend", None  # the backend path reports the malformed body
        if isinstance(routing.model, str):
            record = self._store.function(routing.model)
            # a function model the caller may not use is no model of theirs: the backend
            # path answers "Model not found", as for any unknown id
            if record is not None and record.is_active and usable(record, job.principal):
                return "pipe", record
        if isinstance(routing.tool_ids, list) and routing.tool_ids:
            return "tools", [str(t) for t in routing.tool_ids]
        return "backend", None

    async def complete(self, job: CompletionJob) -> msgspec.Raw:
        """The `chat.completion` JSON, already encoded (in a CompletionReply, saying who
        answered, when the job asks for one)."""
        path, detail = self._route(job)
        backend: BackendRef | None = None
        if path == "pipe":
            body = await self._pipes.complete(job, detail, _body(job))
        elif path == "tools":
            body = await self._tools.complete(job, _body(job), detail)
        else:
            answer = await self._chat.complete(job)
            body = answer.body
            backend = BackendRef(kind=answer.backend.kind, idx=answer.backend.idx)
        if job.reply_envelope:
            return msgspec.Raw(
                encode(CompletionReply(completion=msgspec.Raw(body), backend=backend))
            )
        return msgspec.Raw(body)

    async def stream(self, job: CompletionJob) -> StreamAccepted:
        path, detail = self._route(job)
        if path == "pipe":
            return await self._pipes.stream(job, detail, _body(job))
        if path == "tools":
            return await self._tools.stream(job, _body(job), detail)
        return await self._chat.stream(
            job, first_in_reply=job.first_in_reply, tail_in_end=job.tail_in_end
        )


def _body(job: CompletionJob) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(job.body)
    return body

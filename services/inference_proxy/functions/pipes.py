"""Function models: a pipe answers a completion itself, run in a sandbox worker.

A streaming pipe's pieces go to the caller's inbox as `chat.completion.chunk` SSE, the
same stream protocol as the backends (contracts/chat.py). The reply to CHAT_STREAM waits
for the pipe's first output, so a pipe that fails or hangs before saying anything gets
a plain error reply (a clean HTTP status) instead of an error inside a 200 stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import structlog
from nats.aio.client import Client

from common.codec import encode
from common.errors import RagwayError
from common.tasks import BackgroundTasks
from contracts.chat import CompletionJob, StreamAccepted, StreamEnd
from contracts.functions import FunctionRecord
from contracts.streams import DONE, error_event, sse
from inference_proxy.cancels import CancelRegistry
from inference_proxy.functions.plugins import PluginStore, user_of
from inference_proxy.functions.sandbox import (
    Sandbox,
    SandboxCrash,
    SandboxRun,
    SandboxTimeout,
    SandboxUnavailable,
)
from inference_proxy.functions.sandbox_protocol import Call, Chunk, Failure, Frame
from inference_proxy.functions.valves import network_allowed, plugin_values
from inference_proxy.relay import Outbox, PublishFailed

log = structlog.get_logger()


def failure_error(label: str, exc: BaseException | Failure) -> RagwayError:
    """How a failed call of admin code is reported (the admin may read the reason)."""
    if isinstance(exc, SandboxUnavailable):
        return RagwayError("unavailable", f"{label} cannot run: {exc}")
    if isinstance(exc, SandboxTimeout):
        return RagwayError("timeout", f"{label} {exc}")
    if isinstance(exc, SandboxCrash):
        return RagwayError("bad_gateway", f"{label} failed: {exc}")
    if isinstance(exc, Failure):
        reason = f"{exc.type}: {exc.message}" if exc.message else exc.type
        return RagwayError("bad_gateway", f"{label} failed: {reason}")
    return RagwayError("bad_gateway", f"{label} failed")


class _SseChunks:
    """`chat.completion.chunk` events for one pipe answer."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4()}"
        self.created = int(time.time())
        self.started = False

    def _event(self, delta: dict[str, Any], finish: str | None) -> bytes:
        return sse(
            encode(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [
                        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                    ],
                }
            )
        )

    def piece(self, text: str) -> bytes:
        if not self.started:
            self.started = True
            return self._event({"role": "assistant", "content": text}, None)
        return self._event({"content": text}, None) if text else b""

    def finish(self) -> bytes:
        delta: dict[str, Any] = {} if self.started else {"role": "assistant", "content": ""}
        self.started = True
        return self._event(delta, "stop") + DONE


def completion(model: str, content: str) -> bytes:
    return encode(
        {
            "id": f"chatcmpl-{uuid.uuid4()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        }
    )


class PipeRunner:
    def __init__(
        self, nc: Client, sandbox: Sandbox, plugins: PluginStore, cancels: CancelRegistry
    ) -> None:
        self._nc = nc
        self._sandbox = sandbox
        self._plugins = plugins
        self._cancels = cancels
        self._relays = BackgroundTasks()

    def _call(self, job: CompletionJob, record: FunctionRecord, body: dict[str, Any]) -> Call:
        return Call(
            op="pipe",
            plugin_id=record.id,
            source=record.content,
            body=body,
            user=user_of(job.principal),
            valves=plugin_values(self._plugins.valves("function", record.id)),
        )

    def _network(self, record: FunctionRecord) -> bool:
        return network_allowed(self._plugins.valves("function", record.id))

    async def complete(
        self, job: CompletionJob, record: FunctionRecord, body: dict[str, Any]
    ) -> bytes:
        label = f"Function '{record.id}'"
        started = time.perf_counter()
        parts: list[str] = []
        try:
            call = self._call(job, record, {**body, "stream": False})
            async with self._sandbox.run(call, network=self._network(record)) as run:
                while isinstance(frame := await run.next_frame(), Chunk):
                    parts.append(frame.text)
        except (SandboxTimeout, SandboxCrash) as exc:
            self._log(record, "failed", started, str(exc))
            raise failure_error(label, exc) from None
        if isinstance(frame, Failure):
            self._log(record, "failed", started, frame.type)
            raise failure_error(label, frame)
        parts.append(frame.text)
        self._log(record, "ok", started)
        return completion(record.id, "".join(parts))

    async def stream(
        self, job: CompletionJob, record: FunctionRecord, body: dict[str, Any]
    ) -> StreamAccepted:
        if not job.stream_inbox:
            raise RagwayError("invalid", "A stream needs a `stream_inbox`")
        first: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        relay = self._relays.spawn(
            self._relay(job, record, self._call(job, record, {**body, "stream": True}), first)
        )
        try:
            frame = await asyncio.shield(first)
        except (SandboxTimeout, SandboxCrash) as exc:
            raise failure_error(f"Function '{record.id}'", exc) from None
        except asyncio.CancelledError:
            relay.cancel()
            raise
        if isinstance(frame, Failure):
            raise failure_error(f"Function '{record.id}'", frame)
        return StreamAccepted(model=record.id)

    async def _relay(
        self, job: CompletionJob, record: FunctionRecord, call: Call, first: asyncio.Future[Frame]
    ) -> None:
        """Run the pipe; hand its first frame to `stream`, then publish the rest."""
        started = time.perf_counter()
        out = Outbox(self._nc, job.stream_inbox)
        chunks = _SseChunks(record.id)
        parts: list[str] = []
        error: str | None = None
        outcome = "ok"
        cancel = await self._cancels.watch(job.stream_id, asyncio.current_task())
        try:
            async with self._sandbox.run(call, network=self._network(record)) as run:
                frame = await run.next_frame()
                first.set_result(frame)
                if isinstance(frame, Failure):
                    outcome = "failed"
                    return  # `stream` answers with the error; nothing was published
                await self._pump(out, run, frame, chunks, parts)
        except (SandboxTimeout, SandboxCrash) as exc:
            outcome = "failed"
            if not first.done():
                first.set_exception(exc)
                return
            error = str(failure_error(f"Function '{record.id}'", exc))
        except _PipeFailed as exc:
            outcome, error = "failed", str(failure_error(f"Function '{record.id}'", exc.failure))
        except PublishFailed:
            outcome, error = "publish_failed", "The stream could not be delivered"
        except asyncio.CancelledError:
            outcome, error = "cancelled", "The stream was cancelled"
            if not first.done():
                first.cancel()
                return
        finally:
            self._cancels.forget(cancel)
            self._log(record, outcome, started, error)
        await self._finish(out, chunks, parts, error)

    async def _pump(
        self,
        out: Outbox,
        run: SandboxRun,
        frame: Frame,
        chunks: _SseChunks,
        parts: list[str],
    ) -> None:
        while isinstance(frame, Chunk):
            parts.append(frame.text)
            data = chunks.piece(frame.text)
            if data:
                await out.send(data)
            frame = await run.next_frame()
        if isinstance(frame, Failure):
            raise _PipeFailed(frame)
        if frame.text:
            parts.append(frame.text)
            await out.send(chunks.piece(frame.text))

    async def _finish(
        self, out: Outbox, chunks: _SseChunks, parts: list[str], error: str | None
    ) -> None:
        # the end message follows even when this cannot be delivered
        with contextlib.suppress(PublishFailed):
            await out.send(error_event(error) if error else chunks.finish())
        await out.end(
            StreamEnd(content="".join(parts), finish_reason=None if error else "stop", error=error)
        )

    def _log(
        self, record: FunctionRecord, outcome: str, started: float, error: str | None = None
    ) -> None:
        log.info(
            "pipe_call",
            function_id=record.id,
            outcome=outcome,
            error=error,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def aclose(self, grace_seconds: float = 5.0) -> None:
        await self._relays.drain(grace_seconds)


class _PipeFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


__all__ = ["PipeRunner", "completion", "failure_error"]

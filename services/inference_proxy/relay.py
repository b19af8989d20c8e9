"""The proxy's side of a stream, written once: open (in the calling task, stopped by the
caller's cancel message), then relay in the background to the caller's inbox, end with
one end message (contracts.streams), and give back or close what was read from.

A `Relay` says what its stream is made of (a chat translated from a backend, an Ollama
reply passed through, the rounds of a tool loop); `Relays` runs every one of them the
same way: cancel messages, shutdown, publish retries, the end message, the log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client

from common.codec import encode
from common.errors import RagwayError
from common.idle import IdleDeadline, idle_timeout
from common.tasks import BackgroundTasks
from contracts.streams import END_HEADERS
from inference_proxy.backend_http import BackendHTTPError, BackendResponse
from inference_proxy.cancels import CancelRegistry, CancelWatch
from inference_proxy.errors import StreamFailure

log = structlog.get_logger()

T = TypeVar("T")

# after a stream's end: how long to wait for the body's end before closing instead
REUSE_WAIT_SECONDS = 1.0
_END_HEADERS = dict(END_HEADERS)


class PublishFailed(Exception):
    """The caller's inbox could not be reached (NATS gone for longer than a reconnect)."""


class Outbox:
    """One stream's messages to its caller: data, then one end message."""

    __slots__ = ("_nc", "subject")

    def __init__(self, nc: Client, subject: str) -> None:
        self._nc = nc
        self.subject = subject

    async def send(self, data: bytes) -> None:
        """Publish, riding out a short reconnect; PublishFailed when it lasts."""
        for _ in range(30):
            try:
                await self._nc.publish(self.subject, data)
                return
            except nats.errors.OutboundBufferLimitError:
                await asyncio.sleep(0.1)
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                break
        raise PublishFailed

    async def end(self, message: msgspec.Struct) -> None:
        """The end message (best effort: a caller that cannot hear it times out)."""
        try:
            await self._nc.publish(self.subject, encode(message), headers=_END_HEADERS)
        except Exception:
            log.warning("stream_end_unpublished", inbox=self.subject)


class Relay:
    """What one stream relays; `Relays` drives it."""

    event = "stream"  # the log line's name

    async def pump(self, out: Outbox) -> None:
        """Publish the stream's data; StreamFailure when its source broke."""
        raise NotImplementedError

    async def failed(self, out: Outbox, error: str) -> None:
        """The source broke: what the caller should still read before the end."""

    def end_message(self, error: str | None) -> msgspec.Struct:
        raise NotImplementedError

    def cancelled(self, requested: bool) -> str:
        """The end's error when the relay was cancelled (by its caller, or a shutdown)."""
        return "The stream was cancelled"

    def stop(self) -> None:
        """Close the source (it failed, was cancelled, or the relay never ran); a no-op
        once `release` gave it back."""

    async def release(self) -> None:
        """The stream ended well: give the source back for reuse."""

    def log_fields(self) -> dict[str, Any]:
        return {}


class Relays:
    """Every stream relay of one runner: opened under the caller's cancel message, run in
    the background, drained on shutdown."""

    def __init__(self, cancels: CancelRegistry) -> None:
        self._cancels = cancels
        self._tasks = BackgroundTasks()

    async def open(
        self, stream_id: str, opening: Callable[[], Awaitable[T]]
    ) -> tuple[T, CancelWatch | None]:
        """`opening()` awaited in the calling task (no task of its own: one hop less
        before the first chunk); the stream's cancel message cancels it."""
        current = asyncio.current_task()
        cancel = await self._cancels.watch(stream_id, current)
        try:
            try:
                return await opening(), cancel
            except asyncio.CancelledError:
                requested = cancel is not None and cancel.requested
                # uncancel() == 0: the cancel message was the only reason (not a shutdown)
                if requested and current is not None and current.uncancel() == 0:
                    raise RagwayError("timeout", "The stream was cancelled by its caller") from None
                raise
        except BaseException:
            self._cancels.forget(cancel)
            raise

    def start(self, relay: Relay, out: Outbox, cancel: CancelWatch | None) -> None:
        """Relay in the background; the cancel message now stops the relay."""
        task = self._tasks.spawn(self._run(relay, out, cancel, time.perf_counter()))
        # A task cancelled before its first step never runs its `finally`: what it reads
        # from (a backend connection, a slot in the shared pool) must not stay taken.
        task.add_done_callback(lambda _: relay.stop())
        if cancel is not None:
            cancel.task = task
            if cancel.requested:
                task.cancel()

    async def _run(
        self, relay: Relay, out: Outbox, cancel: CancelWatch | None, started: float
    ) -> None:
        error: str | None = None
        outcome = "ok"
        try:
            try:
                await relay.pump(out)
            except StreamFailure as exc:
                outcome, error = "backend_failed", str(exc)
                await relay.failed(out, error)
        except asyncio.CancelledError:
            requested = cancel is not None and cancel.requested
            outcome = "cancelled" if requested else "shutdown"
            error = error or relay.cancelled(requested)
        except PublishFailed:
            outcome, error = "publish_failed", "The stream could not be delivered"
        finally:
            if error is not None:
                relay.stop()  # tells the backend to stop generating
            await out.end(relay.end_message(error))
            self._cancels.forget(cancel)
            # the service's request line already logged the accepted stream with its
            # request id: this second line goes out at `info` only on failure
            (log.info if error is not None else log.debug)(
                relay.event,
                outcome=outcome,
                error=error,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                **relay.log_fields(),
            )
            if error is None:
                await relay.release()

    async def aclose(self, grace_seconds: float = 10.0) -> None:
        """Let running relays finish (bounded), then cancel the rest."""
        await self._tasks.drain(grace_seconds)


@asynccontextmanager
async def backend_reading(idle: float, who: str, label: str) -> AsyncIterator[IdleDeadline]:
    """Read a backend's body: nothing for `idle` seconds (no `touch()`), or a broken
    connection, become StreamFailure naming the backend (`who`: "model backend"; `label`:
    its kind and index, never its URL)."""
    try:
        async with idle_timeout(idle) as deadline:
            yield deadline
    except TimeoutError:
        raise StreamFailure(f"The {who} sent nothing for {idle:g}s") from None
    except BackendHTTPError:
        raise StreamFailure(f"The connection to {label} broke") from None


async def release_for_reuse(response: BackendResponse) -> None:
    """Wait for the end of the body, then hand the connection back.

    A backend may send `[DONE]` (or Ollama's `done`) before the chunked body's terminator,
    in a later segment; a response released before its body ended closes the connection,
    so every stream would open a new one. The caller already has its end message; this
    only waits (bounded) for the terminator."""
    if not response.ended:
        try:
            async with asyncio.timeout(REUSE_WAIT_SECONDS):
                await response.wait_end()
        except TimeoutError:
            response.close()
            return
        except BaseException:
            response.close()
            raise
    response.release()  # keeps the connection only when the body ended cleanly

"""The gateway's side of a stream (contracts.streams), written once: a mailbox that
listens before the proxy is asked, the acceptance, the messages written to the HTTP
response as they arrive (whatever arrived meanwhile in one write), the end message,
and a cancel message to the proxy when the stream did not reach its end (the client
left, the stream went quiet, the start failed).

What the bytes become is the `StreamSink`'s business: SSE for chat, Ollama's reply as
it is for the pass-through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar

import structlog
from aiohttp import web

from common.bus import Bus
from common.idle import idle_timeout
from contracts.endpoint import Endpoint, Event
from contracts.streams import STREAM_END, STREAM_HEADER
from gateway.state import BUS, INBOXES, SETTINGS

log = structlog.get_logger()

A = TypeVar("A")
A_contra = TypeVar("A_contra", contravariant=True)
Req = TypeVar("Req")


class StreamSink(Protocol[A_contra]):
    async def start(self, accepted: A_contra) -> None:
        """The proxy accepted: start the HTTP response."""

    async def data(self, data: bytes, ending: bool) -> None:
        """Everything that arrived since the last call; `ending`: the end message came
        with it (its bytes may ride with the end of the response)."""

    async def end(self, body: bytes) -> None:
        """The end message's body: finish the response."""

    async def idle(self) -> None:
        """Nothing arrived for the stream's idle bound: finish the response with that."""


async def relay_stream(
    request: web.Request,
    endpoint: Endpoint[Req, A],
    message: Callable[[str], Req],
    cancel: Event[None],
    stream_id: str,
    sink: StreamSink[A],
) -> None:
    """Ask `endpoint` with `message(inbox)`, then relay the stream that follows into
    `sink` until its end message; `cancel` (for `stream_id`) stops the proxy's side when
    the stream did not reach its end."""
    app = request.app
    bus, settings = app[BUS], app[SETTINGS]
    finished = False
    # The mailbox listens before the proxy is asked, so no message can arrive unheard;
    # the acceptance comes to its reply subject, the stream to its subject.
    async with app[INBOXES].open() as box:
        try:
            accepted = await bus.call_into(
                endpoint, message(box.subject), box, timeout=settings.completion_timeout_seconds
            )
            await sink.start(accepted)
            end: bytes | None = None
            try:
                async with idle_timeout(settings.stream_idle_timeout_seconds) as idle:
                    while end is None:
                        batch = await box.batch()
                        idle.touch()
                        pieces: list[bytes] = []
                        for msg in batch:
                            headers = msg.headers  # contracts.streams.is_end, inlined
                            if headers and headers.get(STREAM_HEADER) == STREAM_END:
                                end = msg.data
                                break
                            pieces.append(msg.data)
                        if pieces:
                            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                            await sink.data(data, end is not None)
            except TimeoutError:
                if not idle.expired():
                    raise
                log.warning("stream_idle_timeout", subject=endpoint.subject, stream_id=stream_id)
                await sink.idle()
                return
            finished = True
            await sink.end(end)
        finally:
            if not finished:
                await _cancel(bus, cancel, stream_id)


async def _cancel(bus: Bus, cancel: Event[None], stream_id: str) -> None:
    try:
        await asyncio.shield(bus.publish(cancel, None, token=stream_id))
    except Exception:
        log.warning("stream_cancel_failed", subject=cancel.subject, stream_id=stream_id)

"""What every backend fake shares: an aiohttp server on a free loopback port that records
the requests it received and notices when a streaming client goes away."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None


@dataclass
class FakeBackend:
    """Start/stop plumbing; subclasses add routes in `routes()`."""

    requests: list[RecordedRequest] = field(default_factory=list)
    # set once a streaming client disconnected before the stream ended
    client_disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    disconnects: int = 0
    streams_finished: int = 0
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        app = web.Application(middlewares=[self._record])
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.origin

    async def stop(self) -> None:
        self._release.set()  # lets hanging handlers return
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def last(self, path: str) -> RecordedRequest:
        """The most recent request received on `path`."""
        for request in reversed(self.requests):
            if request.path == path:
                return request
        raise AssertionError(f"no request on {path}; got {self.paths()}")

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            with contextlib.suppress(ValueError, RecursionError):
                body = await request.json() if raw else None
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body)
        )
        return await handler(request)

    async def wait_until_stopped(self) -> None:
        """Never answer (until the fake stops)."""
        await self._release.wait()

    async def write_stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        pieces: list[bytes],
        *,
        delay: float = 0.0,
        drop_after: int | None = None,
    ) -> web.StreamResponse:
        """Write `pieces` one by one; drop the connection after `drop_after` of them."""
        await response.prepare(request)
        try:
            for index, piece in enumerate(pieces):
                if drop_after is not None and index >= drop_after:
                    # like a backend dying after sending: the client reads what came first
                    await asyncio.sleep(0.05)
                    assert request.transport is not None
                    request.transport.close()  # flushes what was written, then drops
                    return response
                await response.write(piece)
                if delay:
                    await asyncio.sleep(delay)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.disconnects += 1
            self.client_disconnected.set()
            return response
        self.streams_finished += 1
        return response


def last_user_text(messages: Any) -> str:
    """The text of the last user message (string content or OpenAI text parts)."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def echo_pieces(prompt: str) -> list[str]:
    """The deterministic answer to `prompt`, in the pieces a stream sends: `Echo: <prompt>`
    split after each word (so the pieces concatenate to the whole answer)."""
    words = f"Echo: {prompt}".split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]]


def count_words(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(len(content_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def float32_base64(vector: list[float]) -> str:
    """A vector as OpenAI's `encoding_format: base64` sends it (little-endian float32)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

"""Run the inference-proxy in-process against the session nats-server and the fakes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import pytest
from aiohttp import web
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from common.bus import Bus
from common.nats_conn import connect_nats
from contracts import subjects
from contracts.auth import Principal
from contracts.chat import CompletionJob, StreamAccepted, StreamEnd
from contracts.models import ModelsReply, ModelsRequest
from contracts.ollama import Method, OllamaProxyAccepted, OllamaProxyEnd, OllamaProxyRequest
from contracts.streams import is_end
from inference_proxy.app import InferenceProxy, Settings, serve
from tests.support.sandbox import isolation_for_tests

PRINCIPAL = Principal(id="u1", email="u1@example.com", name="U", role="user")


@asynccontextmanager
async def running_proxy(nats_url: str, **overrides: Any) -> AsyncIterator[InferenceProxy]:
    overrides.setdefault("sandbox_isolation", isolation_for_tests())
    settings = msgspec.structs.replace(Settings(nats_url=nats_url), **overrides)
    async with serve(settings) as proxy:
        await wait_until_serving(settings.nats_url)
        yield proxy


async def wait_until_serving(nats_url: str) -> None:
    """Until every endpoint answers: nats-server can briefly report no responders for a
    fresh subscription when the previous subscriber of that subject just disconnected."""
    async with connect_nats([nats_url], name="probe") as probe:
        for subject in (subjects.MODELS_LIST, subjects.CHAT_COMPLETE, subjects.CHAT_STREAM):
            for _ in range(100):
                try:
                    await probe.request(
                        subject.subject, b"not json", timeout=2
                    )  # answers `invalid`
                    break
                except nats.errors.NoRespondersError:
                    await asyncio.sleep(0.01)


def job(body: dict[str, Any], **extra: Any) -> CompletionJob:
    return CompletionJob(principal=PRINCIPAL, body=msgspec.Raw(msgspec.json.encode(body)), **extra)


def chat_body(model: str, text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def complete(bus: Bus, body: dict[str, Any]) -> dict[str, Any]:
    raw = await bus.call_raw(subjects.CHAT_COMPLETE, msgspec.json.encode(job(body)), timeout=10)
    reply: dict[str, Any] = msgspec.json.decode(raw)
    return reply


@dataclass
class Stream:
    messages: list[bytes] = field(default_factory=list)  # the SSE bodies as published
    end: StreamEnd | None = None
    stream_id: str = ""

    @property
    def events(self) -> list[bytes]:
        """Every `data:` payload in order."""
        payloads = []
        for block in b"".join(self.messages).split(b"\n\n"):
            if block:
                assert block.startswith(b"data: "), block
                payloads.append(block[6:])
        return payloads

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(e) for e in self.events if e != b"[DONE]"]


@asynccontextmanager
async def open_stream(
    nc: Client,
    bus: Bus,
    body: dict[str, Any],
    *,
    first_in_reply: bool = False,
    tail_in_end: bool = False,
) -> AsyncIterator[tuple[StreamAccepted, Stream, Any]]:
    """Ask for a stream the way the gateway does: subscribe first, then request (with
    `first_in_reply`, the reply's `first` bytes are the stream's first message; with
    `tail_in_end`, the end message's `tail` is its last one)."""
    stream = Stream(stream_id=uuid.uuid4().hex)
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    try:
        accepted = await bus.call(
            subjects.CHAT_STREAM,
            job(
                body,
                stream_inbox=inbox,
                stream_id=stream.stream_id,
                first_in_reply=first_in_reply,
                tail_in_end=tail_in_end,
            ),
            timeout=10,
        )
        if accepted.first:
            stream.messages.append(accepted.first)

        async def collect(wait_seconds: float = 10) -> Stream:
            while True:
                msg = await subscription.next_msg(timeout=wait_seconds)
                if is_end(msg.headers):
                    stream.end = msgspec.json.decode(msg.data, type=StreamEnd)
                    if stream.end.tail:
                        stream.messages.append(stream.end.tail)
                    return stream
                stream.messages.append(msg.data)

        yield accepted, stream, collect
    finally:
        await subscription.unsubscribe()


@asynccontextmanager
async def open_pass_through(
    nc: Client, bus: Bus, method: Method, path: str, body: Any = None, *, admin: bool = False
) -> AsyncIterator[tuple[OllamaProxyAccepted, str, Subscription]]:
    """An OLLAMA_PROXY request the way the gateway makes it: its acceptance, its stream id
    (for a cancel) and the inbox its body and end message arrive on."""
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    principal = msgspec.structs.replace(PRINCIPAL, role="admin") if admin else PRINCIPAL
    stream_id = uuid.uuid4().hex
    try:
        accepted = await bus.call(
            subjects.OLLAMA_PROXY,
            OllamaProxyRequest(
                principal=principal,
                method=method,
                path=path,
                content_type="application/json" if body is not None else "",
                body=b"" if body is None else msgspec.json.encode(body),
                stream_inbox=inbox,
                stream_id=stream_id,
            ),
            timeout=10,
        )
        yield accepted, stream_id, subscription
    finally:
        await subscription.unsubscribe()


async def read_to_end(subscription: Subscription) -> tuple[bytes, OllamaProxyEnd]:
    """The rest of a pass-through's body, and its end message."""
    pieces = []
    while True:
        msg = await subscription.next_msg(timeout=10)
        if is_end(msg.headers):
            return b"".join(pieces), msgspec.json.decode(msg.data, type=OllamaProxyEnd)
        pieces.append(msg.data)


async def pass_through(
    nc: Client, bus: Bus, method: Method, path: str, body: Any = None, *, admin: bool = False
) -> tuple[OllamaProxyAccepted, bytes, OllamaProxyEnd]:
    """One whole OLLAMA_PROXY request: its status, body and end."""
    async with open_pass_through(nc, bus, method, path, body, admin=admin) as opened:
        accepted, _, subscription = opened
        body_bytes, end = await read_to_end(subscription)
    return accepted, body_bytes, end


async def list_models(bus: Bus, refresh: bool = False) -> ModelsReply:
    return await bus.call(subjects.MODELS_LIST, ModelsRequest(refresh=refresh), timeout=10)


Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[str]:
    """A TCP server whose bytes are written by hand (framings aiohttp would not send);
    each connection is closed when its `answer` returns."""

    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(answer_and_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def http_server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[object]]]:
    """An aiohttp server answering every request with `handler`; yields its base URL and
    the client address of every request it saw."""
    peers: list[object] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recording)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", peers
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key

"""`/ollama/<path>[/<url_idx>]`: Open WebUI's Ollama pass-through, relayed by the
inference-proxy (which owns the backend URLs) over a private NATS inbox.

The reply is streamed as it arrives, status and bytes unchanged (NDJSON stays NDJSON).
The paths that run a model (`contracts.ollama.METERED_PATHS`) count against the caller's
limits and are recorded in the usage ledger with the tokens the reply reported
(`prompt_eval_count` / `eval_count`), as a chat completion or an embedding is.
Request bodies are read whole (they are JSON, or a model blob) and bounded by what one
NATS message can carry.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
from aiohttp import web
from nats.aio.client import Client

from common.codec import decode, encode
from common.errors import RagwayError, forbidden
from contracts import subjects
from contracts.auth import Principal
from contracts.chat import BackendRef
from contracts.ollama import (
    METERED_PATHS,
    OllamaProxyAccepted,
    OllamaProxyEnd,
    OllamaProxyRequest,
    path_level,
)
from gateway import scopes
from gateway.metering import NO_TOKENS, Metered
from gateway.relay import relay_stream
from gateway.state import BUS, METER, Access, principal_of

PREFIX = "/ollama"
# base64 in the JSON request and the request's other fields must fit one NATS message
ENVELOPE_BYTES = 16 * 1024


def split_path(tail: str) -> tuple[str, int | None]:
    """`api/tags/1` → (`api/tags`, 1); `api/tags` → (`api/tags`, None)."""
    head, _, last = tail.rstrip("/").rpartition("/")
    if head and last.isdigit() and path_level(head) is not None:
        return head, int(last)
    return tail.rstrip("/"), None


def max_body(nc: Client) -> int:
    return max((nc.max_payload - ENVELOPE_BYTES) * 3 // 4, 0)


async def ollama(request: web.Request) -> web.StreamResponse:
    path, url_idx = split_path(request.match_info["path"])
    level = path_level(path)
    if level is None:
        raise RagwayError("not_found", f"Unknown Ollama API path: {PREFIX}/{path}")
    principal = principal_of(request)
    if level == "admin" and principal.role != "admin":
        raise forbidden("Only administrators may do this")
    bus = request.app[BUS]
    body = await request.read()
    if len(body) > max_body(bus.nc):
        raise RagwayError("too_large", "Request body too large for the Ollama pass-through")
    named = _require_models(principal, body)
    proxied = OllamaProxyRequest(
        principal=principal,
        method=request.method,  # type: ignore[arg-type]  # the routes allow only these
        path=path,
        url_idx=url_idx,
        query=request.query_string,
        content_type=request.headers.get("Content-Type", "") if body else "",
        body=body,
        stream_inbox="",  # a mailbox's, once `relay_stream` opened one
        stream_id=uuid.uuid4().hex,
    )
    metered = await _meter(request, principal, path, body, named)
    sink = _OllamaSink(request, metered)
    try:
        await relay_stream(
            request,
            subjects.OLLAMA_PROXY,
            lambda inbox: msgspec.structs.replace(proxied, stream_inbox=inbox),
            subjects.OLLAMA_CANCEL,
            proxied.stream_id,
            sink,
        )
    except asyncio.CancelledError:
        if metered is not None:
            await metered.done(None, "cancelled")  # the estimate stands: it may have run
        raise
    except BaseException:
        if metered is not None:
            await metered.done(NO_TOKENS, "error")
        raise
    assert sink.response is not None  # started: relay_stream raises otherwise
    return sink.response


async def _meter(
    request: web.Request, principal: Principal, path: str, body: bytes, named: _Named | None
) -> Metered | None:
    """A request that runs a model counts against the caller's limits (429 before it is
    sent) and is recorded in the usage ledger, like a chat completion or an embedding."""
    kind = METERED_PATHS.get(path)
    if kind is None:
        return None
    if named is None:
        named = _read_named(body)
    model = named.model if isinstance(named.model, str) else ""
    model = model or (named.name if isinstance(named.name, str) else "")
    # Ollama's own routes stream unless told not to; its OpenAI ones only when told to
    stream = named.stream is not False if path.startswith("api/") else named.stream is True
    return await request.app[METER].start(
        principal,
        model,
        body_bytes=len(body),
        max_tokens=0 if kind == "embedding" else None,
        stream=stream,
        kind=kind,
    )


def _read_named(body: bytes) -> _Named:
    if not body:
        return _Named()
    try:
        return decode(body, _Named)
    except msgspec.DecodeError:
        return _Named()  # the backend says what is wrong with it


class _Named(msgspec.Struct):
    """The fields an Ollama request names a model in (`name`: older clients)."""

    model: Any = None
    name: Any = None
    source: Any = None
    destination: Any = None
    stream: Any = None


def _require_models(principal: Principal, body: bytes) -> _Named | None:
    """A model-scoped key: every model the request names must be one of its models, and
    a request that may name one must be readable JSON. The names read, when read."""
    if scopes.allowed_models(principal) is None or not body:
        return None
    try:
        named = decode(body, _Named)
    except msgspec.DecodeError:
        raise forbidden("This API key may only send JSON naming one of its models") from None
    for value in (named.model, named.name, named.source, named.destination):
        if value is not None:
            scopes.require_model(principal, str(value))
    return named


class _OllamaSink:
    """The backend's status, content type and bytes, unchanged; with `metered`, the
    ledger has the tokens the reply reported before its end goes out."""

    __slots__ = ("_metered", "_request", "_status", "response")

    def __init__(self, request: web.Request, metered: Metered | None) -> None:
        self._request = request
        self._metered = metered
        self._status = 0
        self.response: web.StreamResponse | None = None

    async def start(self, accepted: OllamaProxyAccepted) -> None:
        self._status = accepted.status
        response = self.response = web.StreamResponse(status=accepted.status)
        if accepted.content_type:
            response.headers["Content-Type"] = accepted.content_type
        await response.prepare(self._request)

    async def data(self, data: bytes, ending: bool) -> None:
        assert self.response is not None
        await self.response.write(data)

    async def end(self, body: bytes) -> None:
        assert self.response is not None
        end = decode(body, OllamaProxyEnd)
        if self._metered is not None:
            failed = end.error is not None or self._status >= 400
            await self._metered.done(
                end.usage or (NO_TOKENS if failed else None),
                "error" if failed else "ok",
                backend=None if end.backend is None else BackendRef(kind="ollama", idx=end.backend),
            )
        if end.error is not None:
            await self._fail(end.error)
        else:
            await self.response.write_eof()

    async def idle(self) -> None:
        if self._metered is not None:
            await self._metered.done(None, "error")
        await self._fail("The Ollama backend stopped responding")

    async def _fail(self, message: str) -> None:
        """A stream that broke: an NDJSON error line as Ollama sends one; otherwise the
        connection is dropped so the client sees a truncated body, not a complete one."""
        response = self.response
        assert response is not None
        if "ndjson" in (response.headers.get("Content-Type") or ""):
            await response.write(encode({"error": message}) + b"\n")
            await response.write_eof()
        elif self._request.transport is not None:
            self._request.transport.close()


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    resource = app.router.add_resource(PREFIX + "/{path:.+}", name="ollama")
    # HEAD is how the `ollama` SDK checks for a blob before uploading it
    for method in ("GET", "HEAD", "POST", "DELETE"):
        resource.add_route(method, ollama)
    access["ollama"] = "user"  # admin paths are checked in the handler (and the proxy)

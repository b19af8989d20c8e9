"""`/ollama/<path>[/<url_idx>]`: Open WebUI's Ollama pass-through, relayed by the
inference-proxy (which owns the backend URLs) over a private NATS inbox.

The reply is streamed as it arrives, status and bytes unchanged (NDJSON stays NDJSON).
Request bodies are read whole (they are JSON, or a model blob) and bounded by what one
NATS message can carry.
"""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import structlog
from aiohttp import web
from nats.aio.client import Client

from common.bus import Bus
from common.codec import decode, encode
from common.errors import RagwayError, forbidden
from contracts import subjects
from contracts.chat import STREAM_END, STREAM_HEADER
from contracts.ollama import OllamaProxyEnd, OllamaProxyRequest, path_level
from gateway.state import BUS, INBOXES, SETTINGS, Access, principal_of

log = structlog.get_logger()

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
    proxied = OllamaProxyRequest(
        principal=principal,
        method=request.method,  # type: ignore[arg-type]  # the routes allow only these
        path=path,
        url_idx=url_idx,
        query=request.query_string,
        content_type=request.headers.get("Content-Type", "") if body else "",
        body=body,
        stream_inbox="",  # a mailbox's, once `_relay` opened one
        stream_id=uuid.uuid4().hex,
    )
    return await _relay(request, proxied)


async def _relay(request: web.Request, proxied: OllamaProxyRequest) -> web.StreamResponse:
    """Ask the proxy, then copy the mailbox's bytes into the response until the end marker."""
    bus, settings = request.app[BUS], request.app[SETTINGS]
    finished = False
    # The mailbox listens before the proxy is asked, so no byte can arrive unheard.
    async with request.app[INBOXES].open() as box:
        proxied = msgspec.structs.replace(proxied, stream_inbox=box.subject)
        try:
            accepted = await bus.call_into(
                subjects.OLLAMA_PROXY, proxied, box, timeout=settings.completion_timeout_seconds
            )
            response = web.StreamResponse(status=accepted.status)
            if accepted.content_type:
                response.headers["Content-Type"] = accepted.content_type
            await response.prepare(request)
            idle = settings.stream_idle_timeout_seconds
            while not finished:
                try:
                    async with asyncio.timeout(idle):
                        batch = await box.batch()
                except TimeoutError:
                    log.warning("ollama_idle_timeout", stream_id=proxied.stream_id)
                    await _fail(request, response, "The Ollama backend stopped responding")
                    return response
                pieces: list[bytes] = []
                for msg in batch:
                    if msg.headers and msg.headers.get(STREAM_HEADER) == STREAM_END:
                        finished = True
                        end = decode(msg.data, OllamaProxyEnd)
                        if pieces:
                            await response.write(b"".join(pieces))
                        if end.error is not None:
                            await _fail(request, response, end.error)
                            return response
                        break
                    pieces.append(msg.data)
                else:
                    await response.write(b"".join(pieces))
            await response.write_eof()
            return response
        finally:
            if not finished:
                await _cancel(bus, proxied.stream_id)


async def _fail(request: web.Request, response: web.StreamResponse, message: str) -> None:
    """A stream that broke: an NDJSON error line as Ollama sends one; otherwise the
    connection is dropped so the client sees a truncated body, not a complete one."""
    if "ndjson" in (response.headers.get("Content-Type") or ""):
        await response.write(encode({"error": message}) + b"\n")
        await response.write_eof()
    elif request.transport is not None:
        request.transport.close()


async def _cancel(bus: Bus, stream_id: str) -> None:
    try:
        await asyncio.shield(bus.publish(subjects.OLLAMA_CANCEL, None, token=stream_id))
    except Exception:
        log.warning("ollama_cancel_failed", stream_id=stream_id)


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    resource = app.router.add_resource(PREFIX + "/{path:.+}", name="ollama")
    # HEAD is how the `ollama` SDK checks for a blob before uploading it
    for method in ("GET", "HEAD", "POST", "DELETE"):
        resource.add_route(method, ollama)
    access["ollama"] = "user"  # admin paths are checked in the handler (and the proxy)

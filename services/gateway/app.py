"""The gateway's aiohttp app and its lifetime: NATS connection, listeners, HTTP site."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from aiohttp import web

from catalog.buckets import Bucket
from catalog.files import FileCatalog
from catalog.jobs import ensure_stream
from catalog.presets import PresetStore
from common.bus import Bus
from common.inbox import Inboxes
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts import subjects
from contracts.subjects import GATEWAY_SERVICE
from gateway import (
    health,
    routes_auth,
    routes_chat,
    routes_chats,
    routes_config,
    routes_console,
    routes_docs,
    routes_embeddings,
    routes_file_edits,
    routes_files,
    routes_functions,
    routes_groups,
    routes_ingest,
    routes_knowledge,
    routes_limits,
    routes_metrics,
    routes_ollama,
    routes_presets,
    routes_retrieval,
)
from gateway.identity import Identity
from gateway.ledger import Ledger
from gateway.limiter import Limiter
from gateway.limits import LimitBook
from gateway.metering import Meter
from gateway.metrics import GatewayMetrics
from gateway.middleware import add_request_id_header, authenticate, request_context
from gateway.presets import Presets
from gateway.settings import Settings
from gateway.state import (
    ACCESS,
    BUS,
    CATALOG,
    IDENTITY,
    INBOXES,
    METER,
    METRICS,
    PRESETS,
    SETTINGS,
    Access,
)

__all__ = ["GatewayHandle", "Settings", "build_app", "serve"]

log = structlog.get_logger()

MIB = 1024 * 1024

# each module registers its routes and declares who may call them
ROUTE_MODULES = (
    health,
    routes_auth,
    routes_chat,
    routes_chats,
    routes_config,
    routes_console,
    routes_docs,
    routes_embeddings,
    routes_file_edits,
    routes_files,
    routes_functions,
    routes_groups,
    routes_ingest,
    routes_knowledge,
    routes_metrics,
    routes_limits,
    routes_ollama,
    routes_presets,
    routes_retrieval,
)
# limits are known before the first request is served (bounded: a slow bus starts anyway)
LIMITS_LOAD_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class GatewayHandle:
    """What a running gateway exposes to whoever started it (tests, embedded runs)."""

    url: str
    port: int
    app: web.Application


def build_app(settings: Settings, bus: Bus, identity: Identity) -> web.Application:
    app = web.Application(
        middlewares=[request_context, authenticate],
        client_max_size=settings.max_body_mb * MIB,
    )
    app[SETTINGS] = settings
    app[BUS] = bus
    app[IDENTITY] = identity
    app[METRICS] = GatewayMetrics()
    access: dict[str, Access] = {}
    for module in ROUTE_MODULES:
        module.add_routes(app, access)
    app[ACCESS] = access
    app.on_response_prepare.append(add_request_id_header)
    app.cleanup_ctx.append(_auth_listeners)
    app.cleanup_ctx.append(_inboxes)
    app.cleanup_ctx.append(_file_store)
    app.cleanup_ctx.append(_controls)
    return app


async def _auth_listeners(app: web.Application) -> AsyncIterator[None]:
    """Invalidate cached principals on auth events; fetch JWT params in the background."""
    identity = app[IDENTITY]
    sub = await app[BUS].nc.subscribe(subjects.AUTH_EVENTS.subject, cb=identity.on_event)
    identity.listen(sub)
    fetch = asyncio.create_task(identity.fetch_jwt_params_until_ready())
    yield
    fetch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await fetch
    with contextlib.suppress(Exception):
        await sub.unsubscribe()


async def _inboxes(app: web.Application) -> AsyncIterator[None]:
    """Subscribed at startup, so the first stream does not pay for it."""
    inboxes = app[INBOXES] = Inboxes(app[BUS].nc)
    await inboxes.start()
    yield
    await app[INBOXES].close()


async def _file_store(app: web.Application) -> AsyncIterator[None]:
    """File records and blobs in JetStream, and the ingestion job stream (made if missing)."""
    settings = app[SETTINGS]
    js = app[BUS].nc.jetstream(timeout=app[SETTINGS].request_timeout_seconds)
    app[CATALOG] = await FileCatalog.open(js, settings.bucket_prefix, settings.kv_replicas)
    await ensure_stream(js, settings.ingest_stream, settings.ingest_subject, settings.kv_replicas)
    store = await PresetStore.open(js, settings.bucket_prefix, settings.kv_replicas)
    app[PRESETS] = Presets(store, app[BUS], app[CATALOG], settings.request_timeout_seconds)
    yield
    await store.aclose()


async def _controls(app: web.Application) -> AsyncIterator[None]:
    """Limits (mirrored from KV, counters reserved in blocks) and the usage ledger."""
    settings = app[SETTINGS]
    js = app[BUS].nc.jetstream(timeout=settings.request_timeout_seconds)
    prefix, replicas = settings.bucket_prefix, settings.kv_replicas
    limiter: Limiter | None = None
    ledger: Ledger | None = None
    background: list[asyncio.Task[None]] = []
    if settings.limits_enabled:
        book = LimitBook(await Bucket.open(js, f"{prefix}_limits", replicas))
        usage = await Bucket.open(js, f"{prefix}_limit_usage", replicas)
        limiter = Limiter(book, usage, stream_slot_seconds=settings.completion_timeout_seconds + 60)
        background += [
            asyncio.create_task(book.follow()),
            asyncio.create_task(limiter.run_flusher()),
        ]
        try:
            await asyncio.wait_for(book.ready.wait(), LIMITS_LOAD_SECONDS)
        except TimeoutError:
            log.warning("limits_not_loaded", waited_s=LIMITS_LOAD_SECONDS)
    if settings.usage_ledger:
        ledger = Ledger(js, prefix)
        await ledger.ensure(replicas)
    app[METER] = Meter(limiter, ledger, settings.completion_estimate_tokens, app[METRICS])
    yield
    for task in background:
        task.cancel()
    for task in background:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if limiter is not None:
        await limiter.aclose()


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[GatewayHandle]:
    """Connect to NATS, serve HTTP on settings.host:port, drain on exit."""
    on_reconnect: list[Callable[[], Awaitable[None]]] = []

    async def reconnected() -> None:
        for hook in on_reconnect:
            await hook()

    async with (
        connect_nats(
            settings.nats_servers(), "gateway", on_reconnect=reconnected, auth=settings.nats_auth()
        ) as nc,
        # no NATS endpoints: registering still gives the gateway `$SRV.PING/INFO/STATS`
        ServiceHost(nc, GATEWAY_SERVICE, description="ragway HTTP gateway"),
    ):
        bus = Bus(nc)
        identity = Identity(
            bus,
            cache_seconds=settings.auth_cache_seconds,
            timeout=settings.request_timeout_seconds,
        )
        on_reconnect.append(identity.on_reconnect)
        app = build_app(settings, bus, identity)
        # cleanup() closes the socket (new clients are refused), closes idle keep-alive
        # connections, and waits up to the grace for requests in flight before cancelling.
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=None,
            lingering_time=1.0,
            shutdown_timeout=settings.shutdown_grace_seconds,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            port = int(runner.addresses[0][1])
            url = f"http://{settings.host}:{port}"
            log.info("gateway_listening", url=url)
            yield GatewayHandle(url=url, port=port, app=app)
        finally:
            await runner.cleanup()

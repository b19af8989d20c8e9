"""Typed keys for what the aiohttp app and each request carry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from catalog.dead_letters import DeadLetters
from catalog.files import FileCatalog
from common.bus import Bus
from common.inbox import Inboxes
from contracts.auth import Principal
from gateway.identity import Identity
from gateway.metering import Meter
from gateway.metrics import GatewayMetrics
from gateway.presets import Presets
from gateway.settings import Settings

# Who may call a route: anyone; any signed-in user, pending included; active users; admins.
Access = Literal["public", "any", "user", "admin"]
# (method, path, route name, handler): one row of a routes module's table
Route = tuple[str, str, str, Handler]


def add_route_table(
    app: web.Application, access: dict[str, Access], table: Sequence[Route], level: Access
) -> None:
    """Add every row as a named route that `level` may call (the access middleware and
    the security sweeps read `access` by route name)."""
    for method, path, name, handler in table:
        app.router.add_route(method, path, handler, name=name)
        access[name] = level


SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
IDENTITY = web.AppKey("identity", Identity)
ACCESS = web.AppKey("access", dict[str, Access])
# the private inboxes streamed replies (chat, Ollama pass-through) arrive on
INBOXES = web.AppKey("inboxes", Inboxes)
# opened at startup (cleanup_ctx): file records and blobs in JetStream
CATALOG = web.AppKey("catalog", FileCatalog)
# opened at startup (routes_ingest): the ingestion dead letters
DEAD_LETTERS = web.AppKey("dead_letters", DeadLetters)
# opened at startup: limits and the usage ledger (either may be switched off)
METER = web.AppKey("meter", Meter)
# opened at startup: workspace models, mirrored from their bucket
PRESETS = web.AppKey("presets", Presets)

# counters and histograms, updated per request; read by GET /metrics
METRICS = web.AppKey("metrics", GatewayMetrics)

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]

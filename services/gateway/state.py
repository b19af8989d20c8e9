"""Typed keys for what the aiohttp app and each request carry."""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from catalog.files import FileCatalog
from common.bus import Bus
from common.inbox import Inboxes
from contracts.auth import Principal
from gateway.identity import Identity
from gateway.metrics import GatewayMetrics
from gateway.presets import Presets
from gateway.settings import Settings

# Who may call a route: anyone; any signed-in user, pending included; active users; admins.
Access = Literal["public", "any", "user", "admin"]

SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
IDENTITY = web.AppKey("identity", Identity)
ACCESS = web.AppKey("access", dict[str, Access])
# the private inboxes streamed replies (chat, Ollama pass-through) arrive on
INBOXES = web.AppKey("inboxes", Inboxes)
# opened at startup (cleanup_ctx): file records and blobs in JetStream
CATALOG = web.AppKey("catalog", FileCatalog)
# opened at startup: workspace models, mirrored from their bucket
PRESETS = web.AppKey("presets", Presets)

# counters and histograms, updated per request; read by GET /metrics
METRICS = web.AppKey("metrics", GatewayMetrics)

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
# time.perf_counter() when the request arrived (time to first token counts from here)
STARTED = web.RequestKey("started", float)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]

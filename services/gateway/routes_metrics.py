"""GET /metrics: the gateway's own counters and, gathered at scrape time, the stack's."""

from __future__ import annotations

import asyncio

from aiohttp import web

from contracts.subjects import GATEWAY_SERVICE, metrics_subject, stats_subject
from gateway import metrics
from gateway.errors import error_response
from gateway.health import services_to_check
from gateway.state import BUS, METRICS, SETTINGS, Access


async def scrape(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not metrics.authorized(request, settings.metrics_token):
        return error_response(401, "A valid metrics token is required")
    nc = request.app[BUS].nc
    # the services /health checks (every backend unless configured), and the gateways
    names = (*services_to_check(settings.health_services), GATEWAY_SERVICE)
    subjects = [*map(stats_subject, names), *map(metrics_subject, names)]
    replies, queue = await asyncio.gather(
        metrics.gather(nc, subjects, settings.metrics_stats_window_seconds),
        metrics.queue_families(
            nc, settings.ingest_stream, settings.ingest_consumer, settings.request_timeout_seconds
        ),
    )
    families = [
        *metrics.stats_families(metrics.decoded_stats(replies)),
        *metrics.service_families(replies),
        *queue,
    ]
    body = metrics.exposition(request.app[METRICS], families)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    app.router.add_get("/metrics", scrape, name="metrics")
    # public to the auth middleware: the scraper's own token (if any) is checked above
    access["metrics"] = "public"

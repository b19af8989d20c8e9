"""GET /health: every backend service answers a nats.micro ping, or we say who did not."""

from __future__ import annotations

import asyncio

from aiohttp import web

from common.errors import RagwayError
from contracts.subjects import BACKEND_SERVICES
from gateway.bodies import json_value
from gateway.errors import error_response
from gateway.state import BUS, SETTINGS, Access


def services_to_check(configured: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in configured.split(",") if name.strip())
    return names or BACKEND_SERVICES


async def _answers(request: web.Request, name: str, wait_seconds: float) -> bool:
    try:
        await request.app[BUS].ping(name, timeout=wait_seconds)
    except RagwayError:
        return False
    return True


async def health(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    names = services_to_check(settings.health_services)
    answered = await asyncio.gather(
        *(_answers(request, name, settings.health_timeout_seconds) for name in names)
    )
    services = dict(zip(names, answered, strict=True))
    missing = [name for name, ok in services.items() if not ok]
    if missing:
        return error_response(503, f"Services not answering: {', '.join(missing)}")
    return json_value({"status": True, "services": services})


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    app.router.add_get("/health", health, name="health")
    access["health"] = "public"

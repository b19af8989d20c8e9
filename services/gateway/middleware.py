"""Request context, the error mapping and authentication: every request passes here."""

from __future__ import annotations

import asyncio
import re
import time

import nats.errors
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from common import tracing
from common.bus import BUS_FAILURES, BUS_UNAVAILABLE, new_request_id, request_id_var
from common.errors import RagwayError, forbidden, unauthorized
from gateway.console_session import session_credential
from gateway.errors import error_response, status_for
from gateway.limiter import RateLimited
from gateway.state import ACCESS, BUS, IDENTITY, METRICS, PRINCIPAL, REQUEST_ID

log = structlog.get_logger()

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# error codes that say a service behind the gateway failed (counted as backend errors)
BACKEND_FAILURES = frozenset({"internal", "bad_gateway", "unavailable", "timeout"})


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def route_name_of(request: web.Request) -> str:
    """The aiohttp route's name: a bounded label, never the raw path (ids stay out)."""
    route = request.match_info.route
    if route.resource is None:
        return "unmatched"
    return route.name or route.resource.canonical


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, error mapping and the one canonical log line per request."""
    started = time.perf_counter()
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _SANE_REQUEST_ID.match(given) else new_request_id()
    request[REQUEST_ID] = request_id
    request_id_var.set(request_id)
    route = route_of(request)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, route=route)
    status = 500
    try:
        if tracing.enabled():
            response = await _traced(request, handler, route)
        else:
            response = await _mapped(request, handler)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499  # the client went away
        raise
    finally:
        seconds = time.perf_counter() - started
        request.app[METRICS].request_done(route_name_of(request), request.method, status, seconds)
        principal = request.get(PRINCIPAL)
        log.info(
            "http_request",
            method=request.method,
            status=status,
            duration_ms=round(seconds * 1000, 2),
            user_id=principal.id if principal is not None else None,
        )


async def _traced(request: web.Request, handler: Handler, route: str) -> web.StreamResponse:
    """The request as a server span (continuing a client's `traceparent`, if it sent one)."""
    attributes = {"http.request.method": request.method, "http.route": route}
    name = f"{request.method} {route}"
    with tracing.served(name, request.headers, attributes) as current:
        response = await _mapped(request, handler)
        current.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            tracing.set_error(current, str(response.status))
        return response


async def _mapped(request: web.Request, handler: Handler) -> web.StreamResponse:
    bus = request.app.get(BUS)
    if bus is not None and not bus.nc.is_connected:
        # Nothing works without the bus: say so at once rather than after a timeout.
        return error_response(503, BUS_UNAVAILABLE)
    try:
        return await handler(request)
    except RateLimited as exc:
        request.app[METRICS].limit_hit(exc.dimension)
        return error_response(429, exc.detail, {"Retry-After": str(exc.retry_after)})
    except RagwayError as exc:
        if exc.code in BACKEND_FAILURES:
            request.app[METRICS].upstream_error(exc.code)
        return error_response(status_for(exc.code), exc.detail)
    except nats.errors.TimeoutError:  # JetStream (KV, object store) calls that got no answer
        log.warning("bus_timeout")
        request.app[METRICS].upstream_error("timeout")
        return error_response(504, "The message bus did not answer in time")
    except BUS_FAILURES as exc:
        log.warning("bus_failure", error=repr(exc))
        request.app[METRICS].upstream_error("unavailable")
        return error_response(503, BUS_UNAVAILABLE)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "Request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, exc.reason, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("request_failed")
        return error_response(500, "Internal error")


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the bearer credential (or the console's cookie) and enforce the access level."""
    route = request.match_info.route
    if route.resource is None:  # unknown route or wrong method: let aiohttp answer
        return await handler(request)
    access = request.app[ACCESS].get(route.name or "", "user")
    if access == "public":
        return await handler(request)
    authorization = request.headers.get("Authorization")
    if authorization is None:  # API clients never get here: only the console's cookie
        credential = session_credential(request)
    else:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthorized("Not authenticated")
    principal = await request.app[IDENTITY].principal_for(credential)
    request[PRINCIPAL] = principal
    structlog.contextvars.bind_contextvars(user_id=principal.id)
    if principal.role == "pending" and access != "any":
        raise forbidden("Your account is pending activation by an administrator")
    if access == "admin" and principal.role != "admin":
        raise forbidden("Only administrators may do this")
    return await handler(request)


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: streamed replies get the header too, before it is sent."""
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id

"""The web console: its page at `/`, its assets under `/console/`, and its cookie session.

The console (services/gateway/console/) is plain ES modules and CSS, committed as they
are served: no build step, nothing fetched from elsewhere at run time. It calls the
public JSON API like any client; its only routes of its own set and clear the session
cookie (`gateway.console_session`), so its scripts never hold a token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiohttp import web

from contracts.auth import Role, Session
from gateway.bodies import TRUE, json_bytes, json_value, parse
from gateway.console_session import (
    clear_session_cookie,
    require_console_request,
    set_session_cookie,
)
from gateway.routes_auth import sign_in, sign_up
from gateway.state import Access, add_route_table

ASSET_DIR = Path(__file__).parent / "console"
PAGE = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Scripts and styles only from the console's own files: no inline script or style, no
# eval, nothing from another origin; the API is the only thing it connects to.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # small files: revalidate each time (a 304), so an upgraded gateway serves new ones
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


ASSETS = web.AppKey("console_assets", dict[str, Asset])


class ConsoleUser(msgspec.Struct, kw_only=True):
    """What a console sign-in answers: the session's user, never its token."""

    id: str
    email: str
    name: str
    role: Role
    expires_at: int


def load_assets(directory: Path) -> dict[str, Asset]:
    """Every servable file of the console directory by name (the directory is flat)."""
    assets: dict[str, Asset] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path.name] = Asset(body, content_type, etag)
    return assets


def _serve(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


async def console_page(request: web.Request) -> web.Response:
    return _serve(request, request.app[ASSETS][PAGE])


async def console_asset(request: web.Request) -> web.Response:
    asset = request.app[ASSETS].get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound(reason="Not Found")
    return _serve(request, asset)


def _signed_in(request: web.Request, reply: bytes) -> web.Response:
    """The user (no token) as the reply; the token goes into the session cookie."""
    session = parse(reply, Session)
    response = json_value(
        ConsoleUser(
            id=session.id,
            email=session.email,
            name=session.name,
            role=session.role,
            expires_at=session.expires_at,
        )
    )
    set_session_cookie(request, response, session.token, session.expires_at)
    return response


async def create_session(request: web.Request) -> web.Response:
    require_console_request(request)
    return _signed_in(request, await sign_in(request))


async def create_account(request: web.Request) -> web.Response:
    require_console_request(request)
    return _signed_in(request, await sign_up(request))


async def end_session(request: web.Request) -> web.Response:
    require_console_request(request)
    response = json_bytes(TRUE)
    clear_session_cookie(request, response)
    return response


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    assets = load_assets(ASSET_DIR)
    if PAGE not in assets:
        raise RuntimeError(f"the console's {PAGE} is missing from {ASSET_DIR}")
    app[ASSETS] = assets
    table = [
        ("GET", "/", "console", console_page),
        ("POST", "/console/session", "console_signin", create_session),
        ("DELETE", "/console/session", "console_signout", end_session),
        ("POST", "/console/signup", "console_signup", create_account),
        ("GET", "/console/{name}", "console_asset", console_asset),
    ]
    add_route_table(app, access, table, "public")

"""Roles over the whole route table: admin-only routes are 403 to users, and a `pending`
user can do nothing but sign in and read `GET /api/v1/auths/`.

Both sweeps read the routes from the router and the levels from the gateway's access
table, so a new route is checked the day it appears.
"""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from contracts.ollama import ADMIN_PATHS
from gateway.state import ACCESS
from tests.support.stack import PASSWORD, Account, Stack

pytestmark = pytest.mark.security

PARAM = re.compile(r"{(\w+)(:[^}]*)?}")
# The only routes a pending (or anonymous) caller reaches; changing these is a decision.
PUBLIC = {
    "signup",
    "signin",
    "health",
    "openapi",
    "docs",
    "docs_static",
    "api_version",
    "api_config",
}
# The web console's page, its assets, and its session routes (sign in, sign up and sign
# out: these set or clear the cookie, and refuse requests without the console's header).
# Prometheus scrapes: no user credential; its own bearer token when RAGWAY_METRICS_TOKEN is
# set (tests/gateway/test_metrics.py), and nothing in it names users, ids or content.
PUBLIC |= {"metrics"}
PUBLIC |= {"console", "console_asset", "console_signin", "console_signout", "console_signup"}
ANY_SIGNED_IN = {"current_user", "update_password", "signout", "signout_post"}


def routes_by_level(app: web.Application) -> dict[str, list[tuple[str, str, str]]]:
    """level -> (name, method, concrete path) for every route (placeholders filled)."""
    access = app[ACCESS]
    levels: dict[str, list[tuple[str, str, str]]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        name = route.name or resource.name or ""
        path = PARAM.sub("x", resource.canonical)
        levels.setdefault(access.get(name, "user"), []).append((name, route.method, path))
    return levels


async def _status(stack: Stack, account: Account, method: str, path: str) -> tuple[int, str]:
    body = None if method in ("GET", "HEAD", "DELETE") else {}
    async with stack.http.request(
        method, stack.url + path, headers=account.jwt_auth, json=body
    ) as reply:
        text = await reply.text()
        return reply.status, text


def test_only_sign_in_sign_up_health_docs_and_the_console_are_public(second: Stack) -> None:
    levels = routes_by_level(second.gateway.app)
    assert {name for name, _, _ in levels["public"]} == PUBLIC
    assert {name for name, _, _ in levels["any"]} == ANY_SIGNED_IN
    assert levels["admin"], "the access table names admin-only routes"


async def test_admin_only_routes_are_403_to_users(second: Stack, user: Account) -> None:
    admin_routes = routes_by_level(second.gateway.app)["admin"]
    for name, method, path in admin_routes:
        status, text = await _status(second, user, method, path)
        assert status == 403, (name, method, path, text)
        if method != "HEAD":
            assert "administrators" in text.lower(), text
    for path in sorted(ADMIN_PATHS):  # admin paths inside the Ollama pass-through
        status, text = await _status(second, user, "POST", f"/ollama/{path}")
        assert status == 403, (path, text)


async def test_a_pending_user_is_refused_everywhere_but_its_own_profile(
    stack: Stack, second: Stack
) -> None:
    pending = await stack.signup(role="pending")
    levels = routes_by_level(second.gateway.app)
    refused = [route for level in ("user", "admin") for route in levels[level]]
    assert len(refused) > 40
    for name, method, path in refused:
        status, text = await _status(second, pending, method, path)
        assert status == 403, (name, method, path, text)
        if method != "HEAD":
            assert "pending" in text, text
    status, session = await stack.call(
        "POST", "/api/v1/auths/signin", json={"email": pending.email, "password": PASSWORD}
    )
    assert (status, session["role"]) == (200, "pending")
    status, me = await second.call("GET", "/api/v1/auths/", headers=pending.jwt_auth)
    assert (status, me["id"], me["role"]) == (200, pending.id, "pending")


async def test_a_user_cannot_promote_itself_or_demote_the_admin(
    stack: Stack, admin: Account, user: Account
) -> None:
    for target in (user.id, admin.id):
        status, _ = await stack.call(
            "POST",
            f"/api/v1/users/{target}/update",
            headers=user.key_auth,
            json={"role": "admin"},
        )
        assert status == 403
    status, me = await stack.call("GET", "/api/v1/auths/", headers=user.key_auth)
    assert me["role"] == "user"
    status, me = await stack.call("GET", "/api/v1/auths/", headers=admin.key_auth)
    assert me["role"] == "admin"

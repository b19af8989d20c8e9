"""Who may create an account: Open WebUI's defaults (`pending` users, ENABLE_SIGNUP), the
admin's `POST /api/v1/auths/add`, and a sign-up limit per client address.

Each test runs auth as a deployment would configure it (defaults unless the test is about
a setting), with a gateway that trusts 127.0.0.1 as a reverse proxy so X-Forwarded-For
names the client. Each gets a nats-server of its own: auth instances with different
settings on one server would share a queue group and answer each other's requests.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from stack.nats_server import NatsServer, NatsServerConfig, free_port

pytestmark = pytest.mark.security

PASSWORD = "correct horse battery"


@dataclass
class Accounts:
    http: aiohttp.ClientSession
    url: str

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str = "",
        via: str = "192.0.2.1",
        json: Any = None,
    ) -> tuple[int, Any]:
        headers = {"X-Forwarded-For": via}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url + path, headers=headers, json=json) as reply:
            return reply.status, await reply.json()

    async def signup(self, via: str = "192.0.2.1") -> tuple[int, Any]:
        email = f"acct-{uuid.uuid4().hex[:10]}@example.test"
        body = {"name": "New", "email": email, "password": PASSWORD}
        return await self.call("POST", "/api/v1/auths/signup", via=via, json=body)


@contextlib.asynccontextmanager
async def accounts(store: Path, **auth: Any) -> AsyncIterator[Accounts]:
    """nats-server, auth with `auth` over its defaults, and a gateway behind a 'proxy'."""
    server = NatsServer(NatsServerConfig(port=free_port(), store_dir=store))
    await server.astart()
    try:
        settings = AuthSettings(
            nats_url=server.url,
            jwt_secret="accounts-" + "q" * 40,
            password_time_cost=1,
            password_memory_kib=8,
            **auth,
        )
        gateway = GatewaySettings(nats_url=server.url, port=0, trusted_proxies="127.0.0.1")
        async with (
            serve_auth(settings),
            serve_gateway(gateway) as handle,
            aiohttp.ClientSession() as http,
        ):
            yield Accounts(http, handle.url)
    finally:
        await server.astop()


async def test_users_after_the_first_wait_pending_until_an_admin_activates_them(
    tmp_path: Path,
) -> None:
    async with accounts(tmp_path) as api:
        status, admin = await api.signup()
        assert (status, admin["role"]) == (200, "admin")
        status, newcomer = await api.signup()
        assert (status, newcomer["role"]) == (200, "pending")
        # signed in, but nothing else until activated
        status, body = await api.call("GET", "/api/models", token=newcomer["token"])
        assert status == 403 and "pending" in body["detail"], body
        status, body = await api.call("POST", "/api/v1/auths/api_key", token=newcomer["token"])
        assert status == 403, body
        status, _ = await api.call(
            "POST",
            f"/api/v1/users/{newcomer['id']}/update",
            token=admin["token"],
            json={"role": "user"},
        )
        assert status == 200
        status, body = await api.call("POST", "/api/v1/auths/api_key", token=newcomer["token"])
        assert status == 200, body


async def test_closed_sign_up_still_makes_the_first_admin_and_admins_add_users(
    tmp_path: Path,
) -> None:
    async with accounts(tmp_path, enable_signup=False) as api:
        status, admin = await api.signup()
        assert (status, admin["role"]) == (200, "admin")
        status, body = await api.signup()
        assert status == 403 and "disabled" in body["detail"], body
        email = f"added-{uuid.uuid4().hex[:8]}@example.test"
        form = {"name": "Added", "email": email, "password": PASSWORD, "role": "user"}
        status, added = await api.call("POST", "/api/v1/auths/add", token=admin["token"], json=form)
        assert status == 200, added
        assert (added["email"], added["role"], added["token_type"]) == (email, "user", "Bearer")
        # the added user works at once, with the token it was given and by signing in
        status, me = await api.call("GET", "/api/v1/auths/", token=added["token"])
        assert (status, me["id"]) == (200, added["id"])
        status, session = await api.call(
            "POST", "/api/v1/auths/signin", json={"email": email, "password": PASSWORD}
        )
        assert (status, session["id"]) == (200, added["id"])
        # only admins add users; a taken email is Open WebUI's 400
        form["email"] = f"other-{uuid.uuid4().hex[:8]}@example.test"
        status, body = await api.call("POST", "/api/v1/auths/add", token=added["token"], json=form)
        assert status == 403, body
        status, body = await api.call(
            "POST", "/api/v1/auths/add", token=admin["token"], json={**form, "email": email}
        )
        assert status == 400 and "already registered" in body["detail"], body


async def test_an_added_user_is_pending_unless_the_admin_says_otherwise(
    tmp_path: Path,
) -> None:
    async with accounts(tmp_path, enable_signup=False) as api:
        _, admin = await api.signup()
        form = {"name": "Added", "email": f"p-{uuid.uuid4().hex[:8]}@example.test"}
        status, added = await api.call(
            "POST", "/api/v1/auths/add", token=admin["token"], json={**form, "password": PASSWORD}
        )
        assert (status, added["role"]) == (200, "pending")


async def test_sign_ups_are_limited_per_client_address(tmp_path: Path) -> None:
    async with accounts(tmp_path, signup_max_per_address=3) as api:
        flood, other = "203.0.113.50", "203.0.113.51"
        for _ in range(3):
            status, body = await api.signup(via=flood)
            assert status == 200, body
        status, body = await api.signup(via=flood)
        assert status == 429 and "sign-ups" in body["detail"], body
        status, body = await api.signup(via=other)
        assert status == 200, body

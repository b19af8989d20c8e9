"""Sign-in brute force is limited (429) per email *and* client address, and per address;
an attacker's failures never lock the owner out from the owner's own address.

Its own small stack (two auth instances and two gateways on a nats-server of this
module), because the limits it trips would lock 127.0.0.1 out of every other test's
sign-ins. NATS spreads sign-ins over both auth instances at random: the limits hold
only because the instances share their counts. One gateway
trusts a reverse proxy at 127.0.0.1 (so X-Forwarded-For names the client), the other
trusts no one (so the header changes nothing).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from gateway.client_addr import client_address
from stack.nats_server import NatsServer

pytestmark = pytest.mark.security

PASSWORD = "correct horse battery"
MAX_FAILURES = 3  # per email and address
ADDRESS_MAX_FAILURES = 5  # per address, over every email


@dataclass
class Gateways:
    http: aiohttp.ClientSession
    direct: str  # trusts no proxy
    proxied: str  # trusts 127.0.0.1 as a reverse proxy

    async def signin(self, url: str, email: str, password: str, via: str | None = None) -> int:
        headers = {"X-Forwarded-For": via} if via else None
        async with self.http.post(
            f"{url}/api/v1/auths/signin",
            json={"email": email, "password": password},
            headers=headers,
        ) as reply:
            body = await reply.json()
            assert set(body) >= {"detail"} or reply.status == 200, body
            return reply.status

    async def signup(self) -> str:
        email = f"limit-{uuid.uuid4().hex[:10]}@example.test"
        async with self.http.post(
            f"{self.direct}/api/v1/auths/signup",
            json={"name": "Limited", "email": email, "password": PASSWORD},
        ) as reply:
            assert reply.status == 200, await reply.text()
        return email


@pytest.fixture(scope="module")
async def gateways(nats_server: NatsServer) -> AsyncIterator[Gateways]:
    url = nats_server.url
    auth = AuthSettings(
        nats_url=url,
        bucket_prefix=f"limits{uuid.uuid4().hex[:8]}",
        jwt_secret="limits-" + "z" * 40,
        signin_max_failures=MAX_FAILURES,
        signin_max_failures_per_address=ADDRESS_MAX_FAILURES,
        # long enough that no test here waits one out (no timing in assertions)
        signin_backoff_seconds=60,
        signin_failure_window_seconds=600,
        signup_max_per_address=100_000,
        default_user_role="user",
        password_time_cost=1,
        password_memory_kib=8,
        password_parallelism=1,
    )
    async with contextlib.AsyncExitStack() as running:
        for _ in range(2):  # scaled out: each sign-in goes to either instance
            await running.enter_async_context(serve_auth(auth))
        direct = await running.enter_async_context(
            serve_gateway(GatewaySettings(nats_url=url, port=0))
        )
        proxied = await running.enter_async_context(
            serve_gateway(GatewaySettings(nats_url=url, port=0, trusted_proxies="127.0.0.1"))
        )
        http = await running.enter_async_context(aiohttp.ClientSession())
        yield Gateways(http, direct.url, proxied.url)


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    assert client_address("198.51.100.1", "203.0.113.9", "") == "198.51.100.1"
    assert client_address("198.51.100.1", "203.0.113.9", "127.0.0.1") == "198.51.100.1"
    assert client_address("127.0.0.1", "203.0.113.9", "127.0.0.1") == "203.0.113.9"
    # a client's own X-Forwarded-For comes first; the proxy appends the real peer last
    assert client_address("127.0.0.1", "1.2.3.4, 203.0.113.9", "127.0.0.0/8") == "203.0.113.9"
    assert client_address("10.0.0.2", "203.0.113.9, 10.0.0.1", "10.0.0.0/8") == "203.0.113.9"
    assert client_address("127.0.0.1", "not-an-ip", "127.0.0.1") == "127.0.0.1"
    assert client_address("127.0.0.1", None, "127.0.0.1") == "127.0.0.1"


async def test_an_attackers_failures_never_lock_the_owner_out(gateways: Gateways) -> None:
    """The finding: 429 on the owner's correct password after someone else failed."""
    email = await gateways.signup()
    attacker, owner = "198.51.100.66", "203.0.113.200"
    for _ in range(MAX_FAILURES):
        assert await gateways.signin(gateways.proxied, email, "wrong", attacker) == 401
    # the attacker's address now backs off, even with the right password ...
    assert await gateways.signin(gateways.proxied, email, PASSWORD, attacker) == 429
    # ... while the owner, from their own address, signs in at once, again and again
    for _ in range(2):
        assert await gateways.signin(gateways.proxied, email, PASSWORD, owner) == 200


async def test_guesses_from_one_address_at_one_account_back_off(gateways: Gateways) -> None:
    email = await gateways.signup()
    other = await gateways.signup()
    attacker = "198.51.100.77"
    for _ in range(MAX_FAILURES):
        assert await gateways.signin(gateways.proxied, email, "wrong", attacker) == 401
    async with gateways.http.post(
        f"{gateways.proxied}/api/v1/auths/signin",
        json={"email": email, "password": "wrong"},
        headers={"X-Forwarded-For": attacker},
    ) as reply:
        assert reply.status == 429
        detail = (await reply.json())["detail"]
    assert "try again in 60 s" in detail, detail  # the first step of the back-off
    # one more failure elsewhere from that address is still allowed (its own allowance)
    assert await gateways.signin(gateways.proxied, other, "wrong", attacker) == 401


async def test_failed_sign_ins_are_limited_per_client_address(gateways: Gateways) -> None:
    attacker, bystander = "203.0.113.7", "203.0.113.8"
    for _ in range(ADDRESS_MAX_FAILURES):  # one guess per account: no pair limit trips
        email = await gateways.signup()
        assert await gateways.signin(gateways.proxied, email, "wrong", attacker) == 401
    victim = await gateways.signup()
    assert await gateways.signin(gateways.proxied, victim, PASSWORD, attacker) == 429
    assert await gateways.signin(gateways.proxied, victim, PASSWORD, bystander) == 200


async def test_a_forged_forwarded_for_does_not_escape_the_address_limit(
    gateways: Gateways,
) -> None:
    """The direct gateway trusts no proxy: rotating the header still counts against the peer."""
    for n in range(ADDRESS_MAX_FAILURES):
        email = await gateways.signup()
        assert await gateways.signin(gateways.direct, email, "wrong", f"192.0.2.{n}") == 401
    victim = await gateways.signup()
    assert await gateways.signin(gateways.direct, victim, PASSWORD, "192.0.2.200") == 429

"""NATS refuses a client without credentials, and a service's credentials reach only its
own subjects: a second, real client on the launcher's nats-server config, beside the real
auth service logged in as itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from common.nats_conn import connect_nats
from common.settings import NatsAuth
from contracts import subjects
from contracts.auth import JwtParams, JwtParamsRequest
from tests.support.nats import SecuredNats, connect_refused, secured_nats

PREFIX = "natsauth"


@pytest.fixture(scope="module")
async def users(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecuredNats]:
    """A nats-server with every service's user, and the auth service logged in as `auth`."""
    async with secured_nats(tmp_path_factory.mktemp("natsauth"), PREFIX) as nats_users:
        settings = AuthSettings(
            **nats_users.login(subjects.AUTH_SERVICE),
            bucket_prefix=PREFIX,
            password_time_cost=1,
            password_memory_kib=8,
            password_parallelism=1,
        )
        async with serve_auth(settings):
            yield nats_users


class Client2:
    """A second client that records the server's errors (permission violations)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def error(self, exc: Exception) -> None:
        self.errors.append(str(exc).lower())

    @contextlib.asynccontextmanager
    async def connect(self, url: str, auth: NatsAuth) -> AsyncIterator[Client]:
        nc = await nats.connect(
            url,
            user=auth.user,
            password=auth.password,
            inbox_prefix=f"_INBOX_{auth.user}",
            error_cb=self.error,
            allow_reconnect=False,
            connect_timeout=2,
        )
        try:
            yield nc
        finally:
            await nc.close()

    async def saw_violation(self) -> bool:
        for _ in range(50):
            if any("permissions violation" in error for error in self.errors):
                return True
            await asyncio.sleep(0.05)
        return False


def _url(users: SecuredNats) -> str:
    return users.url


async def test_a_client_without_credentials_cannot_connect(users: SecuredNats) -> None:
    assert await connect_refused(_url(users))


async def test_a_client_with_a_wrong_password_cannot_connect(users: SecuredNats) -> None:
    assert await connect_refused(_url(users), user="gateway", password="guessed")
    gateway = users.users["gateway"]
    assert not await connect_refused(_url(users), user=gateway.user, password=gateway.password)


async def test_the_gateway_gets_the_jwt_parameters(users: SecuredNats) -> None:
    async with connect_nats([_url(users)], "gateway", auth=users.users["gateway"]) as nc:
        reply = await nc.request(
            subjects.AUTH_JWT_PARAMS.subject, msgspec.json.encode(JwtParamsRequest()), timeout=5
        )
    assert msgspec.json.decode(reply.data, type=JwtParams).secret


async def test_the_ingestion_worker_cannot_ask_for_the_jwt_secret(
    users: SecuredNats,
) -> None:
    client = Client2()
    async with client.connect(_url(users), users.users[subjects.INGESTION_SERVICE]) as nc:
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await nc.request(
                subjects.AUTH_JWT_PARAMS.subject,
                msgspec.json.encode(JwtParamsRequest()),
                timeout=1,
            )
        assert await client.saw_violation()


async def test_the_ingestion_worker_cannot_read_the_gateways_inbox_or_every_inbox(
    users: SecuredNats,
) -> None:
    client = Client2()
    async with (
        client.connect(_url(users), users.users[subjects.INGESTION_SERVICE]) as spy,
        client.connect(_url(users), users.users[subjects.INFERENCE_SERVICE]) as proxy,
    ):
        got: list[bytes] = []

        async def keep(msg: nats.aio.msg.Msg) -> None:
            got.append(msg.data)

        await spy.subscribe("_INBOX_gateway.>", cb=keep)
        await spy.subscribe("_INBOX.>", cb=keep)
        await spy.subscribe(">", cb=keep)
        await spy.flush()
        assert await client.saw_violation()
        # the inference-proxy streams into the gateway's inbox (allowed): nobody else hears it
        await proxy.publish("_INBOX_gateway.stream.1", b"an answer")
        await proxy.flush()
        await asyncio.sleep(0.3)
    assert got == []


async def test_the_ingestion_worker_cannot_mint_keys_or_write_the_users_bucket(
    users: SecuredNats,
) -> None:
    client = Client2()
    async with client.connect(_url(users), users.users[subjects.INGESTION_SERVICE]) as nc:
        await nc.publish(subjects.AUTH_KEY_CREATE.subject, b"{}")
        await nc.publish(f"$KV.{PREFIX}_users.attacker", b"{}")
        await nc.flush()
        assert await client.saw_violation()
        assert sum("permissions violation" in error for error in client.errors) >= 2

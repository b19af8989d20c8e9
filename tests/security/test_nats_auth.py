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
from common.inbox import Inboxes
from common.nats_conn import connect_nats
from common.settings import NatsAuth
from contracts import subjects
from contracts.auth import JwtParams, JwtParamsRequest
from stack.nats_permissions import USERS, principal_subjects
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

    async def refused(self, *subjects: str) -> bool:
        """Whether the server reported a permissions violation naming each of `subjects`
        (waiting a bounded while for the reports to arrive)."""
        for _ in range(100):
            named = " ".join(e for e in self.errors if "permissions violation" in e)
            if all(f'"{subject.lower()}"' in named for subject in subjects):
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


NOT_GATEWAY = [user for user in USERS if user != subjects.GATEWAY_SERVICE]


@pytest.mark.parametrize("user", NOT_GATEWAY)
async def test_no_one_but_the_gateway_may_send_a_message_that_asserts_a_principal(
    users: SecuredNats, user: str
) -> None:
    """Every subject whose message carries a principal (services act as that user), sent
    by each other service's credentials: the server refuses each one."""
    principal = principal_subjects()
    assert len(principal) > 20  # chat, retrieval, knowledge, plugins, groups...
    client = Client2()
    async with client.connect(_url(users), users.users[user]) as nc:
        for subject in principal:
            await nc.publish(subject, b"{}")
        await nc.flush()
        assert await client.refused(*principal)


@pytest.mark.parametrize("user", NOT_GATEWAY)
async def test_no_one_but_the_gateway_may_ask_for_the_jwt_secret(
    users: SecuredNats, user: str
) -> None:
    client = Client2()
    async with client.connect(_url(users), users.users[user]) as nc:
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await nc.request(
                subjects.AUTH_JWT_PARAMS.subject, msgspec.json.encode(JwtParamsRequest()), timeout=1
            )
        assert await client.refused(subjects.AUTH_JWT_PARAMS.subject)


@pytest.mark.parametrize("user", [u for u in USERS if u != subjects.AUTH_SERVICE])
async def test_no_one_but_auth_may_answer_for_the_jwt_secret_or_a_principal(
    users: SecuredNats, user: str
) -> None:
    """A service that could serve these subjects could hand the gateway its own JWT secret
    or an admin principal for any API key; the gateway still hears the real auth."""
    client = Client2()
    forged: list[bytes] = []

    async def forge(msg: nats.aio.msg.Msg) -> None:
        forged.append(msg.data)
        await msg.respond(msgspec.json.encode(JwtParams(secret="forged-" + "f" * 40)))

    async with client.connect(_url(users), users.users[user]) as nc:
        for endpoint in (subjects.AUTH_JWT_PARAMS, subjects.AUTH_KEY_RESOLVE):
            await nc.subscribe(endpoint.subject, cb=forge)
            await nc.subscribe(endpoint.subject, queue=subjects.AUTH_SERVICE, cb=forge)
        await nc.flush()
        assert await client.refused(
            subjects.AUTH_JWT_PARAMS.subject, subjects.AUTH_KEY_RESOLVE.subject
        )
        async with connect_nats([_url(users)], "gateway", auth=users.users["gateway"]) as gw:
            for _ in range(5):
                reply = await gw.request(
                    subjects.AUTH_JWT_PARAMS.subject,
                    msgspec.json.encode(JwtParamsRequest()),
                    timeout=5,
                )
                assert not msgspec.json.decode(reply.data, type=JwtParams).secret.startswith(
                    "forged-"
                )
    assert forged == []


@pytest.mark.parametrize("user", NOT_GATEWAY)
async def test_no_one_may_read_every_inbox_or_the_gateways(users: SecuredNats, user: str) -> None:
    client = Client2()
    got: list[bytes] = []

    async def keep(msg: nats.aio.msg.Msg) -> None:
        got.append(msg.data)

    async with client.connect(_url(users), users.users[user]) as spy:
        for subject in ("_INBOX.>", "_INBOX_gateway.>", "_INBOX_gateway.stream.>", ">", "*.>"):
            await spy.subscribe(subject, cb=keep)
        await spy.flush()
        assert await client.refused("_INBOX.>", "_INBOX_gateway.>", "_INBOX_gateway.stream.>")
        assert await client.refused(">", "*.>")
        async with connect_nats([_url(users)], "gateway", auth=users.users["gateway"]) as gw:
            await gw.request(
                subjects.AUTH_JWT_PARAMS.subject, msgspec.json.encode(JwtParamsRequest()), timeout=5
            )
        await spy.flush()
    assert got == []


async def test_the_proxy_streams_into_the_gateways_stream_inbox_and_cannot_answer_for_auth(
    users: SecuredNats,
) -> None:
    """The inference-proxy publishes chat streams into the gateway's inbox; it must not be
    able to drop a reply into the gateway's plain request replies (a forged principal)."""
    client = Client2()
    async with (
        connect_nats([_url(users)], "gateway", auth=users.users["gateway"]) as gw,
        client.connect(_url(users), users.users[subjects.INFERENCE_SERVICE]) as proxy,
    ):
        inboxes = Inboxes(gw)
        async with inboxes.open() as box:
            assert box.subject.startswith("_INBOX_gateway.stream.")
            await proxy.publish(box.subject, b"a token")
            await proxy.flush()
            [msg] = await asyncio.wait_for(box.batch(), 5)
            assert msg.data == b"a token"
        await inboxes.close()
        # what a plain request's reply subject looks like: `_INBOX_gateway.<nuid>.<nuid>`
        reply_subject = gw.new_inbox() + ".x"
        await proxy.publish(reply_subject, b'{"user_id": "admin", "role": "admin"}')
        await proxy.flush()
        assert await client.refused(reply_subject)


@pytest.mark.parametrize("user", [u for u in USERS if u != subjects.AUTH_SERVICE])
async def test_no_other_service_may_mint_keys_or_touch_the_users_bucket(
    users: SecuredNats, user: str
) -> None:
    client = Client2()
    bucket = f"{PREFIX}_users"
    forbidden = [
        f"$KV.{bucket}.attacker",  # write a user
        f"$JS.API.DIRECT.GET.KV_{bucket}",  # read one
        f"$JS.API.STREAM.INFO.KV_{bucket}",
        f"$JS.API.CONSUMER.CREATE.KV_{bucket}",  # watch them all
        "$JS.API.STREAM.LIST",  # learn every stream's name
    ]
    if user != subjects.GATEWAY_SERVICE:
        forbidden.append(subjects.AUTH_KEY_CREATE.subject)
    async with client.connect(_url(users), users.users[user]) as nc:
        for subject in forbidden:
            await nc.publish(subject, b"{}")
        await nc.flush()
        assert await client.refused(*forbidden)

"""Fixtures for every test: logging, a real nats-server per test module, connections to it.

One server per module (it starts in ~50 ms): services of one kind share a queue group,
so a service left running by one module would otherwise answer another module's requests.
That server has no users (a service's own tests drive it with a plain client); a stack of
several services runs on `secured_nats`, each service logged in as itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from common.bus import Bus
from common.logging import configure_logging
from common.nats_conn import connect_nats
from common.settings import NatsAuth
from stack.nats_permissions import OPERATOR
from stack.nats_server import NatsServer, NatsServerConfig, free_port
from stack.nats_users import authorization_block, load_or_create_users


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    configure_logging(level="warning", json=True)


@pytest.fixture(scope="module")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    store: Path = tmp_path_factory.mktemp("nats")
    server = NatsServer(NatsServerConfig(port=free_port(), store_dir=store))
    await server.astart()
    yield server
    await server.astop()


@pytest.fixture(scope="module")
async def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    async with connect_nats([nats_url], name="test") as client:
        yield client


@pytest.fixture
async def bus(nc: Client) -> Bus:
    return Bus(nc)


@pytest.fixture(scope="module")
async def module_nc(nats_url: str) -> AsyncIterator[Client]:
    """A connection shared by one module's tests (and its module-scoped services)."""
    async with connect_nats([nats_url], name="test-module") as client:
        yield client


@pytest.fixture(scope="module")
def mbus(module_nc: Client) -> Bus:
    return Bus(module_nc)


async def connect_refused(url: str, **options: str) -> bool:
    """Whether the server at `url` refuses a client connecting with `options` (closed
    either way, so no socket is left to the garbage collector)."""
    nc = Client()
    try:
        await nc.connect(url, allow_reconnect=False, connect_timeout=2, **options)
    except (nats.errors.Error, OSError):
        return True
    finally:
        await nc.close()
    return False


@dataclass(frozen=True)
class SecuredNats:
    """A nats-server with every service's NATS user and permissions, as `make run` and the
    deployments have it; `login(service)` connects a service's settings as that user."""

    server: NatsServer
    users: dict[str, NatsAuth]

    @property
    def url(self) -> str:
        return self.server.url

    def login(self, user: str) -> dict[str, str]:
        """The settings fields (`nats_url`, `nats_user`, `nats_password`) of `user`."""
        auth = self.users[user]
        return {"nats_url": self.url, "nats_user": auth.user, "nats_password": auth.password}

    def env(self, user: str) -> dict[str, str]:
        """The same as a process's environment."""
        return {f"RAGWAY_{name.upper()}": value for name, value in self.login(user).items()}


@asynccontextmanager
async def secured_nats(store: Path, bucket_prefix: str = "ragway") -> AsyncIterator[SecuredNats]:
    """A nats-server in `store` whose users are made there (`stack.nats_users`), with
    the permissions of services whose buckets start with `bucket_prefix`."""
    users = load_or_create_users(store)
    server = NatsServer(
        NatsServerConfig(
            port=free_port(),
            store_dir=store / "nats",
            authorization=authorization_block(users, bucket_prefix),
            login=users[OPERATOR],
        )
    )
    await server.astart()
    try:
        yield SecuredNats(server, users)
    finally:
        await server.astop()

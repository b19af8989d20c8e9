"""The whole stack in-process over real sockets: auth, inference-proxy (pointed at the
backend fakes) and the gateway, on a nats-server of their own, driven over HTTP.

One stack per session, on a nats-server of its own (the services it starts join the same
queue groups as the service tests' own, so they must not share a server), shared by
tests/e2e, cli, sdk and security; `rag` adds retrieval and ingestion beside it. NATS
authorization is on, as under `make run`: each service logs in as its own user and may
use only its own subjects. The server is fresh, so the first user signed up is its admin.
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
from contracts import subjects
from gateway.app import GatewayHandle
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from inference_proxy.app import serve as serve_proxy
from inference_proxy.settings import Settings as ProxySettings
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.nats import SecuredNats, secured_nats
from tests.support.sandbox import isolation_for_tests

JWT_SECRET = "e2e-secret-" + "x" * 32
PASSWORD = "correct horse battery"


@dataclass
class Account:
    id: str
    email: str
    role: str
    token: str
    api_key: str = ""

    @property
    def jwt_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def key_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Stack:
    url: str
    http: aiohttp.ClientSession
    gateway: GatewayHandle

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, headers=headers, **kw) as reply:
            body = await reply.json() if reply.content_type == "application/json" else None
            return reply.status, body

    async def signup(self, role: str | None = None) -> Account:
        email = f"user-{uuid.uuid4().hex[:10]}@example.test"
        status, session = await self.call(
            "POST",
            "/api/v1/auths/signup",
            json={"name": "Test User", "email": email, "password": PASSWORD},
        )
        assert status == 200, session
        account = Account(session["id"], email, session["role"], session["token"])
        if role is not None and role != account.role:
            admin = await self.admin()
            status, _ = await self.call(
                "POST",
                f"/api/v1/users/{account.id}/update",
                headers=admin.jwt_auth,
                json={"role": role},
            )
            assert status == 200
            account.role = role
        return account

    async def with_key(self, account: Account) -> Account:
        status, reply = await self.call("POST", "/api/v1/auths/api_key", headers=account.jwt_auth)
        assert status == 200, reply
        account.api_key = reply["api_key"]
        return account

    _admin: Account | None = None

    async def admin(self) -> Account:
        assert self._admin is not None
        return self._admin


@pytest.fixture(scope="session")
def stack_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's data dir (its JetStream store: users, password hashes, blobs)."""
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
async def stack_nats(stack_data_dir: Path) -> AsyncIterator[SecuredNats]:
    """The stack's own nats-server, with NATS users and permissions as in production: each
    service logs in as itself (`stack_nats.login(service)`). Its own, too: the services it
    starts join the same queue groups as other tests' services, and would answer those
    tests' requests (and theirs ours)."""
    async with secured_nats(stack_data_dir) as server:
        yield server


@pytest.fixture(scope="session")
async def backend_fakes() -> AsyncIterator[tuple[OpenAIFake, OllamaFake]]:
    openai_fake, ollama_fake = OpenAIFake(), OllamaFake()
    await openai_fake.start()
    await ollama_fake.start()
    yield openai_fake, ollama_fake
    await openai_fake.stop()
    await ollama_fake.stop()


@pytest.fixture(scope="session")
async def stack(
    stack_nats: SecuredNats, backend_fakes: tuple[OpenAIFake, OllamaFake], llama_server: str
) -> AsyncIterator[Stack]:
    """Everything but RAG, in-process. Backends: the OpenAI fake (index 0), the real
    llama-server with the small model (index 1), and the Ollama fake."""
    openai_fake, ollama_fake = backend_fakes
    auth_settings = AuthSettings(
        **stack_nats.login(subjects.AUTH_SERVICE),
        jwt_secret=JWT_SECRET,
        password_time_cost=1,
        password_memory_kib=8,
        default_user_role="user",  # this stack's users act at once
        signup_max_per_address=100_000,
        password_parallelism=1,
    )
    proxy_settings = (
        None
        if serve_proxy is None
        else ProxySettings(
            **stack_nats.login(subjects.INFERENCE_SERVICE),
            openai_api_base_urls=f"{openai_fake.base_url};{llama_server}",
            openai_api_keys=f"{openai_fake.api_key or ''};none",
            ollama_base_urls=ollama_fake.origin,
            backend_connect_timeout_seconds=1,
            # the real small model must answer a RAG prompt inside it, even on a busy machine
            backend_timeout_seconds=8,
            backend_idle_timeout_seconds=2,
            models_cache_seconds=0.5,
            function_timeout_seconds=2,  # a stuck function is killed well inside the tests
            sandbox_isolation=isolation_for_tests(),
        )
    )
    gateway_settings = GatewaySettings(
        **stack_nats.login(subjects.GATEWAY_SERVICE),
        port=0,
        request_timeout_seconds=5,
        completion_timeout_seconds=12,
        stream_idle_timeout_seconds=4,
    )
    async with contextlib.AsyncExitStack() as services:
        await services.enter_async_context(serve_auth(auth_settings))
        await services.enter_async_context(serve_proxy(proxy_settings))
        gateway = await services.enter_async_context(serve_gateway(gateway_settings))
        http = await services.enter_async_context(aiohttp.ClientSession())
        stack = Stack(url=gateway.url, http=http, gateway=gateway)
        admin = await stack.signup()
        assert admin.role == "admin"
        stack._admin = await stack.with_key(admin)
        yield stack


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    """Knobs a test turned on the stack's fakes stay with that test."""
    if "backend_fakes" not in request.fixturenames:
        return
    openai_fake, ollama_fake = request.getfixturevalue("backend_fakes")
    openai_fake.fail_after_chunks = None
    openai_fake.hang = False
    openai_fake.error_status = None
    openai_fake.token_delay = 0.0
    openai_fake.tokens_per_reply = None
    openai_fake.strict = False
    ollama_fake.drop_after = None
    ollama_fake.hang_chat = False
    ollama_fake.chunk_delay = 0.0


@pytest.fixture
async def admin(stack: Stack) -> Account:
    return await stack.admin()


@pytest.fixture
async def user(stack: Stack) -> Account:
    return await stack.with_key(await stack.signup())


@dataclass
class RagServices:
    """Retrieval and ingestion beside `stack`, with the gateway's default bucket prefix."""

    retrieval: Any
    ingestion: Any


@pytest.fixture(scope="session")
async def rag(
    stack: Stack, stack_nats: SecuredNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RagServices]:
    """The RAG services (skipped when the embedding model is not built, as their own tests)."""
    from embedding.embedder import read_manifest
    from ingestion.app import Settings as IngestionSettings
    from ingestion.app import serve as serve_ingestion
    from retrieval.app import serve as serve_retrieval
    from retrieval.settings import Settings as RetrievalSettings

    retrieval_settings = RetrievalSettings(
        **stack_nats.login(subjects.RETRIEVAL_SERVICE),
        data_dir=str(tmp_path_factory.mktemp("rag")),
        log_level="warning",
    )
    try:
        read_manifest(retrieval_settings.embedding.resolved_model_dir())
    except Exception:
        pytest.fail("embedding model not built: run `make setup` (python -m embedding.build)")
    ingestion_settings = IngestionSettings(
        **stack_nats.login(subjects.INGESTION_SERVICE),
        log_level="warning",
        ack_wait_seconds=10.0,
        nak_delay_seconds=0.2,
    )
    async with contextlib.AsyncExitStack() as services:
        retrieval = await services.enter_async_context(serve_retrieval(retrieval_settings))
        ingestion = await services.enter_async_context(serve_ingestion(ingestion_settings))
        yield RagServices(retrieval, ingestion)

"""The pass-through's backend selection and failures, on a stack of this module's own:
its Ollama backends are a port nobody listens on (index 0) and the fake (index 1)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import Principal
from contracts.ollama import OllamaProxyRequest
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from inference_proxy.app import serve as serve_proxy
from inference_proxy.passthrough import OllamaPassthrough
from inference_proxy.settings import Settings as ProxySettings
from stack.nats_server import free_port
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.nats import secured_nats
from tests.support.stack import JWT_SECRET, Account, Stack


@pytest.fixture(scope="module")
async def split_stack(
    tmp_path_factory: pytest.TempPathFactory, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> AsyncIterator[tuple[Stack, Account, int]]:
    dead_port = free_port()
    async with contextlib.AsyncExitStack() as services:
        nats = await services.enter_async_context(secured_nats(tmp_path_factory.mktemp("split")))
        await services.enter_async_context(
            serve_auth(
                AuthSettings(
                    **nats.login(subjects.AUTH_SERVICE),
                    jwt_secret=JWT_SECRET,
                    password_time_cost=1,
                    password_memory_kib=8,
                    default_user_role="user",  # this stack's users act at once
                    signup_max_per_address=100_000,
                    password_parallelism=1,
                )
            )
        )
        await services.enter_async_context(
            serve_proxy(
                ProxySettings(
                    **nats.login(subjects.INFERENCE_SERVICE),
                    ollama_base_urls=f"http://127.0.0.1:{dead_port};{backend_fakes[1].origin}",
                    backend_connect_timeout_seconds=1,
                    backend_timeout_seconds=3,
                    sandbox_spares=0,
                )
            )
        )
        gateway = await services.enter_async_context(
            serve_gateway(
                GatewaySettings(
                    **nats.login(subjects.GATEWAY_SERVICE), port=0, request_timeout_seconds=5
                )
            )
        )
        http = await services.enter_async_context(aiohttp.ClientSession())
        stack = Stack(url=gateway.url, http=http, gateway=gateway)
        admin = await stack.signup()
        yield stack, admin, dead_port


async def test_an_index_picks_the_backend_and_a_dead_one_is_a_clear_502(
    split_stack: tuple[Stack, Account, int],
) -> None:
    stack, admin, dead_port = split_stack
    status, body = await stack.call("GET", "/ollama/api/version/1", headers=admin.jwt_auth)
    assert status == 200
    assert body == {"version": "0.6.8"}
    started = time.perf_counter()
    status, body = await stack.call("GET", "/ollama/api/version/0", headers=admin.jwt_auth)
    assert status == 502
    assert body["detail"] == "Ollama backend #0 is unreachable"  # named, its URL not told
    assert str(dead_port) not in body["detail"]
    assert time.perf_counter() - started < 3


async def test_without_an_index_a_model_goes_to_the_backend_that_has_it(
    split_stack: tuple[Stack, Account, int], backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    stack, admin, _ = split_stack
    fake = backend_fakes[1]
    seen = len(fake.requests)
    status, body = await stack.call(
        "POST", "/ollama/api/show", headers=admin.jwt_auth, json={"model": "qwen2.5:0.5b"}
    )
    assert status == 200, body  # index 0 (the default) is down: it went to index 1
    assert "/api/show" in fake.paths()[seen:]


async def test_ollamas_openai_routes_go_where_the_model_is_or_where_the_index_says(
    split_stack: tuple[Stack, Account, int], backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    stack, admin, _ = split_stack
    fake = backend_fakes[1]
    seen = len(fake.requests)
    status, body = await stack.call(
        "POST",
        "/ollama/v1/chat/completions",
        headers=admin.jwt_auth,
        json={"model": "qwen2.5:0.5b", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200, body  # index 0 (the default) is down: it went to index 1
    assert body["choices"][0]["message"]["content"] == "Echo: hi"
    status, listed = await stack.call("GET", "/ollama/v1/models/1", headers=admin.jwt_auth)
    assert status == 200, listed
    assert [m["id"] for m in listed["data"]] == fake.models
    assert fake.paths()[seen:] == ["/v1/chat/completions", "/v1/models"]


async def test_no_ollama_configured_is_not_found_with_a_clear_detail() -> None:
    passthrough = OllamaPassthrough(None, None, [], None, ProxySettings(), None, None)  # type: ignore[arg-type]
    request = OllamaProxyRequest(
        principal=Principal(id="u", email="u@x.test", name="u", role="user"),
        method="GET",
        path="api/tags",
        stream_inbox="_INBOX.x",
        stream_id="s",
    )
    with pytest.raises(RagwayError) as caught:
        await passthrough.open(request)
    assert (caught.value.code, caught.value.detail) == (
        "not_found",
        "No Ollama backend is configured",
    )

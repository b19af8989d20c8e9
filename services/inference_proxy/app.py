"""The inference-proxy service: model list and chat completions over NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts import subjects
from contracts.chat import CompletionJob
from contracts.models import ModelsRequest

from inference_proxy.catalog import ModelCatalog
from inference_proxy.chat import ChatRunner
from inference_proxy.settings import ENV_ALIASES, Settings, configured_backends

__all__ = ["ENV_ALIASES", "InferenceProxy", "Settings", "serve"]


@dataclass(frozen=True)
class InferenceProxy:
    """What `serve` yields: the parts tests and embedders may want to look at."""

    catalog: ModelCatalog
    chat: ChatRunner


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[InferenceProxy]:
    """Serve MODELS_LIST, CHAT_COMPLETE and CHAT_STREAM until the context exits."""
    openai, ollama = configured_backends(settings)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=settings.max_backend_connections, keepalive_timeout=30
                ),
                # no timeout by default: every call sets its own bounds
                timeout=aiohttp.ClientTimeout(total=None),
                raise_for_status=False,
            )
        )
        nc = await stack.enter_async_context(
            connect_nats(settings.nats_servers, name=subjects.INFERENCE_SERVICE)
        )
        catalog = ModelCatalog(
            http,
            openai,
            ollama,
            cache_seconds=settings.models_cache_seconds,
            fetch_timeout=settings.models_fetch_timeout_seconds,
        )
        chat = ChatRunner(nc, http, catalog, settings)
        stack.push_async_callback(chat.aclose)

        async def list_models(request: ModelsRequest) -> bytes:
            return (await catalog.snapshot(refresh=request.refresh)).encoded

        host = await stack.enter_async_context(
            ServiceHost(nc, subjects.INFERENCE_SERVICE, description="Model list and chat")
        )
        await host.add(subjects.MODELS_LIST, list_models, ModelsRequest)
        await host.add(subjects.CHAT_COMPLETE, chat.complete, CompletionJob)
        await host.add(subjects.CHAT_STREAM, chat.stream, CompletionJob)
        await nc.flush()  # the server knows the endpoints before we say we are serving
        yield InferenceProxy(catalog=catalog, chat=chat)

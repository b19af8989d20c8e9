"""The inference-proxy service: model list and chat completions over NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import msgspec

from common.bus import Bus
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts import subjects
from contracts.embeddings import EmbeddingModel, EmbeddingModelsRequest
from contracts.models import ModelsReply, ModelsRequest
from inference_proxy.backend_http import BackendPool, proxies_from_env
from inference_proxy.cancels import CancelRegistry
from inference_proxy.catalog import ModelCatalog
from inference_proxy.chat import ChatRunner
from inference_proxy.completions import Completions
from inference_proxy.embeddings import Embeddings
from inference_proxy.functions.pipes import PipeRunner
from inference_proxy.functions.plugins import PluginService, PluginStore
from inference_proxy.functions.sandbox import Sandbox, SandboxLimits
from inference_proxy.functions.tool_loop import ToolLoop
from inference_proxy.passthrough import OllamaPassthrough
from inference_proxy.routing import Router
from inference_proxy.settings import Settings, configured_backends

__all__ = ["InferenceProxy", "Settings", "serve"]


@dataclass(frozen=True)
class InferenceProxy:
    """What `serve` yields: the parts tests and embedders may want to look at."""

    catalog: ModelCatalog
    chat: ChatRunner
    plugins: PluginStore
    sandbox: Sandbox
    backends: BackendPool  # every connection to the model backends
    router: Router  # which backend is in service, and how busy


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[InferenceProxy]:
    """Serve MODELS_LIST, CHAT_COMPLETE, CHAT_STREAM and PLUGINS_* until the context exits."""
    openai, ollama = configured_backends(settings)
    async with AsyncExitStack() as stack:
        # one pool for every request to the backends (chat, pass-through, model lists);
        # no timeout of its own but the connect one: every call sets its own bounds;
        # HTTP(S)_PROXY / NO_PROXY honoured as aiohttp's trust_env (and Open WebUI) do
        backend = BackendPool(
            limit=settings.max_backend_connections,
            keepalive_seconds=30,
            connect_timeout=settings.backend_connect_timeout_seconds,
            proxies=proxies_from_env(),
        )
        stack.push_async_callback(backend.close)
        nc = await stack.enter_async_context(
            connect_nats(settings.nats_servers(), name=subjects.INFERENCE_SERVICE)
        )
        bus = Bus(nc)
        router = Router.from_settings(settings)  # balancing and ejection, this instance's

        async def local_models() -> list[EmbeddingModel]:
            """ragway's own embedding models (the retrieval service runs them)."""
            reply = await bus.call(
                subjects.EMBEDDING_MODELS,
                EmbeddingModelsRequest(),
                timeout=settings.models_fetch_timeout_seconds,
            )
            return reply.models

        catalog = ModelCatalog(
            backend,
            openai,
            ollama,
            cache_seconds=settings.models_cache_seconds,
            fetch_timeout=settings.models_fetch_timeout_seconds,
            local_models=local_models,
            health=router,
        )
        embeddings = Embeddings(bus, backend, catalog, settings, router)
        # closed after the runners that use them (callbacks run last-in, first-out)
        chat_cancels = CancelRegistry(nc, subjects.CHAT_CANCEL)
        stack.push_async_callback(chat_cancels.close)
        ollama_cancels = CancelRegistry(nc, subjects.OLLAMA_CANCEL)
        stack.push_async_callback(ollama_cancels.close)
        chat = ChatRunner(nc, backend, catalog, settings, chat_cancels, router)
        stack.push_async_callback(chat.aclose)
        passthrough = OllamaPassthrough(
            nc, backend, ollama, catalog, settings, ollama_cancels, router
        )
        stack.push_async_callback(passthrough.aclose)
        sandbox = Sandbox(
            SandboxLimits(
                timeout_seconds=settings.function_timeout_seconds,
                memory_mb=settings.function_memory_mb,
                spares=settings.sandbox_spares,
                max_running=settings.sandbox_max_running,
            )
        )
        await sandbox.start()
        stack.push_async_callback(sandbox.aclose)
        plugins = await PluginStore.open(
            nc.jetstream(), settings.bucket_prefix, settings.kv_replicas
        )
        stack.push_async_callback(plugins.aclose)
        await plugins.migrate_to_grants()
        pipes = PipeRunner(nc, sandbox, chat_cancels)
        stack.push_async_callback(pipes.aclose)
        tools = ToolLoop(nc, chat, sandbox, plugins, settings, chat_cancels)
        stack.push_async_callback(tools.aclose)
        completions = Completions(chat, pipes, tools, plugins)
        plugin_service = PluginService(plugins, sandbox)

        async def list_models(request: ModelsRequest) -> ModelsReply | msgspec.Raw:
            snapshot = await catalog.snapshot(refresh=request.refresh)
            functions = plugins.function_models(request.principal)
            if not functions:
                return msgspec.Raw(snapshot.encoded)
            return ModelsReply(data=functions + snapshot.models)

        host = await stack.enter_async_context(
            ServiceHost(
                nc,
                subjects.INFERENCE_SERVICE,
                description="Model list and chat",
                max_in_flight=settings.max_in_flight,
            )
        )
        await host.serve(subjects.MODELS_LIST, list_models)
        await host.serve(subjects.CHAT_COMPLETE, completions.complete)
        await host.serve(subjects.CHAT_STREAM, completions.stream)
        await host.serve(subjects.PLUGINS_SAVE, plugin_service.save)
        await host.serve(subjects.PLUGINS_LIST, plugin_service.list)
        await host.serve(subjects.PLUGINS_GET, plugin_service.get)
        await host.serve(subjects.PLUGINS_DELETE, plugin_service.delete)
        await host.serve(subjects.OLLAMA_PROXY, passthrough.open)
        await host.serve(subjects.EMBEDDINGS_CREATE, embeddings.create)
        await nc.flush()  # the server knows the endpoints before we say we are serving
        yield InferenceProxy(
            catalog=catalog,
            chat=chat,
            plugins=plugins,
            sandbox=sandbox,
            backends=backend,
            router=router,
        )

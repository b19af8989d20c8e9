"""One trace per request across the real services: the stack runs in-process with one
SDK tracer provider (in-memory exporter), so the spans of every service land in one
place; the context crosses NATS (requests and the JetStream job) in W3C headers."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from common import tracing
from contracts import subjects
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from inference_proxy.app import serve as serve_proxy
from inference_proxy.settings import Settings as ProxySettings
from tests.fakes.openai_fake import OpenAIFake

MODEL = "gpt-fake"
FACTS = b"Common swifts can sleep while flying. They land only to nest."


@dataclass
class Traced:
    url: str
    http: aiohttp.ClientSession
    spans: InMemorySpanExporter
    auth: dict[str, str]
    backend: OpenAIFake


@contextlib.contextmanager
def tracing_to_memory() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


@pytest.fixture(scope="module")
async def traced(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    from embedding.embedder import read_manifest
    from ingestion.app import Settings as IngestionSettings
    from ingestion.app import serve as serve_ingestion
    from retrieval.app import serve as serve_retrieval
    from retrieval.settings import Settings as RetrievalSettings

    data_dir: Path = tmp_path_factory.mktemp("traces")
    retrieval_settings = RetrievalSettings(
        nats_url=nats_url, data_dir=str(data_dir), log_level="warning"
    )
    try:
        read_manifest(retrieval_settings.embedding.resolved_model_dir())
    except Exception:
        pytest.fail("embedding model not built: run `make setup` (python -m embedding.build)")
    backend = OpenAIFake()
    await backend.start()
    prefix = f"tr{uuid.uuid4().hex[:10]}"
    with tracing_to_memory() as exporter:  # before the services start (the store is wrapped)
        async with contextlib.AsyncExitStack() as services:
            await services.enter_async_context(
                serve_auth(
                    AuthSettings(
                        nats_url=nats_url,
                        bucket_prefix=prefix,
                        jwt_secret="traces-secret-" + "x" * 32,
                        password_time_cost=1,
                        password_memory_kib=8,
                        password_parallelism=1,
                    )
                )
            )
            await services.enter_async_context(
                serve_proxy(
                    ProxySettings(
                        nats_url=nats_url,
                        openai_api_base_urls=backend.base_url,
                        openai_api_keys=backend.api_key or "",
                        ollama_base_urls="",
                    )
                )
            )
            await services.enter_async_context(serve_retrieval(retrieval_settings))
            await services.enter_async_context(
                serve_ingestion(
                    IngestionSettings(nats_url=nats_url, log_level="warning", nak_delay_seconds=0.2)
                )
            )
            gateway = await services.enter_async_context(
                serve_gateway(GatewaySettings(nats_url=nats_url, port=0, request_timeout_seconds=5))
            )
            http = await services.enter_async_context(aiohttp.ClientSession())
            signup = {"name": "Tracer", "email": "t@example.test", "password": "long password 1"}
            async with http.post(f"{gateway.url}/api/v1/auths/signup", json=signup) as reply:
                assert reply.status == 200, await reply.text()
                token = (await reply.json())["token"]
            yield Traced(gateway.url, http, exporter, {"Authorization": f"Bearer {token}"}, backend)
    await backend.stop()


def trace_of(spans: list[ReadableSpan], root: ReadableSpan) -> dict[int, ReadableSpan]:
    assert root.context is not None
    return {
        span.context.span_id: span
        for span in spans
        if span.context is not None and span.context.trace_id == root.context.trace_id
    }


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """Names from `span` up to the root of its trace (every parent must be in the trace)."""
    names = [span.name]
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def only(spans: list[ReadableSpan], name: str, **attributes: Any) -> ReadableSpan:
    found = [
        s
        for s in spans
        if s.name == name and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


async def wait_completed(t: Traced, file_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        async with t.http.get(
            f"{t.url}/api/v1/files/{file_id}/process/status", headers=t.auth
        ) as reply:
            status = (await reply.json())["status"]
        if status == "completed":
            return
        assert status != "failed" and time.monotonic() < deadline, status
        await asyncio.sleep(0.05)


async def test_one_rag_chat_is_one_trace_through_every_service(traced: Traced) -> None:
    t = traced
    form = aiohttp.FormData()
    form.add_field("file", FACTS, filename="swifts.txt", content_type="text/plain")
    async with t.http.post(f"{t.url}/api/v1/files/", headers=t.auth, data=form) as reply:
        assert reply.status == 200, await reply.text()
        file_id = (await reply.json())["id"]
    await wait_completed(t, file_id)

    # the upload: gateway -> ingestion (the queued job) -> retrieval -> the vector store
    spans = list(t.spans.get_finished_spans())
    upload = only(spans, "POST /api/v1/files/")
    assert upload.kind == SpanKind.SERVER
    in_upload = trace_of(spans, upload)
    job = [s for s in in_upload.values() if s.name == "ingest job"]
    assert job and all(s.kind == SpanKind.CONSUMER for s in job)
    stored = [s for s in in_upload.values() if s.name == "qdrant upsert"]
    assert stored
    chain = ancestors(stored[0], in_upload)
    upsert = subjects.VECTORS_UPSERT.subject
    assert chain == [
        "qdrant upsert",
        upsert,  # the retrieval service's server span
        upsert,  # the ingestion worker's client span
        "ingest job",
        "POST /api/v1/files/",
    ], chain
    server = in_upload[stored[0].parent.span_id]  # type: ignore[union-attr]
    assert server.kind == SpanKind.SERVER
    assert (server.attributes or {})["ragway.service"] == subjects.RETRIEVAL_SERVICE

    # the chat: gateway -> retrieval -> store, and gateway -> inference-proxy -> backend
    t.spans.clear()
    body = {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "Which bird sleeps while flying?"}],
        "files": [{"type": "file", "id": file_id}],
    }
    async with t.http.post(f"{t.url}/api/chat/completions", headers=t.auth, json=body) as reply:
        assert reply.status == 200
        assert (await reply.read()).rstrip().endswith(b"[DONE]")
    spans = list(t.spans.get_finished_spans())
    chat = only(spans, "POST /api/chat/completions")
    in_chat = trace_of(spans, chat)
    names = [s.name for s in in_chat.values()]
    backend = only(list(in_chat.values()), "POST openai backend")
    assert backend.kind == SpanKind.CLIENT
    assert (backend.attributes or {})["ragway.backend_index"] == 0
    stream = subjects.CHAT_STREAM.subject
    assert ancestors(backend, in_chat) == [
        "POST openai backend",
        stream,  # the inference-proxy's server span
        stream,  # the gateway's client span
        "POST /api/chat/completions",
    ], names
    searched = [s for s in in_chat.values() if s.name.startswith("qdrant search")]
    assert searched, names
    search = searched[0]
    assert search.parent is not None
    server = in_chat[search.parent.span_id]
    assert server.kind == SpanKind.SERVER
    assert (server.attributes or {})["ragway.service"] == subjects.RETRIEVAL_SERVICE
    assert ancestors(search, in_chat) == [
        search.name,
        server.name,  # the retrieval service's server span
        server.name,  # the gateway's client span
        "POST /api/chat/completions",
    ], names
    # the backend received the trace: its request carried the backend span's traceparent
    sent = t.backend.last("/v1/chat/completions")
    assert backend.context is not None
    assert f"{backend.context.span_id:016x}" in sent.headers.get("traceparent", "")
    # every span of the chat's trace ended, none is an error
    assert all(s.status.is_ok for s in in_chat.values()), names


def test_without_a_provider_nothing_is_traced_or_sent() -> None:
    installed = tracing._tracer  # the module's stack may be tracing: put it back after
    tracing.install(None)
    try:
        assert not tracing.enabled()
        headers: dict[str, str] = {}
        tracing.inject(headers)
        assert headers == {}
        assert tracing.span("anything") is tracing.span("else")  # one shared null context
        assert tracing.extract({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    finally:
        tracing._tracer = installed

"""/metrics through the whole stack: chat completions move the chat and service counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.rag_helpers import completed_upload
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.support.stack import Account, RagServices, Stack

MODEL = "gpt-fake"


async def samples(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with stack.http.get(f"{stack.url}/metrics") as reply:
        assert reply.status == 200
        text = await reply.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


def proxy_requests(values: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return sum(
        v
        for (name, labels), v in values.items()
        if name == "ragway_service_requests_total" and dict(labels)["service"] == "inference-proxy"
    )


async def test_completions_move_tokens_ttft_and_the_proxys_stats(
    stack: Stack, user: Account
) -> None:
    before = await samples(stack)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "count my tokens"}]}
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=body
    )
    assert status == 200, reply
    async with stack.http.post(
        f"{stack.url}/api/chat/completions", headers=user.key_auth, json={**body, "stream": True}
    ) as streamed:
        assert streamed.status == 200
        assert (await streamed.read()).rstrip().endswith(b"[DONE]")
    after = await samples(stack)

    ttft = "ragway_chat_time_to_first_token_seconds_count"
    assert get(after, ttft) == get(before, ttft) + 1
    prompt_tokens = reply["usage"]["prompt_tokens"]
    assert prompt_tokens > 0
    tokens_in = get(after, "ragway_chat_tokens_total", model=MODEL, direction="in")
    # the non-streamed reply's usage at least; the stream's end adds its own
    assert tokens_in >= get(before, "ragway_chat_tokens_total", model=MODEL, direction="in") + (
        prompt_tokens
    )
    tokens_out = get(after, "ragway_chat_tokens_total", model=MODEL, direction="out")
    assert tokens_out > get(before, "ragway_chat_tokens_total", model=MODEL, direction="out")
    chat = get(after, "ragway_http_requests_total", route="api_chat", method="POST", status="200")
    assert (
        chat
        - get(before, "ragway_http_requests_total", route="api_chat", method="POST", status="200")
        == 2
    )
    assert proxy_requests(after) >= proxy_requests(before) + 2


def total(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        v
        for (sample, sample_labels), v in values.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


async def test_backend_errors_by_index_limits_hit_and_every_services_nats_counters(
    stack: Stack, user: Account, backend_fakes: tuple[OpenAIFake, OllamaFake]
) -> None:
    openai_fake, _ = backend_fakes
    before = await samples(stack)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "fail please"}]}
    openai_fake.error_status = 500
    status, _ = await stack.call("POST", "/api/chat/completions", headers=user.key_auth, json=body)
    assert status == 502
    openai_fake.error_status = None
    admin = await stack.admin()
    status, limit = await stack.call(
        "POST",
        "/api/v1/limits",
        headers=admin.key_auth,
        json={"scope": "user", "id": user.id, "rpm": 1},
    )
    assert status == 200, limit
    statuses = [
        (await stack.call("POST", "/api/chat/completions", headers=user.key_auth, json=body))[0]
        for _ in range(3)
    ]
    assert 429 in statuses
    after = await samples(stack)

    # the OpenAI fake is the proxy's openai backend 0; the proxy's instance sent the sample
    errors = {"backend_kind": "openai", "backend_index": "0", "reason": "status"}
    failed = "ragway_backend_errors_total"
    assert total(after, failed, service="inference-proxy", **errors) == (
        total(before, failed, service="inference-proxy", **errors) + 1
    )
    hit = "ragway_limits_hit_total"
    assert get(after, hit, dimension="rpm") - get(before, hit, dimension="rpm") == statuses.count(
        429
    )
    # every service instance reports its NATS connection, the gateway's included
    reporting = {
        dict(labels)["service"]
        for (name, labels), _ in after.items()
        if name == "ragway_nats_reconnects_total"
    }
    assert {"gateway", "auth", "inference-proxy"} <= reporting
    assert total(after, "ragway_nats_messages_in_total", service="gateway") > 0


async def test_an_upload_and_a_rag_chat_move_the_ingestion_and_retrieval_metrics(
    stack: Stack, user: Account, rag: RagServices
) -> None:
    before = await samples(stack)
    record = await completed_upload(stack, user, b"Swifts sleep while flying.", "swifts.txt")
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Which bird sleeps while flying?"}],
        "files": [{"type": "file", "id": record["id"]}],
    }
    status, reply = await stack.call(
        "POST", "/api/chat/completions", headers=user.key_auth, json=body
    )
    assert status == 200, reply
    after = await samples(stack)

    files = "ragway_ingest_files_total"
    assert total(after, files, service="ingestion", status="completed") >= (
        total(before, files, service="ingestion", status="completed") + 1
    )
    chunks = "ragway_ingest_chunks_total"
    assert total(after, chunks, service="ingestion") > total(before, chunks, service="ingestion")
    jobs = "ragway_ingest_jobs_total"
    assert total(after, jobs, outcome="completed") > total(before, jobs, outcome="completed")
    retrieved = "ragway_retrieval_duration_seconds_count"
    assert get(after, retrieved, outcome="ok") >= get(before, retrieved, outcome="ok") + 1
    # the queue gauges are there once the worker made its consumer
    assert any(name == "ragway_ingest_consumer_pending" for name, _ in after)

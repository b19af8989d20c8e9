"""GET /metrics on a gateway alone: its own counters, the services' `$SRV.STATS`, the queue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from common.bus import Bus
from common.errors import RagwayError
from common.metrics import counter
from common.service import ServiceHost
from contracts.endpoint import Endpoint
from gateway.app import GatewayHandle, Settings, serve
from ingestion.queue import consumer_config
from ingestion.settings import Settings as IngestionSettings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Echo(msgspec.Struct, frozen=True):
    text: str


async def scrape(http: aiohttp.ClientSession, url: str, **headers: str) -> Samples:
    async with http.get(f"{url}/metrics", headers=headers) as reply:
        assert reply.status == 200, await reply.text()
        assert reply.content_type == "text/plain"
        text = await reply.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_requests_are_counted_by_route_name_and_status_never_by_raw_path(
    gateway: GatewayHandle, http: aiohttp.ClientSession
) -> None:
    file_id = uuid.uuid4().hex
    async with http.get(f"{gateway.url}/api/v1/files/{file_id}") as reply:
        assert reply.status == 401
    async with http.get(f"{gateway.url}/api/v1/files/{file_id}") as reply:
        assert reply.status == 401
    samples = await scrape(http, gateway.url)
    route = "files_get"  # the aiohttp route's name
    assert (
        value(samples, "ragway_http_requests_total", route=route, method="GET", status="401") == 2
    )
    assert value(samples, "ragway_http_request_duration_seconds_count", route=route) == 2
    assert not any(file_id in str(labels) for _, labels in samples)
    async with http.get(f"{gateway.url}/no/such/{file_id}") as reply:
        assert reply.status == 404
    samples = await scrape(http, gateway.url)
    assert (
        value(samples, "ragway_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert not any(file_id in str(labels) for _, labels in samples)


async def test_service_stats_of_every_answering_instance_are_exposed(
    gateway: GatewayHandle, http: aiohttp.ClientSession, nc: Client
) -> None:
    """The gateway fixture checks `gw-test-probe-a/b`: both instances of `a` are scraped."""
    subject = f"test.metrics.{uuid.uuid4().hex}"
    echo = Endpoint(subject, Echo, Echo, "gw-test-probe-a", ())

    async def handle(request: Echo) -> Echo:
        if request.text == "boom":
            raise RagwayError("invalid", "no")
        return request

    async with ServiceHost(nc, "gw-test-probe-a") as one, ServiceHost(nc, "gw-test-probe-a") as two:
        await one.serve(echo, handle)
        await two.serve(echo, handle)
        one.add_metrics(lambda: [counter("ragway_test_probe", "a test's", [({"k": "v"}, 3)])])
        bus = Bus(nc)
        for text in ("a", "b", "c"):
            assert await bus.call(echo, Echo(text=text), timeout=2) == Echo(text=text)
        with pytest.raises(RagwayError):
            await bus.call(echo, Echo(text="boom"), timeout=2)
        samples = await scrape(http, gateway.url)
    endpoint = subject.replace(".", "-")
    requests = {
        dict(labels)["instance"]: v
        for (name, labels), v in samples.items()
        if name == "ragway_service_requests_total" and dict(labels)["endpoint"] == endpoint
    }
    assert len(requests) == 2  # both instances answered the scrape
    assert sum(requests.values()) == 4
    errors = sum(
        v
        for (name, labels), v in samples.items()
        if name == "ragway_service_errors_total" and dict(labels)["endpoint"] == endpoint
    )
    assert errors == 1
    assert any(name == "ragway_service_processing_seconds_total" for name, _ in samples)
    # each instance's own families (common.metrics), labelled with who sent them
    probe = [
        (dict(labels), v)
        for (name, labels), v in samples.items()
        if name == "ragway_test_probe_total"
    ]
    assert len(probe) == 1 and probe[0][1] == 3
    assert probe[0][0]["k"] == "v" and probe[0][0]["service"] == "gw-test-probe-a"
    assert probe[0][0]["instance"] in requests
    in_flight = {
        dict(labels)["instance"]
        for (name, labels), _ in samples.items()
        if name == "ragway_service_in_flight" and dict(labels)["service"] == "gw-test-probe-a"
    }
    assert in_flight == set(requests)


@pytest.fixture
async def queue_gateway(nats_url: str) -> AsyncIterator[tuple[GatewayHandle, Settings]]:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        nats_url=nats_url,
        port=0,
        request_timeout_seconds=2,
        health_services="gw-test-probe-none",
        metrics_stats_window_seconds=0.05,
        ingest_stream=f"METRICS_{tag}",
        ingest_subject=f"test.metrics.jobs.{tag}",
        ingest_consumer=f"metrics_{tag}",
        metrics_token="scrape-secret",
    )
    async with serve(settings) as handle:
        yield handle, settings


async def test_the_queue_depth_and_consumer_lag_follow_the_jobs_and_a_token_guards_them(
    queue_gateway: tuple[GatewayHandle, Settings], http: aiohttp.ClientSession, nc: Client
) -> None:
    gateway, settings = queue_gateway
    async with http.get(f"{gateway.url}/metrics") as reply:
        assert reply.status == 401
        assert "detail" in await reply.json()
    async with http.get(
        f"{gateway.url}/metrics", headers={"Authorization": "Bearer wrong"}
    ) as reply:
        assert reply.status == 401
    auth = {"Authorization": "Bearer scrape-secret"}
    samples = await scrape(http, gateway.url, **auth)
    stream, consumer = settings.ingest_stream, settings.ingest_consumer
    assert value(samples, "ragway_ingest_queue_messages", stream=stream) == 0
    # no worker has made its consumer yet: no lag is reported rather than a made-up zero
    assert value(samples, "ragway_ingest_consumer_pending", consumer=consumer) is None

    js = nc.jetstream()
    worker = IngestionSettings(
        nats_url="nats://unused",
        ingest_stream=stream,
        ingest_subject=settings.ingest_subject,
        ingest_consumer=consumer,
    )
    await js.add_consumer(stream, consumer_config(worker))
    for n in range(3):
        await js.publish(settings.ingest_subject, f"job {n}".encode())
    pull = await js.pull_subscribe_bind(consumer, stream)
    (taken,) = await pull.fetch(1, timeout=2)
    samples = await scrape(http, gateway.url, **auth)
    assert value(samples, "ragway_ingest_queue_messages", stream=stream) == 3
    assert value(samples, "ragway_ingest_consumer_pending", consumer=consumer) == 2
    assert value(samples, "ragway_ingest_consumer_ack_pending", consumer=consumer) == 1
    await taken.ack()
    await js.delete_stream(stream)

"""The gateway's Prometheus metrics: what it counts per request, and `GET /metrics`.

Counting happens in the request middleware and the chat stream; each label combination's
child is looked up once and cached, so a request pays a dict lookup and an `inc()`.
The registry belongs to the app (tests run several gateways in one process).

At scrape time the gateway also asks every ragway service for its nats.micro
`$SRV.STATS` (every instance that answers within a short window) and JetStream for the
ingestion queue's depth and its consumer's lag, so one scrape config sees the stack.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import structlog
from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.metrics import MetricsReply

log = structlog.get_logger()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: a chat's first token takes longer than most requests, so finer at the top
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class GatewayMetrics:
    """The counters and histograms the gateway updates, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self._requests = Counter(
            "ragway_http_requests",
            "HTTP requests answered, by aiohttp route name, method and status",
            ("route", "method", "status"),
            registry=r,
        )
        self._latency = Histogram(
            "ragway_http_request_duration_seconds",
            "HTTP request duration (a stream's until its end), by route",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._ttft = Histogram(
            "ragway_chat_time_to_first_token_seconds",
            "Streamed chat completions: from the request's arrival to the model's first bytes",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._tokens = Counter(
            "ragway_chat_tokens",
            "Tokens of chat completions by model and direction (in: prompt, out: completion)",
            ("model", "direction"),
            registry=r,
        )
        self._upstream_errors = Counter(
            "ragway_gateway_upstream_errors",
            "Failures of the services behind the gateway, as the gateway saw them, by kind",
            ("kind",),
            registry=r,
        )
        self._limits_hit = Counter(
            "ragway_limits_hit",
            "Requests refused with 429 by the usage limits, by the bound reached",
            ("dimension",),
            registry=r,
        )
        self._retrieval = Histogram(
            "ragway_retrieval_duration_seconds",
            "Retrieval queries (RAG in chat and the retrieval routes) as the gateway waits",
            ("outcome",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._token_children: dict[str, tuple[Any, Any]] = {}
        self._error_children: dict[str, Any] = {}

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self._requests.labels(route, method, status)
        child.inc()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self._latency.labels(route)
        latency.observe(seconds)

    def first_token(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        """A chat completion's usage as the backend reported it."""
        children = self._token_children.get(model)
        if children is None:
            children = self._token_children[model] = (
                self._tokens.labels(model, "in"),
                self._tokens.labels(model, "out"),
            )
        if prompt > 0:
            children[0].inc(prompt)
        if completion > 0:
            children[1].inc(completion)

    def upstream_error(self, kind: str) -> None:
        child = self._error_children.get(kind)
        if child is None:
            child = self._error_children[kind] = self._upstream_errors.labels(kind)
        child.inc()

    def limit_hit(self, dimension: str) -> None:
        self._limits_hit.labels(dimension or "unknown").inc()

    @contextmanager
    def retrieval(self) -> Iterator[None]:
        """Times the retrieval query it wraps, labelled by whether it raised."""
        started, outcome = time.perf_counter(), "error"
        try:
            yield
            outcome = "ok"
        finally:
            self._retrieval.labels(outcome).observe(time.perf_counter() - started)


class _Snapshot(Collector):
    """Families gathered once for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def gather(nc: Client, subjects: Iterable[str], window: float) -> list[bytes]:
    """The replies of every instance answering `subjects` within `window` seconds."""
    inbox = nc.new_inbox()
    replies: list[bytes] = []

    async def collect(msg: Any) -> None:
        replies.append(msg.data)

    # a reply subject per request: NATS lets a service answer each reply subject it was
    # sent once (its response permission), and one instance answers several of these
    sub = await nc.subscribe(f"{inbox}.*", cb=collect)
    try:
        for index, subject in enumerate(subjects):
            await nc.publish(subject, b"", reply=f"{inbox}.{index}")
        await nc.flush()
        await asyncio.sleep(window)
    finally:
        await sub.unsubscribe()
    return replies


def decoded_stats(replies: Iterable[bytes]) -> list[dict[str, Any]]:
    """`$SRV.STATS` replies as dicts (unreadable ones left out)."""
    stats: list[dict[str, Any]] = []
    for data in replies:
        try:
            value = msgspec.json.decode(data)
        except msgspec.DecodeError:
            continue
        if isinstance(value, dict) and "endpoints" in value:  # not a MetricsReply
            stats.append(value)
    return stats


_metrics_reply = msgspec.json.Decoder(MetricsReply)


def service_families(replies: Iterable[bytes]) -> list[Metric]:
    """The services' own families (common.metrics), every sample labelled with the
    service and instance that sent it; families of the same name merged."""
    merged: dict[str, Metric] = {}
    for data in replies:
        try:
            reply = _metrics_reply.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        where = {"service": reply.service, "instance": reply.instance}
        for family in reply.families:
            metric = merged.get(family.name)
            if metric is None:
                metric = merged[family.name] = Metric(family.name, family.help, family.type)
            for sample in family.samples:
                metric.add_sample(sample.name, {**sample.labels, **where}, sample.value)
    return list(merged.values())


def stats_families(replies: list[dict[str, Any]]) -> list[Metric]:
    labels = ("service", "instance", "endpoint")
    requests = CounterMetricFamily(
        "ragway_service_requests",
        "Requests handled per service endpoint ($SRV.STATS)",
        labels=labels,
    )
    errors = CounterMetricFamily(
        "ragway_service_errors",
        "Requests that failed per service endpoint ($SRV.STATS)",
        labels=labels,
    )
    seconds = CounterMetricFamily(
        "ragway_service_processing_seconds",
        "Time spent handling requests per service endpoint ($SRV.STATS)",
        labels=labels,
    )
    for stats in replies:
        service, instance = str(stats.get("name", "")), str(stats.get("id", ""))
        for endpoint in stats.get("endpoints") or []:
            if not isinstance(endpoint, dict):
                continue
            values = (service, instance, str(endpoint.get("name", "")))
            requests.add_metric(values, float(endpoint.get("num_requests", 0) or 0))
            errors.add_metric(values, float(endpoint.get("num_errors", 0) or 0))
            seconds.add_metric(values, float(endpoint.get("processing_time", 0) or 0) / 1e9)
    return [requests, errors, seconds]


def queue_shells() -> tuple[GaugeMetricFamily, ...]:
    """The ingestion queue's families, empty: depth, consumer lag, in work, redelivered."""
    return (
        GaugeMetricFamily(
            "ragway_ingest_queue_messages",
            "Ingestion jobs in the work-queue stream",
            labels=["stream"],
        ),
        GaugeMetricFamily(
            "ragway_ingest_consumer_pending",
            "Ingestion jobs not yet delivered to a worker (consumer lag)",
            labels=["consumer"],
        ),
        GaugeMetricFamily(
            "ragway_ingest_consumer_ack_pending",
            "Ingestion jobs delivered and not yet acknowledged",
            labels=["consumer"],
        ),
        GaugeMetricFamily(
            "ragway_ingest_consumer_redelivered",
            "Ingestion jobs delivered more than once and still outstanding",
            labels=["consumer"],
        ),
    )


async def queue_families(nc: Client, stream: str, consumer: str, timeout: float) -> list[Metric]:
    """The ingestion queue's depth and its consumer's lag (absent ones are left out)."""
    js = nc.jetstream(timeout=timeout)
    shells = queue_shells()
    depth, pending, in_work, redelivered = shells
    try:
        info = await js.stream_info(stream)
        depth.add_metric([stream], float(info.state.messages))
        consumer_info = await js.consumer_info(stream, consumer)
        pending.add_metric([consumer], float(consumer_info.num_pending or 0))
        in_work.add_metric([consumer], float(consumer_info.num_ack_pending or 0))
        redelivered.add_metric([consumer], float(consumer_info.num_redelivered or 0))
    except (NotFoundError, TimeoutError) as exc:  # no worker has made the consumer yet
        log.info("metrics_queue_incomplete", error=type(exc).__name__)
    return list(shells)


def authorized(request: web.Request, token: str) -> bool:
    """No token configured: anyone who reaches the port; else the scraper's bearer token."""
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def exposition(metrics: GatewayMetrics, families: list[Metric]) -> bytes:
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Snapshot(families))
    return generate_latest(metrics.registry) + generate_latest(scrape)

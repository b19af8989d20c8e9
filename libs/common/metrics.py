"""What each service instance counts, for the gateway's `GET /metrics`.

Every `ServiceHost` answers `ragway.metrics.<service>` (each instance, no queue group)
with a `MetricsReply`: its families as plain values. The gateway asks every instance at
scrape time, as it does for `$SRV.STATS`, and writes their samples with `service` and
`instance` labels, so one scrape config sees the whole stack without a port per process.

The code that counts keeps plain ints (one event loop: no locks); they become families
only when scraped, so counting costs an attribute increment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import msgspec

MetricType = Literal["counter", "gauge"]
Labels = Mapping[str, str]


class Sample(msgspec.Struct, array_like=True):
    name: str
    labels: dict[str, str]
    value: float


class Family(msgspec.Struct, array_like=True):
    name: str  # a counter's without `_total` (its samples carry it)
    type: MetricType
    help: str
    samples: list[Sample]


class MetricsReply(msgspec.Struct):
    service: str
    instance: str
    families: list[Family]


# a service's families, built when scraped
MetricsSource = Callable[[], Iterable[Family]]


def counter(name: str, help: str, values: Iterable[tuple[Labels, float]] = ()) -> Family:
    return Family(
        name, "counter", help, [Sample(f"{name}_total", dict(lb), float(v)) for lb, v in values]
    )


def gauge(name: str, help: str, values: Iterable[tuple[Labels, float]] = ()) -> Family:
    return Family(name, "gauge", help, [Sample(name, dict(lb), float(v)) for lb, v in values])


def nats_families(stats: Mapping[str, Any], in_flight: int) -> list[Family]:
    """The NATS client's counters (nats-py's `Client.stats`) and the requests in work."""
    return [
        counter(
            "ragway_nats_reconnects",
            "Times the service's NATS connection was re-established",
            [({}, stats.get("reconnects", 0))],
        ),
        counter(
            "ragway_nats_messages_in", "NATS messages received", [({}, stats.get("in_msgs", 0))]
        ),
        counter("ragway_nats_messages_out", "NATS messages sent", [({}, stats.get("out_msgs", 0))]),
        gauge(
            "ragway_service_in_flight",
            "Requests the service is handling now (bounded by its max_in_flight)",
            [({}, in_flight)],
        ),
    ]

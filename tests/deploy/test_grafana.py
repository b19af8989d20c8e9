"""deploy/grafana/ragway.json: valid JSON whose every query names a metric the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from common.codec import encode
from common.metrics import MetricsReply, nats_families
from gateway.metrics import GatewayMetrics, queue_shells, service_families, stats_families
from inference_proxy.metrics import BackendErrors
from ingestion.metrics import ingest_families
from ingestion.vectors import EmbeddingStats
from ingestion.worker import WorkerStats

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ragway.json"
METRIC = re.compile(r"\bragway_[a-z_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported_samples() -> set[str]:
    """Every sample name /metrics can show (counters with `_total`, histograms' series)."""
    # what the services send (common.metrics), as the gateway merges it
    sent = [
        *nats_families({}, 0),
        *BackendErrors().families(),
        *ingest_families({}, EmbeddingStats(), WorkerStats()),
    ]
    reply = encode(MetricsReply(service="any", instance="one", families=sent))
    families = [
        *GatewayMetrics().registry.collect(),
        *stats_families([]),
        *service_families([reply]),
        *queue_shells(),
    ]
    names: set[str] = set()
    for family in families:
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def family_of(sample: str) -> str:
    for suffix in SUFFIXES:
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_dashboard_query_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = expressions(dashboard)
    assert exprs
    exported = exported_samples()
    used: set[str] = set()
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, f"no ragway metric in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{expr!r} names metrics nobody exports: {unknown}"
        used |= names
    # and nothing exported is left off the dashboard
    assert {family_of(name) for name in exported} <= {family_of(name) for name in used}


def test_panels_have_unique_ids_and_a_prometheus_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["datasource"]["type"] == "prometheus" for panel in dashboard["panels"])

"""The optional KEDA manifest (deploy/k8s/keda/), checked offline: the NetworkPolicy
against the Kubernetes schemas, the ScaledObject against the fields of KEDA's
`keda.sh/v1alpha1` ScaledObject CRD (written out below: no CRD schema ships in a
registry package), and both against the rest of the deployment and the code: the
stream and consumer it reads are the ones the workers use, the HPA it takes over is
the one deploy/k8s/ingestion.yaml defines, the monitor it reads is the NATS cluster's."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from contracts.subjects import INGEST_JOBS
from ingestion.settings import Settings as IngestionSettings
from tests.deploy.test_kubernetes import KUBERNETES_VERSION, of_kind

KEDA = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "keda"
MANIFESTS = sorted(KEDA.glob("*.yaml"))
NATS_MONITOR_PORT = 8222

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POLICIES = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "value", "periodSeconds"],
        "properties": {
            "type": {"enum": ["Pods", "Percent"]},
            "value": {"type": "integer", "minimum": 1},
            "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
        },
    },
}
_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": _POLICIES,
    },
}
# KEDA's ScaledObject (keda.sh/v1alpha1), the fields of its CRD; unknown ones refused
SCALED_OBJECT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
                "annotations": _STRING_MAP,
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer"},
                        "replicas": {"type": "integer"},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"scaleUp": _RULES, "scaleDown": _RULES},
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": _STRING_MAP,
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
# the nats-jetstream scaler's parameters (KEDA docs, scalers/nats-jetstream)
JETSTREAM_REQUIRED = {"natsServerMonitoringEndpoint", "stream", "consumer", "lagThreshold"}
JETSTREAM_KNOWN = JETSTREAM_REQUIRED | {"account", "activationLagThreshold", "useHttps"}


def docs() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def scaled_object() -> dict[str, Any]:
    [found] = [doc for doc in docs() if doc["kind"] == "ScaledObject"]
    return found


def jetstream_trigger(scaled: dict[str, Any]) -> dict[str, str]:
    [trigger] = [t for t in scaled["spec"]["triggers"] if t["type"] == "nats-jetstream"]
    return dict(trigger["metadata"])


def test_the_keda_manifests_are_valid_offline() -> None:
    assert MANIFESTS
    for doc in docs():
        if doc["kind"] == "ScaledObject":
            jsonschema.validate(doc, SCALED_OBJECT)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_scaled_object_with_a_misspelt_field_is_rejected() -> None:
    broken = copy.deepcopy(scaled_object())
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT)


def test_the_lag_trigger_reads_the_stream_and_consumer_the_workers_use() -> None:
    lag = jetstream_trigger(scaled_object())
    assert JETSTREAM_REQUIRED <= lag.keys() <= JETSTREAM_KNOWN
    defaults = IngestionSettings()
    assert (lag["stream"], lag["consumer"]) == (INGEST_JOBS.stream, INGEST_JOBS.consumer)
    assert (lag["stream"], lag["consumer"]) == (defaults.ingest_stream, defaults.ingest_consumer)
    # and no manifest moves the workers to other names
    config = of_kind("ConfigMap")["ragway-config"]["data"]
    [worker] = of_kind("Deployment")["ingestion"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in worker.get("env", [])}
    for name, expected in (
        ("RAGWAY_INGEST_STREAM", INGEST_JOBS.stream),
        ("RAGWAY_INGEST_CONSUMER", INGEST_JOBS.consumer),
    ):
        assert config.get(name, expected) == expected
        assert env.get(name, expected) == expected
    assert int(lag["lagThreshold"]) >= 1
    assert lag.get("account", "$G") == "$G"  # NATS without accounts configured


def test_the_monitor_it_reads_is_the_nats_clusters_headless_service() -> None:
    lag = jetstream_trigger(scaled_object())
    host, port = lag["natsServerMonitoringEndpoint"].rsplit(":", 1)
    assert int(port) == NATS_MONITOR_PORT
    # a clustered NATS: KEDA asks the consumer's leader, `<server name>.<this host>`
    nodes = of_kind("ConfigMap")["ragway-config"]["data"]["RAGWAY_NATS_URL"].split(",")
    for node in nodes:
        name, _, rest = node.split("://", 1)[1].partition(".")  # nats:// or tls://
        assert host.startswith(rest.split(":")[0]), (host, node)
        assert name.startswith("nats-")


def test_it_takes_over_the_ingestion_hpa_with_the_same_bounds_and_behaviour() -> None:
    scaled = scaled_object()
    hpa = of_kind("HorizontalPodAutoscaler")["ingestion"]
    deployment = of_kind("Deployment")["ingestion"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == hpa["spec"]["scaleTargetRef"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert scaled["metadata"]["annotations"]["scaledobject.keda.sh/transfer-hpa-ownership"] == (
        "true"
    )
    config = spec["advanced"]["horizontalPodAutoscalerConfig"]
    assert config["name"] == hpa["metadata"]["name"]
    assert config["behavior"] == hpa["spec"]["behavior"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
        hpa["spec"]["minReplicas"],
        hpa["spec"]["maxReplicas"],
    )
    [cpu] = [t for t in spec["triggers"] if t["type"] == "cpu"]
    [target] = [m["resource"]["target"] for m in hpa["spec"]["metrics"]]
    assert cpu["metricType"] == target["type"]
    assert int(cpu["metadata"]["value"]) == target["averageUtilization"]


def test_keda_may_reach_the_nats_monitor_and_nothing_else_is_opened() -> None:
    [policy] = [doc for doc in docs() if doc["kind"] == "NetworkPolicy"]
    nats_policy = of_kind("NetworkPolicy")["nats"]
    assert policy["spec"]["podSelector"] == nats_policy["spec"]["podSelector"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": NATS_MONITOR_PORT, "protocol": "TCP"}]
    [source] = rule["from"]
    assert source["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}
    assert source["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "keda-operator"}}

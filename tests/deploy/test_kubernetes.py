"""The Kubernetes manifests pass the API schemas (offline, kubernetes-validate ships them)
and say what a production deployment needs: probes, resources, secrets, an HPA, NATS
users (each Deployment only its own password), TLS and route auth for NATS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stack.nats_permissions import SERVICES
from stack.nats_users import K8S_PASSWORDS_SECRET, K8S_USERS_CONFIGMAP, password_variable

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests promise to work on
MANIFESTS = sorted(K8S.glob("*.yaml"))


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


@pytest.mark.parametrize("path", MANIFESTS, ids=[path.name for path in MANIFESTS])
@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_against_the_kubernetes_schemas_strictly(
    path: Path, version: str
) -> None:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_manifest_with_a_misspelt_field_is_rejected() -> None:
    deployment = of_kind("Deployment")["gateway"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_service_runs_as_a_deployment_with_probes_and_resource_bounds() -> None:
    deployments = of_kind("Deployment")
    assert set(deployments) == {"auth", "gateway", "inference-proxy", "ingestion", "retrieval"}
    for name, deployment in deployments.items():
        [container] = containers(deployment)
        assert container["image"].split(":")[1] not in ("", "latest"), name
        assert {"readinessProbe", "livenessProbe"} <= set(container), name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
        assert container["securityContext"]["runAsNonRoot"] is True


def test_ingestion_scales_with_an_hpa_and_the_gateway_is_a_service() -> None:
    [hpa] = of_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ingestion",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    service = of_kind("Service")["gateway"]
    gateway = of_kind("Deployment")["gateway"]
    assert service["spec"]["selector"].items() <= gateway["spec"]["selector"]["matchLabels"].items()


def test_secrets_referenced_by_the_deployments_exist_with_those_keys() -> None:
    secrets = of_kind("Secret")
    config = of_kind("ConfigMap")["ragway-config"]["data"]
    assert config["RAGWAY_KV_REPLICAS"] == "3"
    assert len(config["RAGWAY_NATS_URL"].split(",")) == 3
    for deployment in of_kind("Deployment").values():
        for container in containers(deployment):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], env


def test_helm_values_ask_for_a_3_node_jetstream_cluster_on_disk_and_a_pinned_qdrant() -> None:
    nats = yaml.safe_load((K8S / "helm" / "nats.values.yaml").read_text())
    cluster = nats["config"]["cluster"]
    assert (cluster["enabled"], cluster["replicas"]) == (True, 3)
    assert nats["config"]["jetstream"]["fileStore"]["enabled"] is True
    assert nats["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    qdrant = yaml.safe_load((K8S / "helm" / "qdrant.values.yaml").read_text())
    assert qdrant["image"]["tag"].startswith("v1.")
    assert qdrant["persistence"]["size"]


def test_each_deployment_logs_in_to_nats_as_itself_with_only_its_own_password() -> None:
    [passwords] = [s for name, s in of_kind("Secret").items() if name == K8S_PASSWORDS_SECRET]
    assert set(passwords["stringData"]) == {*SERVICES, "route"}
    for name, deployment in of_kind("Deployment").items():
        [container] = containers(deployment)
        env = {item["name"]: item for item in container["env"]}
        assert env["RAGWAY_NATS_USER"]["value"] == name
        ref = env["RAGWAY_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": K8S_PASSWORDS_SECRET, "key": name}
        # no other key of that Secret reaches this pod, by env or by volume
        for item in container["env"]:
            other = item.get("valueFrom", {}).get("secretKeyRef", {})
            assert other.get("name") != K8S_PASSWORDS_SECRET or other["key"] == name
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            assert volume.get("secret", {}).get("secretName") != K8S_PASSWORDS_SECRET
        # the servers' CA only (never their key), to verify them over tls://
        [ca] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v]
        assert ca["secret"] == {
            "secretName": "ragway-nats-tls",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }
        assert env["RAGWAY_NATS_CA_FILE"]["value"].startswith(
            next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == ca["name"])
        )
    urls = of_kind("ConfigMap")["ragway-config"]["data"]["RAGWAY_NATS_URL"].split(",")
    assert all(url.startswith("tls://") for url in urls)


def test_the_nats_chart_takes_every_password_from_the_secret_and_the_users_configmap() -> None:
    nats = yaml.safe_load((K8S / "helm" / "nats.values.yaml").read_text())
    env = nats["container"]["env"]
    for service in SERVICES:
        ref = env[password_variable(service)]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": K8S_PASSWORDS_SECRET, "key": service}
    assert env["NATS_ROUTE_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "route"
    users = of_kind("ConfigMap")[K8S_USERS_CONFIGMAP]
    mount = nats["container"]["patch"][0]["value"]
    volume = nats["podTemplate"]["patch"][0]["value"]
    assert volume == {"name": mount["name"], "configMap": {"name": K8S_USERS_CONFIGMAP}}
    assert nats["config"]["merge"]["$include"] == f"..{mount['mountPath'][4:]}/users.conf"
    assert "users.conf" in users["data"]


def test_nats_clients_and_routes_use_tls_and_routes_log_in() -> None:
    config = yaml.safe_load((K8S / "helm" / "nats.values.yaml").read_text())["config"]
    assert config["nats"]["tls"] == {"enabled": True, "secretName": "ragway-nats-tls"}
    cluster = config["cluster"]
    assert cluster["tls"] == {"enabled": True, "secretName": "ragway-nats-route-tls"}
    assert cluster["merge"]["authorization"]["user"] == "route"
    assert cluster["merge"]["authorization"]["password"] == "<< $NATS_ROUTE_PASSWORD >>"
    env = yaml.safe_load((K8S / "helm" / "nats.values.yaml").read_text())["container"]["env"]
    for index, route in enumerate(cluster["merge"]["routes"]):
        variable = route.removeprefix("<< $").removesuffix(" >>")
        assert env[variable] == (
            f"tls://route:$(NATS_ROUTE_PASSWORD)@nats-{index}.nats-headless.ragway.svc:6222"
        )
    assert len(cluster["merge"]["routes"]) == cluster["replicas"]

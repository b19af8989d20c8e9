"""What a deployment exposes: sample secrets refused at start, the NATS monitor never on
a reachable address, reverse proxies named, backends named by index in errors.

Findings: deploy/k8s/config.yaml shipped a JWT-secret placeholder that passed the length
check; the NATS monitor port was open (compose: on every container's network); internal
backend hosts, with any credentials in their URL, appeared in user-facing errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from common.bus import Bus
from common.errors import RagwayError
from common.nats_conn import connect_nats
from common.placeholders import is_placeholder
from common.settings import load_settings
from retrieval.settings import Settings as RetrievalSettings
from stack.nats_server import NatsServer, NatsServerConfig, free_port, write_config
from stack.settings import StackSettings
from tests.fakes.openai_fake import OpenAIFake
from tests.inference_proxy.conftest import chat_body, complete, running_proxy

pytestmark = pytest.mark.security

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _k8s(kind: str) -> dict[str, dict[str, Any]]:
    docs = [d for path in K8S.glob("*.yaml") for d in yaml.safe_load_all(path.read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _env_example(name: str) -> dict[str, str]:
    lines = (ROOT / "deploy" / "env" / name).read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_every_sample_secret_the_deploy_files_ship_is_refused_at_start() -> None:
    secrets = _k8s("Secret")["ragway-secrets"]["stringData"]
    samples = {
        "jwt": secrets["jwt-secret"],
        "qdrant": secrets["qdrant-api-key"],
        "qdrant.env": _env_example("qdrant.env.example")["RAGWAY_QDRANT_API_KEY"],
    }
    for name, value in samples.items():
        assert is_placeholder(value), name
    # long enough for the length check: only the placeholder check stops it
    assert len(samples["jwt"]) >= 32
    with pytest.raises(ValueError, match="sample value"):
        AuthSettings(jwt_secret=samples["jwt"]).check()
    for value in (samples["qdrant"], samples["qdrant.env"]):
        with pytest.raises(SystemExit, match="sample value"):
            load_settings(RetrievalSettings, {"RAGWAY_QDRANT_API_KEY": value})
    AuthSettings(jwt_secret="a-real-generated-secret-" + "k" * 24).check()  # a real one passes


async def test_auth_does_not_start_on_the_k8s_sample_secret(nats_url: str) -> None:
    sample = _k8s("Secret")["ragway-secrets"]["stringData"]["jwt-secret"]
    with pytest.raises(ValueError, match="RAGWAY_JWT_SECRET"):
        async with serve_auth(AuthSettings(nats_url=nats_url, jwt_secret=sample)):
            pass


def test_the_embedded_nats_server_has_no_http_monitor_unless_asked(tmp_path: Path) -> None:
    assert StackSettings().nats_monitor_port == 0
    plain = write_config(NatsServerConfig(port=4222, store_dir=tmp_path / "a")).read_text()
    assert "http" not in plain
    asked = NatsServerConfig(port=4222, monitor_port=8222, store_dir=tmp_path / "b")
    assert "http: 127.0.0.1:8222" in write_config(asked).read_text()


async def test_without_a_monitor_readiness_is_asked_over_nats(tmp_path: Path) -> None:
    server = NatsServer(NatsServerConfig(port=free_port(), store_dir=tmp_path))
    await server.astart()
    try:
        async with connect_nats([server.url], name="probe") as nc:
            info = await nc.jetstream().account_info()  # JetStream answered at start
        assert info.limits is not None
    finally:
        await server.astop()


def test_the_nats_monitor_is_never_published_in_compose_or_k8s() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert "8222" not in str(port), name
    cluster_conf = (ROOT / "deploy" / "nats" / "cluster.conf").read_text()
    [http] = [line for line in cluster_conf.splitlines() if line.startswith("http:")]
    assert http.split()[1].startswith("127.0.0.1:"), http
    policy = _k8s("NetworkPolicy")["nats"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert allowed == {4222, 6222}  # the monitor: nobody (the kubelet's probes aside)


def test_the_gateway_is_told_which_reverse_proxies_to_believe() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert compose["services"]["gateway"]["environment"]["RAGWAY_TRUSTED_PROXIES"]
    [container] = _k8s("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["RAGWAY_TRUSTED_PROXIES"]
    assert "RAGWAY_TRUSTED_PROXIES" in (ROOT / "README.md").read_text()


async def test_backend_errors_name_the_backend_by_index_never_its_url(
    tmp_path: Path,
) -> None:
    server = NatsServer(NatsServerConfig(port=free_port(), store_dir=tmp_path))
    await server.astart()
    fake = OpenAIFake(api_key=None)
    await fake.start()
    try:
        url = fake.base_url.replace("://", "://ragway:s3cr3t-in-url@")
        async with (
            running_proxy(server.url, openai_api_base_urls=url),
            connect_nats([server.url], name="client") as nc,
        ):
            bus = Bus(nc)
            await complete(bus, chat_body("gpt-fake"))  # the model list is now cached
            await fake.stop()
            with pytest.raises(RagwayError) as down:
                await complete(bus, chat_body("gpt-fake"))
        detail = down.value.detail
        assert detail == "OpenAI-compatible backend #0 is unreachable"
        assert "s3cr3t" not in detail and "127.0.0.1" not in detail
        assert str(fake.port) not in msgspec.json.encode(detail).decode()
    finally:
        await fake.stop()
        await server.astop()

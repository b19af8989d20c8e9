"""deploy/nats/users.conf: the deployments' NATS users, generated from the contract's
subjects, current, and accepted by nats-server with passwords from the environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from common.settings import ServiceSettings, load_settings
from stack.__main__ import USERS_CONF_HEADER
from stack.nats_permissions import SERVICES
from stack.nats_server import nats_server_binary
from stack.nats_users import (
    deployment_authorization,
    k8s_manifest,
    password_variable,
    write_deployment_secrets,
)

ROOT = Path(__file__).resolve().parents[2]
USERS_CONF = ROOT / "deploy" / "nats" / "users.conf"
K8S_MANIFEST = ROOT / "deploy" / "k8s" / "nats-auth.yaml"


def test_users_conf_is_generated_from_the_current_subjects() -> None:
    expected = USERS_CONF_HEADER + deployment_authorization()
    assert USERS_CONF.read_text() == expected, (
        "regenerate: python -m stack nats-users > deploy/nats/users.conf"
    )


def test_the_k8s_users_configmap_is_generated_from_the_same_users_conf() -> None:
    expected = k8s_manifest(USERS_CONF_HEADER + deployment_authorization())
    assert K8S_MANIFEST.read_text() == expected, (
        "regenerate: python -m stack nats-users --k8s > deploy/k8s/nats-auth.yaml"
    )


def test_users_conf_holds_no_password_and_names_one_variable_per_service() -> None:
    text = USERS_CONF.read_text()
    for service in SERVICES:
        assert f'user: "{service}"' in text
        assert f"password: ${password_variable(service)}\n" in text
    assert text.count("password:") == len(SERVICES)


def test_nats_server_accepts_users_conf_with_passwords_from_the_environment(
    tmp_path: Path,
) -> None:
    # nats-server resolves an include beside the including file, as in the containers
    (tmp_path / "users.conf").write_text(USERS_CONF.read_text())
    config = tmp_path / "server.conf"
    config.write_text("listen: 127.0.0.1:4222\ninclude users.conf\n")
    env = {**os.environ, **{password_variable(s): f"pw-{s}" for s in SERVICES}}
    done = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def test_nats_secrets_gives_the_servers_every_password_and_each_service_only_its_own(
    tmp_path: Path,
) -> None:
    written = write_deployment_secrets(tmp_path)
    assert len(written) == len(SERVICES) + 1
    server = dict(line.split("=", 1) for line in (tmp_path / "nats.env").read_text().splitlines())
    route = server.pop("NATS_ROUTE_PASSWORD")
    for node in (1, 2, 3):
        assert server.pop(f"NATS_ROUTE_{node}") == f"nats-route://route:{route}@nats-{node}:6222"
    assert route not in server.values()
    for name in SERVICES:
        own = (tmp_path / f"nats-{name}.env").read_text()
        assert own == f"RAGWAY_NATS_PASSWORD={server[password_variable(name)]}\n"
        others = [p for variable, p in server.items() if variable != password_variable(name)]
        assert not any(password in own for password in others)
    assert len(set(server.values())) == len(SERVICES)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o600
    before = (tmp_path / "nats.env").read_text()
    assert write_deployment_secrets(tmp_path) == []  # made once: never rotated by accident
    assert (tmp_path / "nats.env").read_text() == before


def test_a_service_with_a_nats_user_and_no_password_refuses_to_start() -> None:
    with pytest.raises(SystemExit, match="RAGWAY_NATS_PASSWORD is empty"):
        load_settings(ServiceSettings, {"RAGWAY_NATS_USER": "gateway"})
    env = {"RAGWAY_NATS_USER": "gateway", "RAGWAY_NATS_PASSWORD": "s3cr3t-pw"}
    auth = load_settings(ServiceSettings, env).nats_auth()
    assert (auth.user, auth.password) == ("gateway", "s3cr3t-pw")
    assert "s3cr3t-pw" not in repr(auth)  # a logged settings value never shows it

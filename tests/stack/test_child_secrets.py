"""Each child of the launcher gets the secrets its own settings read and no other's."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import msgspec

from common.settings import Settings, variables_of
from stack.child_secrets import is_secret, own_secrets_only
from stack.launcher import NATS_USERS, Stack
from stack.settings import StackSettings

PACKAGES = sorted(NATS_USERS)
# a settings field whose name says it holds a secret (its variable must count as one)
SECRET_FIELD = re.compile(r"(secret|password|api_keys?|token)$")

SECRETS = {
    "RAGWAY_JWT_SECRET": "auth",
    "WEBUI_SECRET_KEY": "auth",
    "RAGWAY_METRICS_TOKEN": "gateway",
    "RAGWAY_OPENAI_API_KEYS": "inference_proxy",
    "OPENAI_API_KEY": "inference_proxy",
    "RAGWAY_QDRANT_API_KEY": "retrieval",
    "RAGWAY_RERANKER_API_KEY": "retrieval",
}


def settings_types() -> dict[str, type[Settings]]:
    return {
        package: importlib.import_module(f"{package}.settings").Settings for package in PACKAGES
    }


def test_every_secret_field_of_every_service_is_a_secret_variable() -> None:
    found = 0
    for settings_type in settings_types().values():
        for field in msgspec.structs.fields(settings_type):
            if SECRET_FIELD.search(field.name):
                found += 1
                names = [n for n in variables_of(settings_type) if field.name.upper() in n]
                assert names and all(is_secret(name) for name in names), field.name
    assert found >= len(SECRETS) - 2  # the scan sees the fields (aliases are extra names)


def test_each_service_is_handed_its_own_secrets_and_no_others(tmp_path: Path) -> None:
    environ = {name: f"secret-of-{owner}-{name}" for name, owner in SECRETS.items()}
    environ |= {"PATH": "/usr/bin", "GITHUB_TOKEN": "unrelated", "RAGWAY_LOG_LEVEL": "debug"}
    stack = Stack(StackSettings(data_dir=str(tmp_path)), environ)
    for package in PACKAGES:
        env = stack.child_env(package)
        own = {name for name, owner in SECRETS.items() if owner == package}
        assert {name for name in SECRETS if name in env} == own, package
        assert env["PATH"] == "/usr/bin" and env["RAGWAY_LOG_LEVEL"] == "debug"
        assert "GITHUB_TOKEN" not in env  # a secret no service reads reaches none
    # a helper program (no package) gets no secret at all
    assert not any(is_secret(name) for name in own_secrets_only(environ, ""))

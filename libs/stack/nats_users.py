"""NATS users of the embedded stack: one per service, passwords made at first start.

The passwords live in `<data dir>/nats-users.json` (mode 0600, made once, kept across
restarts); the nats-server config gets an `authorization {}` block with each user's
permissions (`stack.nats_permissions`), and each service is handed only its own user.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import msgspec

from common.settings import NatsAuth
from stack.nats_permissions import SERVICES, USERS, Permissions, permissions_for

USERS_FILE = "nats-users.json"
# compose's nats-servers: nats-1..3 (deploy/nats/cluster.conf routes to each)
COMPOSE_NODES = (1, 2, 3)
# the routes' password in the nats-servers' environment
ROUTE_PASSWORD_VARIABLE = "NATS_ROUTE_PASSWORD"


def load_or_create_users(data_dir: Path) -> dict[str, NatsAuth]:
    """Every user's credentials, making (and saving, 0600) those not made yet."""
    path = data_dir / USERS_FILE
    passwords: dict[str, str] = {}
    if path.exists():
        passwords = msgspec.json.decode(path.read_bytes(), type=dict[str, str])
    missing = [user for user in USERS if not passwords.get(user)]
    if missing:
        for user in missing:
            passwords[user] = secrets.token_urlsafe(32)
        write_private(path, json.dumps(passwords, indent=2, sort_keys=True) + "\n")
    return {user: NatsAuth(user=user, password=passwords[user]) for user in USERS}


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, never readable by others meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def authorization_block(users: dict[str, NatsAuth], bucket_prefix: str) -> str:
    """nats-server's `authorization { users = [...] }` with each user's permissions."""
    entries = "".join(
        _user_entry(name, _quote(auth.password), permissions_for(name, bucket_prefix))
        for name, auth in users.items()
    )
    return f"authorization {{\n  users = [\n{entries}  ]\n}}\n"


def password_variable(user: str) -> str:
    """The environment variable that holds `user`'s password in a deployment's nats-server."""
    return "NATS_PASSWORD_" + user.upper().replace("-", "_")


def deployment_authorization(bucket_prefix: str = "ragway") -> str:
    """The same block for compose/k8s: passwords come from the server's environment
    (`$NATS_PASSWORD_<USER>`, filled from a Secret), never from the file."""
    entries = "".join(
        _user_entry(name, "$" + password_variable(name), permissions_for(name, bucket_prefix))
        for name in SERVICES
    )
    return f"authorization {{\n  users = [\n{entries}  ]\n}}\n"


def write_deployment_secrets(env_dir: Path) -> list[Path]:
    """Compose's env files: `nats.env` (every password, and the route password with the
    route URLs that carry it, for the nats-servers) and one `nats-<service>.env` per
    service (its own password only), made once, 0600."""
    server = env_dir / "nats.env"
    if server.exists():
        return []
    passwords = {name: secrets.token_urlsafe(32) for name in SERVICES}
    route = secrets.token_urlsafe(32)
    written = [server]
    write_private(
        server,
        "".join(f"{password_variable(n)}={p}\n" for n, p in passwords.items())
        + f"{ROUTE_PASSWORD_VARIABLE}={route}\n"
        + "".join(
            f"NATS_ROUTE_{n}=nats-route://route:{route}@nats-{n}:6222\n" for n in COMPOSE_NODES
        ),
    )
    for name, password in passwords.items():
        path = env_dir / f"nats-{name}.env"
        write_private(path, f"RAGWAY_NATS_PASSWORD={password}\n")
        written.append(path)
    return written


def _user_entry(user: str, password: str, permissions: Permissions) -> str:
    responses = "      allow_responses: true\n" if permissions.allow_responses else ""
    return (
        f"  {{\n    user: {_quote(user)}\n    password: {password}\n"
        f"    permissions: {{\n"
        f"      publish: {{ allow: {_list(permissions.publish)} }}\n"
        f"      subscribe: {{ allow: {_list(permissions.subscribe)} }}\n"
        f"{responses}    }}\n  }}\n"
    )


def _list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(_quote(item) for item in items) + "]"


def _quote(value: str) -> str:
    # a double-quoted string is literal in nats-server's config ($ is no variable there)
    return json.dumps(value)


# Kubernetes: the Secret both the nats-servers and the services read passwords from (each
# Deployment only its own key), and the ConfigMap with users.conf (permissions, no password)
K8S_PASSWORDS_SECRET = "ragway-nats-passwords"
K8S_USERS_CONFIGMAP = "ragway-nats-users"
# the key of the password the nats-servers' routes log in to each other with
ROUTE_PASSWORD_KEY = "route"


def k8s_manifest(users_conf: str) -> str:
    """deploy/k8s/nats-auth.yaml: the passwords Secret (sample values, refused at start) and
    the ConfigMap holding `users_conf`."""
    samples = "".join(
        f"  {name}: replace-with-a-random-password-for-{name}\n"
        for name in (*SERVICES, ROUTE_PASSWORD_KEY)
    )
    conf = "".join(f"    {line}\n" if line else "\n" for line in users_conf.splitlines())
    return (
        "# Generated by `python -m stack nats-users --k8s > deploy/k8s/nats-auth.yaml`\n"
        "# (tests/deploy checks it is current). NATS users: one per service, allowed only its\n"
        f"# own subjects. `{K8S_PASSWORDS_SECRET}`: every password, read by the nats-servers\n"
        "# (deploy/k8s/helm/nats.values.yaml) and by each Deployment for its own key only;\n"
        "# replace the samples (services refuse them), e.g. for each key:\n"
        '#   python -c "import secrets; print(secrets.token_urlsafe(32))"\n'
        f"# `{ROUTE_PASSWORD_KEY}`: what the nats-servers' cluster routes log in with.\n"
        f"# `{K8S_USERS_CONFIGMAP}`: the users and their permissions (no password in it).\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: Secret\n"
        "metadata:\n"
        f"  name: {K8S_PASSWORDS_SECRET}\n"
        "  namespace: ragway\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: ragway\n"
        "    app.kubernetes.io/name: nats-passwords\n"
        "type: Opaque\n"
        "stringData:\n"
        f"{samples}"
        "---\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        f"  name: {K8S_USERS_CONFIGMAP}\n"
        "  namespace: ragway\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: ragway\n"
        "    app.kubernetes.io/name: nats-users\n"
        "data:\n"
        "  users.conf: |\n"
        f"{conf}"
    )

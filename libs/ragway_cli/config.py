"""Where the CLI finds the server and the credential: options, environment, stored config.

The stored config is `<user config dir>/ragway/config.json` (on Linux
`$XDG_CONFIG_HOME/ragway/config.json`), written with 0600 permissions since it holds a
credential.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec
import platformdirs

DEFAULT_URL = "http://127.0.0.1:3000"
# the environment the `ragway` command reads (listed for common.settings' misspelling check)
VARIABLES = (
    "RAGWAY_URL",
    "RAGWAY_API_KEY",
    "RAGWAY_PASSWORD",
    "RAGWAY_MODEL",
    "RAGWAY_CONFIG_DIR",
    "RAGWAY_DEBUG",
)
CONFIG_NAME = "config.json"


class StoredConfig(msgspec.Struct, kw_only=True, omit_defaults=True):
    url: str = ""
    api_key: str = ""
    # a session token, kept only when the account already had an API key at login
    token: str = ""
    token_expires_at: int = 0


class Connection(msgspec.Struct, frozen=True, kw_only=True):
    """What one command run talks to and with which credential ("" for none)."""

    url: str
    credential: str
    credential_source: str  # "environment", "config" or "none"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get("RAGWAY_CONFIG_DIR", "").strip()
    base = Path(override) if override else Path(platformdirs.user_config_dir("ragway"))
    return base / CONFIG_NAME


def load_config(path: Path) -> StoredConfig:
    try:
        return msgspec.json.decode(path.read_bytes(), type=StoredConfig)
    except FileNotFoundError:
        return StoredConfig()
    except (OSError, msgspec.DecodeError):
        # An unreadable config must not block commands that pass the key in the environment.
        return StoredConfig()


def save_config(path: Path, config: StoredConfig) -> None:
    """Write atomically, readable by the owner only (0600, directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask or an old file must not widen it
        os.write(fd, msgspec.json.format(msgspec.json.encode(config)))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def resolve(url_option: str | None, environ: Mapping[str, str], stored: StoredConfig) -> Connection:
    """Option > environment > stored config > default, for the URL and the credential."""
    url = (url_option or environ.get("RAGWAY_URL", "") or stored.url or DEFAULT_URL).rstrip("/")
    key = environ.get("RAGWAY_API_KEY", "").strip()
    if key:
        return Connection(url=url, credential=key, credential_source="environment")
    if stored.api_key:
        return Connection(url=url, credential=stored.api_key, credential_source="config")
    if stored.token and stored.token_expires_at > time.time():
        return Connection(url=url, credential=stored.token, credential_source="config")
    return Connection(url=url, credential="", credential_source="none")

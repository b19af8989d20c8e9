"""Which secrets a child of the launcher sees: the ones its own settings read, no other's.

`make run` is started from one environment holding every secret (the JWT secret, backend
API keys, the Qdrant key, the metrics token...). Each service is handed only the secret
variables its settings type reads, so a process that is compromised (or a plugin that
escapes its sandbox into the proxy) learns its own secrets only. A variable counts as a
secret by its name (`*SECRET*`, `*PASSWORD*`, `*API_KEY(S)*`, `*TOKEN*`); every other
variable (PATH, proxies, locale, ragway's plain settings) passes through unchanged.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Mapping

from common.settings import Settings, variables_of

SECRET_NAME = re.compile(r"(?:SECRET|PASSWORD|API_KEYS?|TOKEN)(?:_|$)")


def is_secret(name: str) -> bool:
    return SECRET_NAME.search(name.upper()) is not None


@functools.cache
def variables_read_by(package: str) -> frozenset[str]:
    """Every variable `python -m <package>` reads through its `<package>.settings.Settings`."""
    if not package:
        return frozenset()
    settings_type = importlib.import_module(f"{package}.settings").Settings
    assert issubclass(settings_type, Settings), package
    return frozenset(variables_of(settings_type))


def own_secrets_only(environ: Mapping[str, str], package: str) -> dict[str, str]:
    """`environ` without the secret variables `package` does not read (all of them for
    no package: a helper program such as llama-server)."""
    own = variables_read_by(package)
    return {name: value for name, value in environ.items() if not is_secret(name) or name in own}

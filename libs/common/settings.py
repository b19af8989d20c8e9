"""Settings from the environment: one base per kind, decoded once in __main__.

Every field `x` of a settings Struct is read from `RAGWAY_X`, and from the other names the
class declares in `aliases` (Open WebUI's, for the same setting). A field whose type is a
`SettingsGroup` (settings several services share, e.g. the embedder's) is read from the
group's own flat variable names, over the field's default. Values are strings in the
environment; msgspec converts them and reports a bad one by name, and the class's
`check()` (run on every construction) rejects what types alone cannot express.

Every process gets the whole environment (the launcher passes it on; deployments share
one config map), so a variable one process does not read may be another's. A `RAGWAY_*`
variable that no ragway process reads is most likely misspelt: `configure` logs it with
the closest known name.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
import structlog

from common.logging import configure_logging

PREFIX = "RAGWAY_"
CACHE_DIR_VARIABLE = "RAGWAY_CACHE_DIR"
HOME_CACHE_DIR = "~/.cache/ragway"


def default_cache_dir() -> str:
    """Where models and tool venvs live on this machine: `RAGWAY_CACHE_DIR`, else
    ~/.cache/ragway. Read when a settings value is built (never at import), so every
    settings type and every tool that defaults to "the machine's cache" agrees with
    `make setup`, which honours the same variable."""
    return os.environ.get(CACHE_DIR_VARIABLE) or HOME_CACHE_DIR


Positive = Annotated[int, msgspec.Meta(ge=1)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9_-]+$")]

# Where ragway's processes declare what they read from the environment: settings classes
# (subclasses of `Settings`) and, for names read elsewhere, a module-level `VARIABLES`.
# Settings modules import nothing heavy, so listing them costs a few milliseconds.
SETTINGS_MODULES = (
    "stack.settings",
    "gateway.settings",
    "auth.settings",
    "inference_proxy.settings",
    "ingestion.settings",
    "retrieval.settings",
    "embedding.settings",
    "ragway_cli.config",
)


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The root of every settings Struct: aliases on the class, checks in one place."""

    # field -> other variable names accepted for it (Open WebUI's), in order after ours
    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Reject what the field types alone cannot express (raise ValueError)."""


class ServiceSettings(Settings, kw_only=True):
    """The fields every ragway service reads."""

    nats_url: str = "nats://127.0.0.1:4222"  # comma-separated for a cluster
    log_level: str = "info"
    # KV buckets and object stores are `<prefix>_<name>`; tests isolate by a fresh prefix
    bucket_prefix: Name = "ragway"
    kv_replicas: Positive = 1  # 3 on a NATS cluster (also the job stream's replicas)
    # NATS requests this process handles at once; one more is answered busy (503) at once
    max_in_flight: Positive = 512

    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


class SettingsGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings several services share, nested under one field of each.

    Each field is read from `RAGWAY_<env_names[field]>` (default: the field's name), so
    the variables stay flat and the same in every service that nests the group.
    """

    env_names: ClassVar[Mapping[str, str]] = {}


S = TypeVar("S", bound=Settings)


def load_settings(settings_type: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Build `settings_type` from the environment; a bad value ends the process, by name."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(settings_type):
        group = _group_type(field.type)
        if group is not None:
            values = _read_group(group, env)
            if values:
                default = _default_of(field)
                base = msgspec.to_builtins(default) if default is not None else {}
                raw[field.name] = {**base, **values}
            continue
        names = (PREFIX + field.name.upper(), *settings_type.aliases.get(field.name, ()))
        for name in names:
            if env.get(name, "") != "":
                raw[field.name] = _structured(name, env[name]) if _is_json(field) else env[name]
                break
    try:
        return msgspec.convert(raw, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"invalid configuration: {exc}") from exc


def configure(settings_type: type[S], environ: Mapping[str, str] | None = None) -> S:
    """What a process's __main__ does first: settings, logging, misspelt variables."""
    env = os.environ if environ is None else environ
    settings = load_settings(settings_type, env)
    configure_logging(getattr(settings, "log_level", "info"))
    log = structlog.get_logger()
    for name, closest in unknown_variables(env):
        log.warning("unknown_setting", variable=name, closest=closest)
    return settings


def variables_of(settings_type: type[Settings]) -> Iterator[str]:
    """Every variable name `settings_type` reads."""
    for field in msgspec.structs.fields(settings_type):
        group = _group_type(field.type)
        if group is not None:
            yield from _group_names(group).values()
        else:
            yield PREFIX + field.name.upper()
            yield from settings_type.aliases.get(field.name, ())


def known_variables() -> frozenset[str]:
    """Every `RAGWAY_*` variable some ragway process reads (and the aliases)."""
    names: set[str] = set()
    for module_name in SETTINGS_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a deployment without that part
            continue
        names.update(getattr(module, "VARIABLES", ()))
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Settings)
                and value.__module__ == module_name
            ):
                names.update(variables_of(value))
            elif (
                isinstance(value, type)
                and issubclass(value, SettingsGroup)
                and value.__module__ == module_name
            ):
                names.update(_group_names(value).values())
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """`RAGWAY_*` variables no ragway process reads, each with the closest known name."""
    known = known_variables()
    # compared without the prefix, which every candidate shares
    suffixes = sorted(name.removeprefix(PREFIX) for name in known if name.startswith(PREFIX))
    found: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1)
            found.append((name, PREFIX + close[0] if close else None))
    return found


def split_list(value: str) -> list[str]:
    """Split a `;`-separated setting (Open WebUI's convention), dropping empty items."""
    return [item.strip() for item in value.split(";") if item.strip()]


def _is_json(field: msgspec.structs.FieldInfo) -> bool:
    """A mapping or list setting: its variable holds JSON (`{"m": ["n"]}`)."""
    origin = getattr(field.type, "__origin__", field.type)
    return origin in (dict, list)


def _structured(name: str, value: str) -> Any:
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise SystemExit(f"invalid configuration: {name} is not JSON ({exc})") from exc


def _group_type(annotation: Any) -> type[SettingsGroup] | None:
    if isinstance(annotation, type) and issubclass(annotation, SettingsGroup):
        return annotation
    return None


def _group_names(group: type[SettingsGroup]) -> dict[str, str]:
    return {
        field.name: PREFIX + group.env_names.get(field.name, field.name.upper())
        for field in msgspec.structs.fields(group)
    }


def _read_group(group: type[SettingsGroup], env: Mapping[str, str]) -> dict[str, str]:
    return {
        field: env[name] for field, name in _group_names(group).items() if env.get(name, "") != ""
    }


def _default_of(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return None

"""Decode a service's Settings Struct from the environment, once, in __main__."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

PREFIX = "RAGWAY_"
CACHE_DIR_VARIABLE = "RAGWAY_CACHE_DIR"
HOME_CACHE_DIR = "~/.cache/ragway"


def default_cache_dir() -> str:
    """Where models and tool venvs live on this machine: `RAGWAY_CACHE_DIR`, else
    ~/.cache/ragway. Read when a settings value is built (never at import), so every
    settings type and every tool that defaults to "the machine's cache" agrees with
    `make setup`, which honours the same variable."""
    return os.environ.get(CACHE_DIR_VARIABLE) or HOME_CACHE_DIR


def load_settings(
    settings_type: type[T],
    environ: Mapping[str, str] | None = None,
    aliases: Mapping[str, tuple[str, ...]] | None = None,
) -> T:
    """Build `settings_type` from `RAGWAY_<FIELD>` variables (and optional alias names).

    Values are strings in the environment; msgspec converts them to the field types and
    reports a bad one by name.
    """
    env = os.environ if environ is None else environ
    aliases = aliases or {}
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(settings_type):
        names = (PREFIX + field.name.upper(), *aliases.get(field.name, ()))
        for name in names:
            if name in env and env[name] != "":
                raw[field.name] = env[name]
                break
    try:
        return msgspec.convert(raw, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"invalid configuration: {exc}") from exc


def split_list(value: str) -> list[str]:
    """Split a `;`-separated setting (Open WebUI's convention), dropping empty items."""
    return [item.strip() for item in value.split(";") if item.strip()]

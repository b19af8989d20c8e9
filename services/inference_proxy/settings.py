"""The inference-proxy's configuration and the backends it names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import msgspec

from common.settings import ServiceSettings, split_list


class Settings(ServiceSettings, kw_only=True):
    """Functions (pipes) and tools live in KV buckets `<prefix>_functions`, `<prefix>_tools`."""

    # Open WebUI's unprefixed variable names, accepted besides RAGWAY_<FIELD>
    aliases: ClassVar = {
        "openai_api_base_urls": ("OPENAI_API_BASE_URLS", "OPENAI_API_BASE_URL"),
        "openai_api_keys": ("OPENAI_API_KEYS", "OPENAI_API_KEY"),
        "ollama_base_urls": ("OLLAMA_BASE_URLS", "OLLAMA_BASE_URL"),
    }

    openai_api_base_urls: str = ""
    openai_api_keys: str = ""
    ollama_base_urls: str = ""
    backend_connect_timeout_seconds: float = 5.0
    # time to the response headers, or to the whole answer when not streaming
    backend_timeout_seconds: float = 120.0
    # longest gap allowed between two pieces of a stream
    backend_idle_timeout_seconds: float = 60.0
    models_cache_seconds: float = 10.0
    models_fetch_timeout_seconds: float = 3.0
    max_backend_connections: int = 256
    # every call of admin code runs in a worker process under these limits
    function_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    function_memory_mb: Annotated[int, msgspec.Meta(ge=64)] = 512
    sandbox_spares: Annotated[int, msgspec.Meta(ge=0)] = 2
    sandbox_max_running: Annotated[int, msgspec.Meta(ge=1)] = 8
    # model calls in one completion with `tool_ids` before giving up
    max_tool_rounds: Annotated[int, msgspec.Meta(ge=1)] = 5
    # model id -> the models tried, in order, when every backend of it failed before its
    # first token (RAGWAY_MODEL_FALLBACKS='{"m": ["n", ...]}')
    model_fallbacks: dict[str, list[str]] = {}
    # a backend failing this many requests (or model-list health checks) in a row is
    # left out for `backend_eject_seconds`, doubled at each failed retry up to the max
    backend_eject_after_failures: Annotated[int, msgspec.Meta(ge=1)] = 1
    backend_eject_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    backend_eject_max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0

    def check(self) -> None:
        for model, fallbacks in self.model_fallbacks.items():
            if not model or not all(fallbacks) or model in fallbacks:
                raise ValueError(
                    f"model_fallbacks: {model!r} -> {fallbacks}: model ids must be non-empty "
                    "and a model cannot fall back to itself"
                )
            if len(set(fallbacks)) != len(fallbacks):
                raise ValueError(f"model_fallbacks: {model!r} names a fallback twice")
        if self.backend_eject_max_seconds < self.backend_eject_seconds:
            raise ValueError("backend_eject_max_seconds is below backend_eject_seconds")


@dataclass(frozen=True, slots=True)
class Backend:
    kind: Literal["openai", "ollama"]
    idx: int  # position in its `;`-separated list: Open WebUI's urlIdx / urls entries
    base_url: str
    api_key: str = ""

    @property
    def host(self) -> str:
        """host:port for the logs (no userinfo: URLs may carry credentials)."""
        rest = self.base_url.split("://", 1)[-1]
        return rest.split("/", 1)[0].rpartition("@")[2]

    @property
    def key(self) -> tuple[str, int]:
        return self.kind, self.idx

    @property
    def label(self) -> str:
        """How errors that reach clients name the backend: by kind and index, as Open
        WebUI's urlIdx does, never by URL (internal hosts, credentials in userinfo)."""
        kind = "OpenAI-compatible" if self.kind == "openai" else "Ollama"
        return f"{kind} backend #{self.idx}"


def configured_backends(settings: Settings) -> tuple[list[Backend], list[Backend]]:
    """OpenAI-compatible and Ollama backends, keys paired with URLs like Open WebUI."""
    openai_urls = [url.rstrip("/") for url in split_list(settings.openai_api_base_urls)]
    keys = [key.strip() for key in settings.openai_api_keys.split(";")]
    if len(keys) == 1 and len(openai_urls) > 1:
        keys = keys * len(openai_urls)  # one key for every URL
    keys += [""] * (len(openai_urls) - len(keys))
    openai = [Backend("openai", idx, url, keys[idx]) for idx, url in enumerate(openai_urls)]
    ollama = [
        Backend("ollama", idx, url.rstrip("/"))
        for idx, url in enumerate(split_list(settings.ollama_base_urls))
    ]
    return openai, ollama

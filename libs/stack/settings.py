"""Configuration of the embedded stack launcher (`python -m stack run`)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from common.settings import Settings, default_cache_dir

# Open WebUI's names and ours: any of them set means "use these backends, no local LLM".
BACKEND_VARIABLES = (
    "OPENAI_API_BASE_URLS",
    "OPENAI_API_BASE_URL",
    "OLLAMA_BASE_URLS",
    "OLLAMA_BASE_URL",
    "RAGWAY_OPENAI_API_BASE_URLS",
    "RAGWAY_OLLAMA_BASE_URLS",
)

# The python packages started in order before the gateway; `python -m <pkg>` runs each.
DEFAULT_SERVICES = "auth,inference_proxy,ingestion,retrieval"


class StackSettings(Settings, kw_only=True):
    data_dir: str = "./data"
    cache_dir: str = msgspec.field(default_factory=default_cache_dir)
    port: int = 3000  # the gateway's HTTP port (the gateway reads RAGWAY_PORT too)
    nats_port: int = 4222
    # nats-server's HTTP monitor (no authentication): 0, the default, keeps it off
    nats_monitor_port: int = 0
    llm_port: int = 8081
    local_llm: bool = True  # start llama-server when no backend is configured
    llm_threads: int = 0  # 0: about half the cores
    services: str = DEFAULT_SERVICES
    start_timeout_s: float = 120.0
    # above the gateway's shutdown grace (25 s) and ingestion's stop grace (20 s)
    stop_timeout_s: float = 30.0
    log_level: str = "info"

    def service_list(self) -> list[str]:
        return [name.strip() for name in self.services.split(",") if name.strip()]


def backends_configured(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name, "").strip() for name in BACKEND_VARIABLES)

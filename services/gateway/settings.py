"""Gateway configuration: decoded once in __main__, passed down explicitly."""

from __future__ import annotations

import msgspec


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    nats_url: str = "nats://127.0.0.1:4222"
    log_level: str = "info"
    host: str = "127.0.0.1"
    # 0 binds any free port (tests); the handle from serve() tells the real one.
    port: int = 3000
    request_timeout_seconds: float = 10.0
    # Above the inference-proxy's backend timeout, so the proxy reports first.
    completion_timeout_seconds: float = 130.0
    stream_idle_timeout_seconds: float = 65.0
    health_timeout_seconds: float = 1.0
    max_body_mb: int = 16
    auth_cache_seconds: float = 60.0
    # Comma-separated nats.micro names /health asks; empty means every backend service.
    health_services: str = ""
    env: str = ""

    @property
    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

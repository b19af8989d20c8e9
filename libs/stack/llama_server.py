"""The real llama.cpp `llama-server`, launched as an external program with the small model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from stack.llm_setup import MODEL_ID, llama_server_binary, missing_llm_parts, model_path
from stack.processes import ChildProcess, wait_http_ok


class LlamaServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cache_dir: Path
    port: int
    host: str = "127.0.0.1"
    model_id: str = MODEL_ID
    ctx_size: int = 4096
    parallel: int = 2
    threads: int = 0  # 0: about half the cores (decode threads spinning against busy cores crawl)
    log_path: Path | None = None


def default_threads() -> int:
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def llama_argv(config: LlamaServerConfig) -> list[str]:
    threads = config.threads or default_threads()
    return [
        str(llama_server_binary(config.cache_dir)),
        "--model",
        str(model_path(config.cache_dir)),
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--ctx-size",
        str(config.ctx_size),
        "--alias",
        config.model_id,
        "--parallel",
        str(config.parallel),
        "--threads",
        str(threads),
        "--threads-batch",
        str(threads),
        # Repacking picks AMX kernels on CPUs that advertise AMX; VMs that do not grant
        # the tile state then die with SIGILL. The small model does not need it.
        "--no-repack",
        *(["--log-disable"] if config.log_path is None else ["--log-colors", "off"]),
    ]


class LlamaServer:
    """Start/stop llama-server; `base_url` is its OpenAI-compatible `/v1` root."""

    def __init__(self, config: LlamaServerConfig, env: Mapping[str, str] | None = None) -> None:
        missing = missing_llm_parts(config.cache_dir)
        if missing:
            raise RuntimeError(
                "the local LLM is not set up (missing: " + ", ".join(missing) + "); "
                "run `make setup` (or `python -m stack setup-llm`)"
            )
        self.config = config
        self.child = ChildProcess(
            "llama-server",
            llama_argv(config),
            env=dict(os.environ if env is None else env),
            log_path=config.log_path,
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}/v1"

    def start(self, timeout: float = 120.0) -> None:
        self.child.start()
        try:
            wait_http_ok(
                f"http://{self.config.host}:{self.config.port}/health", timeout, self.child
            )
        except BaseException:
            self.child.stop(grace=2)
            raise

    def stop(self) -> None:
        self.child.stop(grace=5)

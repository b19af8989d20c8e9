"""The real llama-server with the small model, once per session, for the tests that ask.

A test that uses `llama_server` is marked `llm` (tests/conftest.py), so `make test-fast`
leaves it out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from stack.llama_server import LlamaServer, LlamaServerConfig
from stack.llm_setup import cache_dir_from, missing_llm_parts
from stack.nats_server import free_port


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real llama-server with the small model on a free port: its OpenAI `/v1` base URL.

    The served model id is `stack.llm_setup.MODEL_ID`. Missing binary or model is a
    failure, not a skip: `make setup` (which CI runs first) provides both.
    """
    cache_dir = cache_dir_from(os.environ)
    missing = missing_llm_parts(cache_dir)
    if missing:
        pytest.fail(f"the local LLM is not set up ({', '.join(missing)}): run `make setup`")
    log_path = tmp_path_factory.mktemp("llama") / "llama-server.log"
    config = LlamaServerConfig(cache_dir=cache_dir, port=free_port(), log_path=log_path)
    server = LlamaServer(config)
    server.start()
    yield server.base_url
    server.stop()

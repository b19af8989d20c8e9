"""Fixtures come from the `tests/support` plugins; tiers come from where a test lives.

- tests/support/nats.py: logging, a nats-server per module, `nc`/`bus` (and module ones)
- tests/support/llm.py: the real llama-server (`llama_server`)
- tests/support/fakes.py: a fresh fake OpenAI / Ollama backend per test
- tests/support/stack.py: the whole stack in-process (`stack`, `admin`, `user`, `rag`), once
  per session on a nats-server of its own
- tests/support/live.py: that stack with retrieval and ingestion (`ragway`) and the CLI

Markers (`make test-fast` leaves out all but the unit and service tests): `e2e` for tests
under tests/{e2e,cli,sdk,security} or using the stack fixtures (HTTP through the whole
stack), `llm` for any test that
uses `llama_server`; `slow`, `reliability`, `cluster` and `security` are set in the modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.support.nats",
    "tests.support.llm",
    "tests.support.fakes",
    "tests.support.stack",
    "tests.support.live",
]

TESTS = Path(__file__).parent
E2E_PACKAGES = ("e2e", "cli", "sdk", "security")
# a test that uses one of these runs HTTP through the whole stack, wherever it lives
E2E_FIXTURES = frozenset({"stack", "ragway", "rag"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        package = item.path.relative_to(TESTS).parts[0]
        fixtures = set(getattr(item, "fixturenames", ()))
        if package in E2E_PACKAGES or fixtures & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)
        if "llama_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.llm)

"""A fresh fake Ollama and OpenAI-compatible backend per test (the fakes: tests/fakes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake


@pytest.fixture
async def ollama_fake() -> AsyncIterator[OllamaFake]:
    """A started fake Ollama; its base URL is `ollama_fake.origin`."""
    fake = OllamaFake()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def openai_fake() -> AsyncIterator[OpenAIFake]:
    """A started fake OpenAI-compatible server; configure `openai_fake.base_url` (ends in
    /v1) with the key `openai_fake.api_key`."""
    fake = OpenAIFake()
    await fake.start()
    yield fake
    await fake.stop()

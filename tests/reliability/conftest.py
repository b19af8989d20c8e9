"""Fixtures for fault tests: the backend fake and a factory of launched process stacks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stack.launcher import Stack
from tests.fakes.openai_fake import OpenAIFake
from tests.reliability.support import ProcessStack, process_stack_settings, stack_environ


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[OpenAIFake]:
    backend = OpenAIFake()
    await backend.start()
    yield backend
    await backend.stop()


@pytest.fixture(autouse=True)
def _reset_fake(fake: OpenAIFake) -> None:
    fake.hang = False
    fake.token_delay = 0.0
    fake.tokens_per_reply = None
    fake.fail_after_chunks = None
    fake.error_status = None
    fake.client_disconnected.clear()


StackFactory = Callable[..., Any]


@pytest.fixture(scope="module")
async def launch(
    fake: OpenAIFake, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StackFactory]:
    """`await launch(services=..., **env)`: a started ProcessStack, stopped after the module."""
    async with contextlib.AsyncExitStack() as cleanup:
        http = await cleanup.enter_async_context(aiohttp.ClientSession())

        async def start(services: str | None = None, **env: str) -> ProcessStack:
            data_dir: Path = tmp_path_factory.mktemp("stack")
            stack = Stack(process_stack_settings(data_dir, services), stack_environ(fake, **env))
            await stack.astart()
            handle = ProcessStack(stack, http, fake)
            cleanup.push_async_callback(handle.stop)
            handle.signed_up = await handle.signup()
            return handle

        yield start

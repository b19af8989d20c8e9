"""The OpenAI-compatible test fake in a process of its own, for benchmarks.

    .venv/bin/python bench/fake_backend.py [--tokens 20] [--delay 0] [--models fast]

Prints `listening <base_url>` once it serves, then runs until SIGTERM/SIGINT. Unlike the
test fixture it records nothing (a long benchmark would otherwise grow its memory), and
it accepts any API key. It runs in its own process so that the backend and whatever is
measured (ragway, Open WebUI, the load generator) do not share an event loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ lives at the repository root, which a script run from bench/ does not see.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import signal
from typing import Any

from aiohttp import web

from tests.fakes.openai_fake import OpenAIFake


class BenchFake(OpenAIFake):
    """The test fake without its request log."""

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request)  # type: ignore[no-any-return]


async def serve(args: argparse.Namespace) -> None:
    fake = BenchFake(
        api_key=None,
        models=args.models.split(","),
        tokens_per_reply=args.tokens,
        token_delay=args.delay,
    )
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {fake.base_url}", flush=True)
    await stop.wait()
    await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tokens", type=int, default=20, help="content chunks per reply")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--models", default="fast", help="comma-separated model ids")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()

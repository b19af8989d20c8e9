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
import contextlib
import signal
from typing import Any

import msgspec
from aiohttp import web

from tests.fakes.openai_fake import OpenAIFake, sse_events

_encode = msgspec.json.Encoder().encode


class BenchFake(OpenAIFake):
    """The test fake without its request log, and with a cheaper streaming path.

    A stream sends the same SSE events as the test fake (one id, the role first, one
    chunk per token, the finish chunk, usage when asked, `[DONE]`), each in its own
    write, `token_delay` apart. The events are encoded with msgspec, and each write is
    made by a timer callback straight to the socket (HTTP chunked framing, as aiohttp
    would write it) instead of a task waking from `asyncio.sleep`: on 2 shared cores
    the backend's CPU per token comes out of what ragway and the load generator get,
    and a real backend runs on a machine of its own.
    """

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request)  # type: ignore[no-any-return]

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = msgspec.json.decode(await request.read()) if request.can_read_body else None
        if (
            not isinstance(body, dict)
            or not body.get("stream")
            or body.get("model") not in self.models
            or self.tokens_per_reply is None
            or self.fail_after_chunks is not None
            or self.api_key is not None
            or self.responder is not None
            or self.hang
            or self.error_status is not None
        ):
            return await super().chat_completions(request)
        events = sse_events(body, self._reply(body), _encode)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        transport = request.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        pending = iter(events)

        def send_next() -> None:
            event = next(pending, None)
            if event is None or transport.is_closing():
                if not done.done():
                    done.set_result(None)
                return
            transport.write(b"%x\r\n%s\r\n" % (len(event), event))
            if self.token_delay:
                loop.call_later(self.token_delay, send_next)
            else:
                send_next()

        send_next()
        await done
        with contextlib.suppress(ConnectionError):  # the client left mid-stream
            await response.write_eof()
        return response


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

"""`POST /api/embeddings` with ragway's own model against the embedder called directly.

    .venv/bin/python bench/embeddings_api.py [--short 256] [--long 64] [--runs 3]

Every service in this process on a real nats-server (auth, inference-proxy without
backends, retrieval with its int8 model on one thread, the gateway), one client. Timed:
texts per second through HTTP (the gateway's batches of 32, the proxy, retrieval running
each text alone), floats and base64; baselines in the same run: the same model's
`embed_each` called directly (the API's own work, no HTTP or NATS), and fastembed's padded
batches (`embed_documents`: faster on short texts, but a text's int8 vector then moves
with its batch, which the API avoids).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from harness import loadavg, median, write_results

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from common.logging import configure_logging
from embedding.embedder import Embedder
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from inference_proxy.app import serve as serve_proxy
from inference_proxy.settings import Settings as ProxySettings
from retrieval.app import serve as serve_retrieval
from retrieval.engines import embedder_settings
from retrieval.settings import Settings as RetrievalSettings
from stack.nats_server import NatsServer, NatsServerConfig, free_port

MODEL = "all-minilm-l6-v2"
SHORT = "how often are the keys of the {n}th server rotated by the operations team"
LONG = "The harbour master logs the tides of quay {n} every hour, and the pilots " * 12


async def timed(runs: int, work: Callable[[], Awaitable[Any]]) -> float:
    """Median seconds of `runs` calls."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return median(times)


async def measure(args: argparse.Namespace, store: str) -> dict[str, Any]:
    server = NatsServer(
        NatsServerConfig(port=free_port(), monitor_port=free_port(), store_dir=Path(store) / "nats")
    )
    await server.astart()
    retrieval_settings = RetrievalSettings(nats_url=server.url, data_dir=store, log_level="warning")
    async with contextlib.AsyncExitStack() as services:
        services.push_async_callback(server.astop)
        await services.enter_async_context(
            serve_auth(
                AuthSettings(
                    nats_url=server.url,
                    bucket_prefix=f"b{uuid.uuid4().hex[:8]}",
                    jwt_secret="bench-" + "x" * 32,
                    log_level="warning",
                )
            )
        )
        await services.enter_async_context(serve_retrieval(retrieval_settings))
        await services.enter_async_context(
            serve_proxy(ProxySettings(nats_url=server.url, log_level="warning", sandbox_spares=0))
        )
        gateway = await services.enter_async_context(
            serve_gateway(GatewaySettings(nats_url=server.url, port=0, log_level="warning"))
        )
        http = await services.enter_async_context(aiohttp.ClientSession())
        async with http.post(
            gateway.url + "/api/v1/auths/signup",
            json={"name": "B", "email": "b@example.test", "password": "correct horse battery"},
        ) as reply:
            headers = {"Authorization": f"Bearer {(await reply.json())['token']}"}
        embedder = Embedder(embedder_settings(retrieval_settings))
        figures: dict[str, Any] = {"load": loadavg()}
        for kind, template, count in (("short", SHORT, args.short), ("long", LONG, args.long)):
            texts = [template.format(n=n) for n in range(count)]

            async def api(encoding: str, texts: list[str] = texts) -> None:
                body = {"model": MODEL, "input": texts, "encoding_format": encoding}
                async with http.post(
                    gateway.url + "/api/embeddings", json=body, headers=headers
                ) as reply:
                    assert reply.status == 200, await reply.text()
                    await reply.read()

            await api("float")  # warm up
            direct = await timed(
                args.runs, lambda texts=texts: asyncio.to_thread(embedder.embed_each, texts)
            )
            padded = await timed(
                args.runs,
                lambda texts=texts: asyncio.to_thread(embedder.embed_documents, texts),
            )
            floats = await timed(args.runs, lambda: api("float"))
            packed = await timed(args.runs, lambda: api("base64"))
            row = {
                "texts": count,
                "direct_per_s": count / direct,
                "padded_batches_per_s": count / padded,
                "api_float_per_s": count / floats,
                "api_base64_per_s": count / packed,
            }
            figures[kind] = row
            print(
                f"{kind:5} {count:4} texts: embed_each {row['direct_per_s']:7.1f}/s  "
                f"padded batches {row['padded_batches_per_s']:7.1f}/s  "
                f"API float {row['api_float_per_s']:7.1f}/s "
                f"({floats / direct:.2f}x the time of embed_each)  "
                f"API base64 {row['api_base64_per_s']:7.1f}/s ({packed / direct:.2f}x)"
            )
        print(figures["load"])
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", type=int, default=256)
    parser.add_argument("--long", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging(level="warning", json=True)
    with tempfile.TemporaryDirectory() as store:
        figures = asyncio.run(measure(args, store))
    write_results("embeddings_api", figures)


if __name__ == "__main__":
    main()

"""The cost of the gateway controls: limits and the usage ledger ON vs OFF, same run.

    .venv/bin/python bench/controls_overhead.py [--clients 1,8] [--seconds 3] [--rounds 3]

One ragway (`Stack`: nats-server, auth, inference-proxy, its gateway with the controls
on) and a second gateway process on the same NATS with them off
(`RAGWAY_LIMITS_ENABLED=false RAGWAY_USAGE_LEDGER=false`). An admin limit (rpm, tpm and a
monthly budget, never reached) binds the bench user, so every request through the first
gateway is admitted against shared counters, settled from the backend's usage and
recorded in the ledger (acked before the stream ends). Streamed chats from a zero-delay
fake backend alternate between the two gateways, `--rounds` times; each figure is the
median over rounds: added time to first token and to the end, and the gateway's CPU
milliseconds per request (the steadiest measure on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import aiohttp
from harness import (
    BENCH_DIR,
    Round,
    clean_environ,
    closed_loop,
    cpu_seconds,
    fake_backend,
    limit_bench_user,
    loadavg,
    median,
    ragway,
    stream_chat,
    write_results,
)

from common.logging import configure_logging
from common.parent_death import tied_to_parent
from common.runner import run_stoppable
from stack.nats_server import free_port

ROOT = BENCH_DIR.parent


async def start_gateway(nats_url: str, **environ: str) -> tuple[asyncio.subprocess.Process, str]:
    """`python -m gateway` on a free port, controls as `environ` says; its URL once up."""
    port = free_port()
    env = clean_environ(
        RAGWAY_NATS_URL=nats_url,
        RAGWAY_PORT=str(port),
        RAGWAY_HEALTH_SERVICES="auth,inference-proxy",
        PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("libs", "services")),
        **environ,
    )
    process = await asyncio.create_subprocess_exec(
        *tied_to_parent([sys.executable, "-m", "gateway"]),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,  # its canonical lines, as the stack's go to files
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{url}/health") as reply:
                    if reply.status == 200:
                        return process, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the second gateway never answered")


async def compare(
    clients: int, calls: dict[str, Any], pids: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    rounds: dict[str, list[Round]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for target in ("off", "on"):
            before = cpu_seconds(pids[target])
            result = await closed_loop(calls[target], clients, args.seconds, warmup=0.5)
            spent = cpu_seconds(pids[target]) - before
            rounds[target].append(result)
            if result.samples:
                cpu[target].append(spent * 1000 / (result.rate * (args.seconds + 0.5)))
    pairs = list(zip(rounds["off"], rounds["on"], strict=True))
    row = {
        "clients": clients,
        "load": loadavg(),
        "rate": {t: median([r.rate for r in rounds[t]]) for t in rounds},
        "ttft_p50": {t: median([r.ttft(50) for r in rounds[t]]) * 1000 for t in rounds},
        "errors": {t: sum(r.errors for r in rounds[t]) for t in rounds},
        "added_ttft_p50": median([(on.ttft(50) - off.ttft(50)) * 1000 for off, on in pairs]),
        "added_total_p50": median([(on.total(50) - off.total(50)) * 1000 for off, on in pairs]),
        "gateway_cpu_ms": {t: median(cpu[t]) for t in cpu},
    }
    row["cpu_cost_ms"] = row["gateway_cpu_ms"]["on"] - row["gateway_cpu_ms"]["off"]
    print(
        f"controls c={clients:<3} rate off {row['rate']['off']:7.1f}/s "
        f"on {row['rate']['on']:7.1f}/s"
        f" | TTFT p50 off {row['ttft_p50']['off']:.2f} on {row['ttft_p50']['on']:.2f} ms"
        f" | added TTFT p50 {row['added_ttft_p50']:+.3f} ms, total p50 "
        f"{row['added_total_p50']:+.3f} ms | gateway CPU/req off "
        f"{row['gateway_cpu_ms']['off']:.3f} on {row['gateway_cpu_ms']['on']:.3f} ms "
        f"(controls {row['cpu_cost_ms']:+.3f} ms) | errors {row['errors']['off']}/"
        f"{row['errors']['on']} | {row['load']}",
        flush=True,
    )
    return row


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    async with fake_backend(tokens=args.tokens, models="fast") as fast:
        environ = {"OPENAI_API_BASE_URLS": fast.base_url, "OPENAI_API_KEYS": "bench"}
        async with ragway(**environ) as rw:
            nats_url = f"nats://127.0.0.1:{rw.stack.settings.nats_port}"
            process, off_url = await start_gateway(
                nats_url, RAGWAY_LIMITS_ENABLED="false", RAGWAY_USAGE_LEDGER="false"
            )
            try:
                await limit_bench_user(rw.url, rw.token)
                body = {
                    "model": "fast",
                    "messages": [{"role": "user", "content": "Say something."}],
                    "stream": True,
                }
                calls = {
                    "off": stream_chat(f"{off_url}/api/chat/completions", rw.headers, body),
                    "on": stream_chat(f"{rw.url}/api/chat/completions", rw.headers, body),
                }
                for call in calls.values():  # warm caches, connections, limit credit
                    await closed_loop(call, 1, 0.3, warmup=0)
                pids = {"on": rw.pid_of("gateway"), "off": process.pid}
                rows = [await compare(int(n), calls, pids, args) for n in args.clients.split(",")]
            finally:
                process.terminate()
                await process.wait()
    return {"args": vars(args), "rows": rows}


def verdicts(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        cost = max(row["cpu_cost_ms"], row["added_ttft_p50"])
        print(
            f"target controls cost at {row['clients']} clients: {cost:.3f} ms per request "
            f"(< 0.3) {'ok' if cost < 0.3 else 'MISSED'}; TTFT p50 with controls "
            f"{row['ttft_p50']['on']:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    configure_logging("warning")
    started = time.perf_counter()
    result = run_stoppable(bench(args))
    verdicts(result)
    print(
        f"({time.perf_counter() - started:.0f} s) figures kept in "
        f"{write_results('controls_overhead', result)}"
    )


if __name__ == "__main__":
    main()

"""Gateway overhead: streamed chat completions and GET /api/models through ragway vs. straight
to the backend, at 1, 8 and 64 concurrent clients.

    .venv/bin/python bench/gateway_overhead.py [--clients 1,8,64] [--seconds 3] [--rounds 3]
                                               [--tokens 20]

ragway runs as real processes (`Stack`: nats-server, auth, inference-proxy, gateway) with
OPENAI_API_BASE_URLS pointing at two fake OpenAI backends, each in its own process:
`fast` streams N tokens with no delay (only ragway's cost shows), `paced` streams 20
tokens 10 ms apart (a realistic backend). This process is the load generator (aiohttp,
closed loop: each client sends its next request when the last one ended); requests go
through the gateway with an API key (auth, then the full NATS path). Direct and ragway
rounds alternate, `--rounds` times each; every figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness import (
    Call,
    Round,
    closed_loop,
    cpu_seconds,
    fake_backend,
    gateway_workload,
    limit_bench_user,
    loadavg,
    median,
    ragway,
    write_results,
)

from common.logging import configure_logging
from common.runner import run_stoppable

QUANTILES = (50, 95, 99)


async def compare(
    name: str,
    direct: Call,
    through: Call,
    clients: int,
    args: argparse.Namespace,
    via: str = "ragway",
    cpu_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Alternate direct and `via` (ragway, Open WebUI) rounds; medians over rounds.

    With `cpu_pids`, also the CPU milliseconds each of those processes spent per request
    in the `via` rounds."""
    rounds: dict[str, list[Round]] = {"direct": [], "via": []}
    cpu: dict[str, list[float]] = {name: [] for name in cpu_pids or {}}
    for _ in range(args.rounds):
        for target, call in (("direct", direct), ("via", through)):
            before = {n: cpu_seconds(pid) for n, pid in (cpu_pids or {}).items()}
            result = await closed_loop(call, clients, args.seconds, warmup=0.5)
            rounds[target].append(result)
            if target == "via" and result.samples:
                for n, pid in (cpu_pids or {}).items():
                    # warm-up requests used CPU too: divide by every request of the round
                    spent = cpu_seconds(pid) - before[n]
                    cpu[n].append(spent * 1000 / (result.rate * (args.seconds + 0.5)))
    row: dict[str, Any] = {"workload": name, "clients": clients, "via_name": via, "load": loadavg()}
    row["cpu_ms_per_request"] = {n: median(v) for n, v in cpu.items()}
    for target, runs in rounds.items():
        row[target] = {
            "rate": median([r.rate for r in runs]),
            "errors": sum(r.errors for r in runs),
            "samples": sum(len(r.samples) for r in runs),
            **{f"ttft_p{q}": median([r.ttft(q) for r in runs]) * 1000 for q in QUANTILES},
            **{f"total_p{q}": median([r.total(q) for r in runs]) * 1000 for q in QUANTILES},
        }
    # Added latency: the percentile through `via` minus the direct one, per round, then the median.
    pairs = list(zip(rounds["direct"], rounds["via"], strict=True))
    row["added_ttft"] = {
        f"p{q}": median([(r.ttft(q) - d.ttft(q)) * 1000 for d, r in pairs]) for q in QUANTILES
    }
    row["added_total"] = {
        f"p{q}": median([(r.total(q) - d.total(q)) * 1000 for d, r in pairs]) for q in QUANTILES
    }
    row["rate_ratio"] = median([r.rate / d.rate if d.rate else 0.0 for d, r in pairs])
    print_row(row)
    return row


def cpu_text(row: dict[str, Any]) -> str:
    spent = row.get("cpu_ms_per_request") or {}
    return "".join(f" | {n} {ms:.2f} CPU-ms/req" for n, ms in spent.items())


def print_row(row: dict[str, Any]) -> None:
    d, r = row["direct"], row["via"]
    added, added_total = row["added_ttft"], row["added_total"]
    print(
        f"{row['workload']:>12} c={row['clients']:<3} "
        f"rate direct {d['rate']:7.1f}/s {row['via_name']} {r['rate']:7.1f}/s "
        f"ratio {row['rate_ratio']:.2f} | TTFT p50 {d['ttft_p50']:6.2f} -> {r['ttft_p50']:6.2f} ms"
        f" | added TTFT p50/p95/p99 {added['p50']:+.2f}/{added['p95']:+.2f}/{added['p99']:+.2f}"
        f" ms | added total p50 {added_total['p50']:+.2f} ms"
        f" | errors {d['errors']}/{r['errors']}{cpu_text(row)} | {row['load']}",
        flush=True,
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    clients = [int(n) for n in args.clients.split(",")]
    async with (
        fake_backend(tokens=args.tokens, models="fast") as fast,
        fake_backend(tokens=20, delay=0.010, models="paced") as paced,
    ):
        environ = {
            "OPENAI_API_BASE_URLS": f"{fast.base_url};{paced.base_url}",
            "OPENAI_API_KEYS": "bench;bench",
        }
        started = time.perf_counter()
        async with ragway(**environ) as rw:
            print(f"ragway up in {time.perf_counter() - started:.1f} s at {rw.url}; {loadavg()}")
            # the controls are on: a limit binds the bench user, the ledger records it all
            await limit_bench_user(rw.url, rw.token)
            calls = gateway_workload(fast.base_url, paced.base_url, rw.url, rw.headers)
            for direct, through in calls.values():  # warm caches and connections
                await closed_loop(direct, 1, 0.2, warmup=0)
                await closed_loop(through, 1, 0.2, warmup=0)
            pids = {"gateway": rw.pid_of("gateway"), "proxy": rw.pid_of("inference_proxy")}
            rows = []
            for name in ("chat", "models"):
                for count in clients:
                    rows.append(await compare(name, *calls[name], count, args, cpu_pids=pids))
            rows.append(
                await compare(
                    "chat-paced", *calls["chat-paced"], args.paced_clients, args, cpu_pids=pids
                )
            )
    return {"args": vars(args), "rows": rows}


def verdicts(result: dict[str, Any]) -> None:
    """The issue's targets that this benchmark alone can judge."""
    rows = {(r["workload"], r["clients"]): r for r in result["rows"]}
    one = rows.get(("chat", 1))
    if one:
        p50, p99 = one["added_ttft"]["p50"], one["added_ttft"]["p99"]
        print(
            f"target added TTFT at 1 client: p50 {p50:.2f} ms (<= 2) "
            f"{'ok' if p50 <= 2 else 'MISSED'}, p99 {p99:.2f} ms (<= 10) "
            f"{'ok' if p99 <= 10 else 'MISSED'}"
        )
    paced = rows.get(("chat-paced", result["args"]["paced_clients"]))
    if paced:
        ratio = paced["rate_ratio"]
        print(
            f"target paced backend at {paced['clients']} clients: ragway/direct "
            f"completions/s {ratio:.3f} (>= 0.95) {'ok' if ratio >= 0.95 else 'MISSED'}"
        )
    for count in (8, 64):
        row = rows.get(("chat", count))
        if row:
            rate = row["via"]["rate"]
            print(
                f"ceiling at {count} clients: ragway {rate:.0f} completions/s = "
                f"{rate / 90:.1f}x Open WebUI's ~90/s (target >= 5x; "
                "`make bench-anchors` measures Open WebUI in the same way)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--paced-clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=20, help="tokens per zero-delay reply")
    args = parser.parse_args()
    configure_logging("warning")
    result = run_stoppable(bench(args))
    verdicts(result)
    print(f"figures kept in {write_results('gateway_overhead', result)}")


if __name__ == "__main__":
    main()

"""The gateway's stream receive path: `Subscription.next_msg` per chunk (the baseline, as
before the change) vs. a callback into a queue drained in batches (what the gateway does).

    .venv/bin/python bench/nats_relay.py [--messages 20000] [--rounds 3]

A real nats-server; one connection publishes SSE-sized chunks to an inbox, another
receives them. Prints messages/s, process CPU per message (publisher included, the same in
both) and how many writes a relay would make, with the ratio between the two strategies.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nats
from harness import write_results

from common.runner import run_stoppable
from stack.nats_server import NatsServer, NatsServerConfig, free_port

CHUNK = (
    b'data: {"id":"chatcmpl-0123456789","object":"chat.completion.chunk","created":1,'
    b'"model":"fast","choices":[{"index":0,"delta":{"content":"t1 "},"finish_reason":null}]}'
    b"\n\n"
)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def receive(url: str, mode: str, count: int) -> tuple[float, float, int]:
    """Seconds, CPU seconds and relay writes to receive `count` chunks."""
    pub = await nats.connect(url)
    nc = await nats.connect(url)
    inbox = nc.new_inbox()
    queue: asyncio.Queue[nats.aio.msg.Msg] = asyncio.Queue()

    async def on_chunk(msg: nats.aio.msg.Msg) -> None:
        queue.put_nowait(msg)

    sub = await (nc.subscribe(inbox) if mode == "next_msg" else nc.subscribe(inbox, cb=on_chunk))
    await nc.flush()

    async def produce() -> None:
        for n in range(count):
            await pub.publish(inbox, CHUNK)
            if n % 20 == 0:
                await asyncio.sleep(0)
        await pub.flush()

    producer = asyncio.create_task(produce())
    cpu_before, started = cpu(), time.perf_counter()
    got = writes = 0
    loop = asyncio.get_running_loop()
    while got < count:
        if mode == "next_msg":
            await sub.next_msg(timeout=10)
            got += 1
        else:
            async with asyncio.timeout(10) as deadline:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                deadline.reschedule(loop.time() + 10)
            b"".join(msg.data for msg in batch)
            got += len(batch)
        writes += 1
    await producer
    elapsed, spent = time.perf_counter() - started, cpu() - cpu_before
    await sub.unsubscribe()
    await pub.close()
    await nc.close()
    return elapsed, spent, writes


async def bench(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    runs: dict[str, list[tuple[float, float, int]]] = {"next_msg": [], "queue": []}
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(
            NatsServerConfig(port=free_port(), monitor_port=free_port(), store_dir=Path(tmp))
        )
        await server.astart()
        try:
            for _ in range(args.rounds):
                for mode in runs:
                    runs[mode].append(await receive(server.url, mode, args.messages))
        finally:
            await server.astop()
    result = {
        mode: {
            "msgs_per_s": statistics.median(args.messages / r[0] for r in rs),
            "cpu_us_per_msg": statistics.median(r[1] / args.messages * 1e6 for r in rs),
            "writes": statistics.median(r[2] for r in rs),
        }
        for mode, rs in runs.items()
    }
    base, new = result["next_msg"], result["queue"]
    print(
        f"next_msg (baseline): {base['msgs_per_s']:.0f} msg/s, {base['cpu_us_per_msg']:.1f} "
        f"CPU-us/msg, {base['writes']:.0f} writes | queue+batch: {new['msgs_per_s']:.0f} msg/s,"
        f" {new['cpu_us_per_msg']:.1f} CPU-us/msg, {new['writes']:.0f} writes | ratio: "
        f"{new['msgs_per_s'] / base['msgs_per_s']:.1f}x msg/s, "
        f"{base['cpu_us_per_msg'] / new['cpu_us_per_msg']:.1f}x less CPU"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = run_stoppable(bench(args))
    print(f"figures kept in {write_results('nats_relay', result)}")


if __name__ == "__main__":
    main()

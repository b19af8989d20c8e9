"""What the benchmarks share: the fake backend process, ragway as real processes, a
closed-loop HTTP load generator (aiohttp) and the statistics printed with each figure.

Not a benchmark itself (`make bench` runs the scripts it names).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from common.parent_death import tied_to_parent
from common.settings import default_cache_dir
from stack.launcher import Stack
from stack.nats_server import free_port
from stack.settings import StackSettings

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
PASSWORD = "bench password 123"
# Variables of the surrounding shell that would leak into the stack under test.
FOREIGN_PREFIXES = ("RAGWAY_", "OPENAI_", "OLLAMA_")


def loadavg() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} on {os.cpu_count()} CPUs"


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Keep a run's figures as JSON under bench/out/ (RESULTS.md and plots read them)."""
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (robust to a noisy machine, unlike latency)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- the fake backend, in its own process ------------------------------------------------


@dataclass
class FakeProcess:
    process: asyncio.subprocess.Process
    base_url: str  # ends in /v1


@asynccontextmanager
async def fake_backend(
    *, tokens: int, delay: float = 0.0, models: str = "fast"
) -> AsyncIterator[FakeProcess]:
    """bench/fake_backend.py as a child process; its base URL once it listens."""
    # Tied to this process (forked by the event loop's thread, which lives as long as the
    # benchmark): a benchmark killed by a timeout leaves no fake behind.
    argv = [sys.executable, str(BENCH_DIR / "fake_backend.py"), "--tokens", str(tokens)]
    argv += ["--delay", str(delay), "--models", models]
    process = await asyncio.create_subprocess_exec(
        *tied_to_parent(argv),
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line.startswith(b"listening "):
            raise RuntimeError(f"fake backend did not start: {line!r}")
        yield FakeProcess(process, line.split()[1].decode())
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


# --- ragway as real processes ------------------------------------------------------------


def clean_environ(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    if "RAGWAY_CACHE_DIR" in os.environ:
        env["RAGWAY_CACHE_DIR"] = os.environ["RAGWAY_CACHE_DIR"]
    env.update(overrides)
    return env


@dataclass
class Ragway:
    stack: Stack
    api_key: str
    token: str

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def pid_of(self, name: str) -> int:
        children = [*self.stack.services, self.stack.gateway]
        for child in children:
            if child is not None and child.name == name and child.pid:
                return child.pid
        raise KeyError(name)


@asynccontextmanager
async def ragway(
    *, services: str = "auth,inference_proxy", log_level: str = "info", **environ: str
) -> AsyncIterator[Ragway]:
    """The stack (`Stack`, as `python -m stack run` starts it) with an admin's API key.
    Services log at the production default (`info`: a canonical line per request), so
    the figures include what a deployment pays for its logs."""
    with tempfile.TemporaryDirectory(prefix="ragway-bench-") as tmp:
        settings = StackSettings(
            data_dir=str(Path(tmp, "data")),
            cache_dir=default_cache_dir(),
            port=free_port(),
            nats_port=free_port(),
            nats_monitor_port=free_port(),
            llm_port=free_port(),
            local_llm=False,
            services=services,
            log_level=log_level,
            stop_timeout_s=10.0,
        )
        micro = {"auth": "auth", "inference_proxy": "inference-proxy"}
        health = ",".join(micro.get(s, s) for s in settings.service_list())
        env = clean_environ(RAGWAY_HEALTH_SERVICES=health, **environ)
        stack = Stack(settings, env)
        await stack.astart()
        try:
            token, key = await admin_credentials(stack.url)
            yield Ragway(stack, key, token)
        finally:
            await stack.astop()


async def admin_credentials(url: str) -> tuple[str, str]:
    """Sign up a fresh user (the first one is admin) and create its API key: (JWT, key).
    Works against ragway and Open WebUI alike."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/api/v1/auths/signup",
            json={
                "name": "Bench",
                "email": f"{uuid.uuid4().hex[:8]}@bench.local",
                "password": PASSWORD,
            },
        ) as reply:
            if reply.status != 200:
                raise SystemExit(f"signup at {url}: {reply.status} {await reply.text()}")
            token = str((await reply.json())["token"])
        async with http.post(
            f"{url}/api/v1/auths/api_key", headers={"Authorization": f"Bearer {token}"}
        ) as reply:
            if reply.status != 200:
                raise SystemExit(f"API key at {url}: {reply.status} {await reply.text()}")
            return token, str((await reply.json())["api_key"])


async def limit_bench_user(url: str, token: str) -> None:
    """A limit that applies to every request and is never reached."""
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/api/v1/auths/", headers={"Authorization": f"Bearer {token}"}
        ) as reply:
            user_id = (await reply.json())["id"]
        form = {
            "scope": "user",
            "id": user_id,
            "rpm": 10_000_000,
            "tpm": 1_000_000_000,
            "budget": {"tokens": 1_000_000_000_000, "period": "month"},
        }
        async with http.post(
            f"{url}/api/v1/limits", json=form, headers={"Authorization": f"Bearer {token}"}
        ) as reply:
            if reply.status != 200:
                raise SystemExit(f"setting the bench limit: {reply.status} {await reply.text()}")


# --- the load generator ------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    ttft: float  # seconds to the first SSE event (to the whole body when not streamed)
    total: float


@dataclass
class Round:
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.samples) / self.elapsed if self.elapsed else 0.0

    def ttft(self, q: float) -> float:
        return percentile([s.ttft for s in self.samples], q)

    def total(self, q: float) -> float:
        return percentile([s.total for s in self.samples], q)


Call = Callable[[aiohttp.ClientSession], Awaitable[Sample]]
ERROR_EVENT = b'data: {"error"'  # how ragway, Open WebUI and OpenAI send a failed stream
MARKER_WINDOW = 64


def stream_chat(url: str, headers: dict[str, str], body: dict[str, Any]) -> Call:
    """A streamed chat completion: time to the first `data:` event, and to the end.

    Reads whatever arrived at once (not line by line: at 64 clients the load generator
    shares the cores with what it measures), looking at the bytes of each read and the
    end of the previous one, so a marker split across two reads is still seen."""
    payload = json.dumps(body).encode()
    all_headers = {**headers, "Content-Type": "application/json"}

    async def call(http: aiohttp.ClientSession) -> Sample:
        started = time.perf_counter()
        first = 0.0
        seen = b""  # the end of what arrived so far
        async with http.post(url, data=payload, headers=all_headers) as reply:
            if reply.status != 200:
                raise RuntimeError(f"{reply.status}: {(await reply.read())[:200]!r}")
            async for data in reply.content.iter_any():
                window = seen + data
                if not first and b"data:" in window:
                    first = time.perf_counter() - started
                if ERROR_EVENT in window:
                    raise RuntimeError(window[window.index(ERROR_EVENT) :][:200].decode())
                seen = window[-MARKER_WINDOW:]
            if not seen.rstrip().endswith(b"data: [DONE]"):
                raise RuntimeError("stream ended without [DONE]")
        return Sample(first, time.perf_counter() - started)

    return call


def get_json(url: str, headers: dict[str, str]) -> Call:
    async def call(http: aiohttp.ClientSession) -> Sample:
        started = time.perf_counter()
        async with http.get(url, headers=headers) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"{reply.status}: {body[:200]!r}")
        elapsed = time.perf_counter() - started
        return Sample(elapsed, elapsed)

    return call


async def closed_loop(call: Call, clients: int, seconds: float, warmup: float = 0.5) -> Round:
    """`clients` workers, each sending its next request when the last one ended."""
    result = Round()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        warm_until = time.perf_counter() + warmup
        stop_at = warm_until + seconds

        async def worker(index: int) -> None:
            # Starts spread evenly over the warm-up. Clients started in one burst stay in
            # step behind a paced backend (every reply takes the same time), so each
            # completion would begin with all of them asking at once: a burst that no
            # population of users sends, which turns per-request CPU into queueing.
            await asyncio.sleep(warmup * index / clients)
            while time.perf_counter() < stop_at:
                try:
                    sample = await call(http)
                except (aiohttp.ClientError, RuntimeError, TimeoutError):
                    result.errors += 1
                    await asyncio.sleep(0.01)
                    continue
                # Counted when it ended inside the measured window, so the rate is
                # completions per second of steady state.
                if warm_until <= time.perf_counter() <= stop_at:
                    result.samples.append(sample)

        await asyncio.gather(*(worker(index) for index in range(clients)))
        result.elapsed = seconds
    return result


def gateway_workload(
    fast_url: str, paced_url: str, gateway_url: str, headers: dict[str, str]
) -> dict[str, tuple[Call, Call]]:
    """The compared workloads, each as (straight to the backend, through a gateway): a
    streamed chat from the zero-delay backend, GET models, and a chat from the paced one."""
    chat = f"{gateway_url}/api/chat/completions"
    message = [{"role": "user", "content": "Say something."}]

    def body(model: str) -> dict[str, Any]:
        return {"model": model, "messages": message, "stream": True}

    return {
        "chat": (
            stream_chat(f"{fast_url}/chat/completions", {}, body("fast")),
            stream_chat(chat, headers, body("fast")),
        ),
        "models": (
            get_json(f"{fast_url}/models", {}),
            get_json(f"{gateway_url}/api/models", headers),
        ),
        "chat-paced": (
            stream_chat(f"{paced_url}/chat/completions", {}, body("paced")),
            stream_chat(chat, headers, body("paced")),
        ),
    }

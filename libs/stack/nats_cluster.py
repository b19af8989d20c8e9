"""A JetStream cluster of real nats-server processes on loopback, routed to each other.

`NatsCluster.on_free_ports(base_dir, size=3)` makes one; `start()` returns once every node
reports /healthz ok; `urls` is the services' RAGWAY_NATS_URL; a test fails a node with
`nodes[i].stop(kill=True)` and brings it back on its old store with `restart(i)`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stack.nats_server import NatsServer, NatsServerConfig, free_port


class NatsCluster:
    """Nodes `<name>-0..N-1`, each with its own store dir under `base_dir`."""

    def __init__(self, configs: list[NatsServerConfig]) -> None:
        self.nodes = [NatsServer(config) for config in configs]

    @classmethod
    def on_free_ports(
        cls, base_dir: Path, size: int = 3, name: str = "ragway", host: str = "127.0.0.1"
    ) -> NatsCluster:
        cluster_ports = [free_port() for _ in range(size)]
        routes = tuple(f"nats-route://{host}:{port}" for port in cluster_ports)
        configs = [
            NatsServerConfig(
                port=free_port(),
                monitor_port=free_port(),
                store_dir=base_dir / f"{name}-{index}",
                host=host,
                server_name=f"{name}-{index}",
                cluster_name=name,
                cluster_port=cluster_ports[index],
                # a route to itself is ignored by nats-server; listing all keeps configs equal
                routes=routes,
            )
            for index in range(size)
        ]
        return cls(configs)

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (the services' `nats_url`)."""
        return ",".join(node.url for node in self.nodes)

    def monitor_url(self, index: int, path: str) -> str:
        config = self.nodes[index].config
        return f"http://{config.host}:{config.monitor_port}{path}"

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, then wait until each is fully healthy (JetStream meta leader known)."""
        try:
            for node in self.nodes:
                node.start(timeout)
            for index in range(len(self.nodes)):
                self.wait_node_healthy(index, timeout)
        except BaseException:
            self.stop()
            raise

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start a stopped (or killed) node again on its old store dir and ports."""
        self.nodes[index].stop()
        self.nodes[index].start(timeout)
        self.wait_node_healthy(index, timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def health(self, index: int) -> tuple[int, dict[str, Any]]:
        """`GET /healthz` of one node: 200 once JetStream on it is current with the cluster."""
        try:
            with urllib.request.urlopen(self.monitor_url(index, "/healthz"), timeout=2) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError as exc:
            return 0, {"error": str(exc)}

    def wait_node_healthy(self, index: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        status, body = self.health(index)
        while status != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats node {index} not healthy in {timeout:.0f}s: {body}")
            time.sleep(0.1)
            status, body = self.health(index)

    def jsz(self, index: int) -> dict[str, Any]:
        """`GET /jsz` with account and stream details (replicas, leaders, lag) from one node."""
        url = self.monitor_url(index, "/jsz?accounts=true&streams=true&consumers=true")
        with urllib.request.urlopen(url, timeout=2) as reply:
            found: dict[str, Any] = json.loads(reply.read())
            return found

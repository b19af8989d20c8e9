"""The embedded stack as real processes: nats-server, llama-server, the services, the gateway.

Usable from the command line (`python -m stack run`) and from tests:

    with Stack(settings, environ) as stack:   # returns once GET /health is 200
        ... stack.url ...

Stop order is the reverse of start: gateway, services, llama-server, nats-server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import nats
import structlog

from common.nats_conn import login_options
from common.settings import NatsAuth, ServiceSettings, load_settings
from contracts import subjects
from stack.child_secrets import own_secrets_only
from stack.llama_server import LlamaServer, LlamaServerConfig
from stack.llm_setup import MODEL_ID
from stack.nats_permissions import GATEWAY, OPERATOR
from stack.nats_server import NatsServer, NatsServerConfig
from stack.nats_users import authorization_block, load_or_create_users
from stack.processes import ChildProcess, wait_http_ok
from stack.settings import StackSettings, backends_configured

log = structlog.get_logger()

# nats.micro name each service package registers, to know when it is ready.
MICRO_NAMES = {
    "auth": subjects.AUTH_SERVICE,
    "inference_proxy": subjects.INFERENCE_SERVICE,
    "ingestion": subjects.INGESTION_SERVICE,
    "retrieval": subjects.RETRIEVAL_SERVICE,
}
# each package's NATS user
NATS_USERS = {**MICRO_NAMES, "gateway": GATEWAY}
# handed to each child by the launcher, never inherited from its own environment
NATS_CREDENTIAL_VARIABLES = ("RAGWAY_NATS_USER", "RAGWAY_NATS_PASSWORD")
RESTART_BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # a child that ran this long gets its backoff reset


class Stack:
    """Starts and supervises the whole embedded deployment."""

    def __init__(
        self,
        settings: StackSettings,
        environ: Mapping[str, str] | None = None,
        *,
        log_to_files: bool = True,
    ) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.data_dir = Path(settings.data_dir).expanduser().resolve()
        self.cache_dir = Path(settings.cache_dir).expanduser().resolve()
        self.log_dir: Path | None = self.data_dir / "logs" if log_to_files else None
        # made at start(), in the data dir, when settings.nats_auth (the default)
        self.nats_users: dict[str, NatsAuth] = {}
        self.nats = self._nats_server()
        self.llama: LlamaServer | None = None
        self.services: list[ChildProcess] = []
        self.gateway: ChildProcess | None = None
        self._backoff: dict[str, float] = {}
        self._restart_at: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def uses_local_llm(self) -> bool:
        return self.settings.local_llm and not backends_configured(self.environ)

    def _nats_server(self) -> NatsServer:
        authorization = ""
        if self.nats_users:
            # what the services will read, so the permissions name their buckets
            prefix = load_settings(ServiceSettings, self.environ).bucket_prefix
            authorization = authorization_block(self.nats_users, prefix)
        return NatsServer(
            NatsServerConfig(
                port=self.settings.nats_port,
                monitor_port=self.settings.nats_monitor_port,
                store_dir=self.data_dir / "nats",
                authorization=authorization,
                login=self.nats_users.get(OPERATOR),
            )
        )

    def child_env(self, package: str = "") -> dict[str, str]:
        """The environment of `python -m <package>`: with that package's own NATS user (and
        no other's) once the users are made, and only the secrets its settings read
        (stack.child_secrets); without any for no package."""
        env = {k: v for k, v in self.environ.items() if k not in NATS_CREDENTIAL_VARIABLES}
        env = own_secrets_only(env, package)  # no other service's secrets
        env.update(
            RAGWAY_NATS_URL=self.nats.url,
            RAGWAY_DATA_DIR=str(self.data_dir),
            RAGWAY_CACHE_DIR=str(self.cache_dir),
            RAGWAY_PORT=str(self.settings.port),
            RAGWAY_LOG_LEVEL=env.get("RAGWAY_LOG_LEVEL", self.settings.log_level),
            PYTHONUNBUFFERED="1",
        )
        if self.llama is not None:
            env["RAGWAY_OPENAI_API_BASE_URLS"] = self.llama.base_url
            env.setdefault("RAGWAY_OPENAI_API_KEYS", "none")
            # the local llama-server is never behind the machine's HTTP(S)_PROXY
            for name in ("NO_PROXY", "no_proxy"):
                given = env.get(name, "")
                env[name] = f"{given},127.0.0.1" if given else "127.0.0.1"
        if package and self.nats_users:
            auth = self.nats_users[NATS_USERS[package]]
            env.update(RAGWAY_NATS_USER=auth.user, RAGWAY_NATS_PASSWORD=auth.password)
        return env

    def _log_path(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir is not None else None

    def start(self) -> None:
        """Start everything in order; return once the gateway's /health answers 200."""
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.settings.nats_auth and not self.nats_users:
                self.nats_users = load_or_create_users(self.data_dir)
                self.nats = self._nats_server()
            self.nats.start()
            log.info("nats_ready", url=self.nats.url)
            if self.uses_local_llm:
                self.llama = LlamaServer(
                    LlamaServerConfig(
                        cache_dir=self.cache_dir,
                        port=self.settings.llm_port,
                        threads=self.settings.llm_threads,
                        # llama-server is chatty: its log always goes to a file.
                        log_path=self.data_dir / "logs" / "llama-server.log",
                    ),
                    env=self.environ,
                )
                self.llama.start(timeout=self.settings.start_timeout_s)
                log.info("llm_ready", url=self.llama.base_url, model=MODEL_ID)
            for package in self.settings.service_list():
                child = self._python_child(package)
                child.start()
                self.services.append(child)
            self._wait_services_ready()
            self.gateway = self._python_child("gateway")
            self.gateway.start()
            wait_http_ok(f"{self.url}/health", self.settings.start_timeout_s, self.gateway)
        except BaseException:
            self.stop()
            raise
        log.info("stack_ready", url=self.url, seconds=round(time.monotonic() - started, 2))

    def _python_child(self, package: str) -> ChildProcess:
        return ChildProcess(
            package,
            [sys.executable, "-m", package],
            self.child_env(package),
            log_path=self._log_path(package),
        )

    def _wait_services_ready(self) -> None:
        """Each service answers `$SRV.PING.<name>` before the gateway starts taking requests."""
        names = {
            child.name: MICRO_NAMES[child.name]
            for child in self.services
            if child.name in MICRO_NAMES
        }
        asyncio.run(
            _wait_pings(
                self.nats.url,
                names,
                self.services,
                self.settings.start_timeout_s,
                self.nats_users.get(OPERATOR),
            )
        )

    def supervise_once(self) -> None:
        """Restart (with backoff) any child that died on its own."""
        now = time.monotonic()
        if self.nats.process is not None and self.nats.process.poll() is not None:
            log.error("child_exited", child="nats-server", code=self.nats.process.returncode)
            try:
                self.nats.start()
            except RuntimeError as exc:  # tried again on the next round
                log.error("child_restart_failed", child="nats-server", error=str(exc))
        children = [*self.services, self.gateway]
        if self.llama is not None:
            children.append(self.llama.child)
        for child in children:
            if child is None or child.running():
                continue
            if child.name not in self._restart_at:
                ran_for = now - child.started_at
                backoff = self._backoff.get(child.name, 0.5)
                if ran_for > STABLE_AFTER_S:
                    backoff = 0.5
                else:
                    backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)
                self._backoff[child.name] = backoff
                self._restart_at[child.name] = now + backoff
                log.error(
                    "child_exited", child=child.name, code=child.exit_code(), restart_in_s=backoff
                )
            elif now >= self._restart_at[child.name]:
                del self._restart_at[child.name]
                child.start()

    def stop(self) -> None:
        """Gateway first, then the services (together), then llama-server and nats-server."""
        grace = self.settings.stop_timeout_s
        if self.gateway is not None:
            self.gateway.stop(grace)
        for child in self.services:
            child.signal_group(signal.SIGTERM)
        for child in reversed(self.services):
            child.stop(grace)
        if self.llama is not None:
            self.llama.stop()
        self.nats.stop()
        log.info("stack_stopped")

    def pids(self) -> list[int]:
        """Process ids of the direct children (each leads its own process group)."""
        pids = [c.pid for c in [*self.services, self.gateway] if c is not None and c.pid]
        if self.llama is not None and self.llama.child.pid:
            pids.append(self.llama.child.pid)
        if self.nats.process is not None:
            pids.append(self.nats.process.pid)
        return pids

    async def astart(self) -> None:
        """start() from async code (it blocks while processes come up)."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _wait_pings(
    nats_url: str,
    names: dict[str, str],
    children: list[ChildProcess],
    within_s: float,
    auth: NatsAuth | None,
) -> None:
    deadline = time.monotonic() + within_s
    nc = await nats.connect(
        nats_url, name="stack-launcher", connect_timeout=2, **login_options(auth)
    )
    try:
        waiting = dict(names)
        while waiting:
            for child in children:
                if child.name in waiting and not child.running():
                    raise RuntimeError(
                        f"{child.name} exited with {child.exit_code()} while starting\n"
                        + child.log_tail()
                    )
            for package, micro_name in list(waiting.items()):
                try:
                    await nc.request(subjects.ping_subject(micro_name), b"", timeout=0.2)
                    del waiting[package]
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    pass
            if waiting:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"services not ready in {within_s:.0f}s: {sorted(waiting)}")
                await asyncio.sleep(0.1)
    finally:
        await nc.close()

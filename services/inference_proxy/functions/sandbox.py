"""Runs admin-installed code outside the proxy: one fresh worker process per call.

Workers are started ahead of need (`spares`) because a Python start costs ~0.2-0.4 s
here; each serves exactly one call and is then killed, so no state, leaked thread or
monkey-patch survives from one call to the next. A call is bounded by a wall-clock
deadline (the process group is killed past it), by RLIMIT_AS, RLIMIT_CPU and
RLIMIT_NPROC set in the worker, sees an environment without the proxy's secrets, and
runs isolated by bubblewrap (`isolation`): no view of the proxy, the data dir or the
network. When isolation cannot be had, every call is refused (`SandboxUnavailable`)
unless the admin chose `RAGWAY_SANDBOX_ISOLATION=none`. Spares have no network; a call
whose plugin may use the network gets a fresh worker that shares the host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

import common
import inference_proxy
from common.errors import RagwayError, invalid
from inference_proxy.functions.isolation import (
    Isolation,
    IsolationBroken,
    minimal_environment,
)
from inference_proxy.functions.sandbox_protocol import (
    MAX_FRAME_BYTES,
    Call,
    Failure,
    Frame,
    Result,
    encode,
    frame_decoder,
    frame_length,
    framed,
)

log = structlog.get_logger()

# `-I` drops PYTHONPATH: the worker is told where the proxy's own code is (a source
# checkout, or the installed package), so both always run the same tree
WORKER_BOOT = (
    "import sys; sys.path[:0] = {roots!r}; "
    "from inference_proxy.functions.sandbox_worker import main; sys.exit(main())"
)
PROBE = "import sys; sys.path[:0] = {roots!r}; import inference_proxy.functions.sandbox_worker"
STDERR_TAIL_BYTES = 4096


class SandboxTimeout(Exception):
    """The call ran past its wall-clock limit and was killed."""


class SandboxCrash(Exception):
    """The worker process died without finishing its answer."""


class SandboxUnavailable(SandboxCrash):
    """Plugins cannot run isolated on this host and the admin has not opted out."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    timeout_seconds: float = 30.0
    memory_mb: int = 512
    spares: int = 2
    max_running: int = 8
    max_processes: int = 32  # RLIMIT_NPROC inside one worker's user namespace


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr_tail = bytearray()
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while data := await stream.read(65536):
            self.stderr_tail += data
            del self.stderr_tail[:-STDERR_TAIL_BYTES]

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def send(self, call: Call) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(framed(encode(call)))
        await stdin.drain()

    async def next_frame(self) -> Frame:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            length = frame_length(await stdout.readexactly(4))
            if length > MAX_FRAME_BYTES:
                raise SandboxCrash("it sent an oversized message")
            return frame_decoder.decode(await stdout.readexactly(length))
        except asyncio.IncompleteReadError:
            code = await self.process.wait()
            # what the code printed last is for the logs, not for the caller
            tail = self.stderr_tail[-1000:].decode("utf-8", "replace")
            log.warning("sandbox_worker_died", exit_code=code, stderr_tail=tail)
            raise SandboxCrash(_exit_text(code)) from None
        except msgspec.DecodeError:
            raise SandboxCrash("it wrote a malformed message") from None

    async def kill(self) -> None:
        """Kill the whole process group (the code may have started children)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._stderr_task, timeout=1)
        if not self._stderr_task.done():
            self._stderr_task.cancel()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"its process was killed ({name})"
    return f"its process exited with code {code}"


class SandboxRun:
    """One call in progress: read its frames until a Result or Failure."""

    def __init__(self, worker: _Worker, deadline: float, limit: float) -> None:
        self._worker = worker
        self._deadline = deadline
        self._limit = limit

    async def next_frame(self) -> Frame:
        try:
            async with asyncio.timeout_at(self._deadline):
                return await self._worker.next_frame()
        except TimeoutError:
            await self._worker.kill()
            raise SandboxTimeout(f"did not finish within {self._limit:g}s") from None


class Sandbox:
    """A small supply of ready worker processes and a bound on running calls."""

    def __init__(self, limits: SandboxLimits, isolation: Isolation | None = None) -> None:
        self.limits = limits
        self.isolation = isolation or Isolation()
        self.unavailable = ""  # why workers cannot start isolated ("" when they can)
        self._spares: list[_Worker] = []
        self._running = asyncio.Semaphore(max(1, limits.max_running))
        self._refill: asyncio.Task[None] | None = None
        self._workdir = ""
        self._closed = False

    async def start(self) -> None:
        """Check that isolated workers start here (else refuse every call), then fill up."""
        self._workdir = tempfile.mkdtemp(prefix="ragway-sandbox-")
        if self.isolation.mode == "none":
            log.warning(
                "sandbox_isolation_off",
                detail="plugins run unisolated (RAGWAY_SANDBOX_ISOLATION=none): they can "
                "read what the proxy's user can read and reach the network",
            )
        roots = _code_roots()
        probe = [sys.executable, "-I", "-c", PROBE.format(roots=roots)]
        try:
            await self.isolation.probe(probe, roots)
        except IsolationBroken as exc:
            self.unavailable = (
                f"Plugins cannot run isolated on this host: {exc}. Install bubblewrap and "
                "allow user namespaces, or set RAGWAY_SANDBOX_ISOLATION=none to run them "
                "without isolation (see the README's security section)"
            )
            log.error("sandbox_unavailable", reason=str(exc))
            return
        self._schedule_refill()

    async def load(self, call: Call, what: str) -> Result | Failure:
        """The one answer of a call that loads a plugin (inspecting it, checking valves);
        the sandbox's own failures become what a client is told (`what`: "the plugin")."""
        try:
            async with self.run(call) as run:
                frame = await run.next_frame()
        except SandboxUnavailable as exc:
            raise RagwayError("unavailable", str(exc)) from None
        except SandboxTimeout as exc:
            raise invalid(f"Loading {what} {exc}") from None
        except SandboxCrash as exc:
            raise invalid(f"Loading {what} failed: {exc}") from None
        if not isinstance(frame, Result | Failure):
            raise invalid(f"Loading {what} produced output")
        return frame

    @asynccontextmanager
    async def run(self, call: Call, *, network: bool = False) -> AsyncIterator[SandboxRun]:
        """A worker running `call` (with the host's network when `network`); it is killed
        when the block ends, whatever happened."""
        if self.unavailable:
            raise SandboxUnavailable(self.unavailable)
        loop = asyncio.get_running_loop()
        limit = self.limits.timeout_seconds
        deadline = loop.time() + limit
        try:
            async with asyncio.timeout_at(deadline):
                await self._running.acquire()
        except TimeoutError:
            raise SandboxTimeout(f"found no free sandbox within {limit:g}s") from None
        worker: _Worker | None = None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    worker = await (self._spawn(network=True) if network else self._take())
                    await worker.send(call)
            except TimeoutError:
                raise SandboxTimeout(f"did not start within {limit:g}s") from None
            except (BrokenPipeError, ConnectionResetError):
                raise SandboxCrash("its process went away before the call started") from None
            yield SandboxRun(worker, deadline, limit)
        finally:
            self._running.release()
            if worker is not None:
                await asyncio.shield(worker.kill())

    async def _take(self) -> _Worker:
        while self._spares:
            worker = self._spares.pop()
            self._schedule_refill()
            if worker.alive:
                return worker
            await worker.kill()
        self._schedule_refill()
        return await self._spawn()

    def _schedule_refill(self) -> None:
        if self._closed or self.limits.spares <= 0:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        while not self._closed and len(self._spares) < self.limits.spares:
            try:
                worker = await self._spawn()
            except OSError:
                log.exception("sandbox_spawn_failed")
                return
            if self._closed:
                await worker.kill()
                return
            self._spares.append(worker)

    async def _spawn(self, *, network: bool = False) -> _Worker:
        roots = _code_roots()
        unisolated = self.isolation.mode == "none"
        process = await asyncio.create_subprocess_exec(
            *self.isolation.command(self._worker_argv(roots), network=network, code_roots=roots),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=worker_environment(self._workdir if unisolated else ""),
            cwd=(self._workdir or None) if unisolated else "/",
            start_new_session=True,
            close_fds=True,
        )
        return _Worker(process)

    def _worker_argv(self, roots: Sequence[str]) -> list[str]:
        cpu_seconds = math.ceil(self.limits.timeout_seconds) + 1
        argv = [
            sys.executable,
            "-I",  # no PYTHON* variables, no user site, no script dir on sys.path
            "-c",
            WORKER_BOOT.format(roots=list(roots)),
            "--memory-mb",
            str(self.limits.memory_mb),
            "--cpu-seconds",
            str(cpu_seconds),
            "--max-processes",
            str(self.limits.max_processes),
        ]
        if self.isolation.mode == "none":
            # dies with the proxy even when it is SIGKILLed (the worker arms that itself;
            # bubblewrap's --die-with-parent does it otherwise); forked by the event
            # loop's thread, which lives as long as the proxy
            argv += ["--parent-pid", str(os.getpid())]
        return argv

    async def aclose(self) -> None:
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        spares, self._spares = self._spares, []
        for worker in spares:
            await worker.kill()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)


def worker_environment(workdir: str) -> dict[str, str]:
    """Only what Python needs: none of the proxy's variables (keys, URLs) are inherited.
    `workdir` "": the isolated worker's own /tmp."""
    return minimal_environment(workdir) if workdir else minimal_environment()


def _code_roots() -> list[str]:
    """The folders this process imports `inference_proxy` and `common` from."""
    roots: list[str] = []
    for package in (inference_proxy, common):
        root = str(Path(package.__file__ or "").resolve().parents[1])
        if root not in roots:
            roots.append(root)
    return roots

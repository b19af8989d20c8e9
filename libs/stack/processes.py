"""Child processes in their own process groups, stopped as a whole with bounded waits.

Every child is tied to the launcher (`common.parent_death`): it gets SIGTERM when the
launcher dies, even by SIGKILL, so a killed benchmark or `kill -9` leaks no processes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import structlog

from common.parent_death import tied_to_parent

log = structlog.get_logger()

Redirect = int | IO[Any] | None  # what Popen takes for stdin/stdout/stderr


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Redirect = None,
    stdout: Redirect = None,
    stderr: Redirect = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session, tied to this process, from the spawning thread.

    The kernel sends the parent-death signal when the *thread* that forked the child exits.
    Callers run on threads that come and go (`Stack.astart` and `NatsServer.astart` use
    asyncio.to_thread, whose pool threads exit when their loop closes), so every child is
    forked by one thread that lives as long as the process.
    """

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            tied_to_parent(argv),
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )

    return _spawning_thread(os.getpid()).submit(start).result()


@functools.cache
def _spawning_thread(pid: int) -> ThreadPoolExecutor:
    """The process's spawning thread (keyed by pid: a forked copy starts its own)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawn")


class ChildProcess:
    """One program started in a new session, so stopping it also stops its own children."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path  # None: share the launcher's stdout/stderr
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        output: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = spawn(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
            )
        finally:
            if output is not None:
                output.close()
        self.started_at = time.monotonic()
        log.info("child_started", child=self.name, pid=self.process.pid)

    def exit_code(self) -> int | None:
        """None while running (or never started)."""
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole group, SIGKILL it after `grace` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("child_killed", child=self.name, after_s=grace)
        # Grandchildren (a child's own children) may outlive their parent.
        self.signal_group(signal.SIGKILL)
        self.process.wait()
        log.info("child_stopped", child=self.name, code=self.process.returncode)

    def log_tail(self, max_bytes: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as file:
            file.seek(max(0, self.log_path.stat().st_size - max_bytes))
            return file.read().decode(errors="replace")


def wait_http_ok(
    url: str, timeout: float, child: ChildProcess | None = None, interval: float = 0.1
) -> None:
    """Poll `url` until it answers 200; fail early if `child` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.running():
            raise RuntimeError(
                f"{child.name} exited with {child.exit_code()} before {url} answered\n"
                + child.log_tail()
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(interval)
    tail = child.log_tail() if child is not None else ""
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s\n{tail}")

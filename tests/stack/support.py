"""Helpers for process-level tests: a clean environment and the process tree under a pid."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from common.settings import default_cache_dir
from stack.nats_server import free_port
from stack.settings import StackSettings
from tests.support.sandbox import isolation_for_tests

# Variables of the surrounding shell that would leak into the stack under test.
FOREIGN_PREFIXES = ("RAGWAY_", "OPENAI_", "OLLAMA_")
# Test stacks sign up many active users from 127.0.0.1 (a deployment's choice to open
# sign-up; the defaults, `pending` and a per-address limit, have tests of their own).
OPEN_SIGNUP = {"RAGWAY_DEFAULT_USER_ROLE": "user", "RAGWAY_SIGNUP_MAX_PER_ADDRESS": "100000"}


def clean_environ(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    if "RAGWAY_CACHE_DIR" in os.environ:
        env["RAGWAY_CACHE_DIR"] = os.environ["RAGWAY_CACHE_DIR"]
    env.update(OPEN_SIGNUP)
    if isolation_for_tests() == "none":  # no bubblewrap here: plugins run, unisolated
        env["RAGWAY_SANDBOX_ISOLATION"] = "none"
    env.update(overrides)
    return env


def free_stack_settings(data_dir: Path) -> StackSettings:
    """Settings on free ports and a private data dir, so tests never touch a real install."""
    return StackSettings(
        data_dir=str(data_dir),
        cache_dir=default_cache_dir(),
        port=free_port(),
        nats_port=free_port(),
        llm_port=free_port(),
        log_level="warning",
        stop_timeout_s=15.0,
    )


def settings_environ(settings: StackSettings) -> dict[str, str]:
    """The same settings as RAGWAY_* variables, for `python -m stack run`."""
    return {
        "RAGWAY_DATA_DIR": settings.data_dir,
        "RAGWAY_PORT": str(settings.port),
        "RAGWAY_NATS_PORT": str(settings.nats_port),
        "RAGWAY_NATS_MONITOR_PORT": str(settings.nats_monitor_port),
        "RAGWAY_LLM_PORT": str(settings.llm_port),
        "RAGWAY_LOG_LEVEL": settings.log_level,
    }


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces: fields resume after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until_gone(pids: Iterable[int], within_s: float) -> list[str]:
    """Command lines of the processes still alive after `within_s`."""
    pids = list(pids)
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [command_line(pid) for pid in pids if alive(pid)]

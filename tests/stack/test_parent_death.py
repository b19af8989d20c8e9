"""Children die with their launcher, even when it is SIGKILLed and runs no cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.parent_death import EXIT_PARENT_GONE, tied_to_parent
from stack.nats_server import free_port
from tests.stack.support import alive, command_line, wait_until_gone

# Starts its children the way the launchers do, from threads that are gone by the time it
# prints their pids: nats-server through NatsServer.astart (asyncio.to_thread, whose pool
# thread exits when asyncio.run returns), the sleeper from a thread of its own.
LAUNCHER = """
import asyncio, os, sys, threading, time
from pathlib import Path
from stack.nats_server import NatsServer, NatsServerConfig
from stack.processes import ChildProcess

store, port, monitor_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
nats = NatsServer(NatsServerConfig(port=port, monitor_port=monitor_port, store_dir=store))
asyncio.run(nats.astart())
sleeper = ChildProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], os.environ)
starter = threading.Thread(target=sleeper.start)
starter.start()
starter.join()
print("pids", nats.process.pid, sleeper.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path), str(free_port()), str(free_port())],
        stdout=subprocess.PIPE,
    )
    yield process
    process.kill()
    process.wait()


def test_a_sigkilled_launcher_takes_nats_server_and_its_children_with_it(
    launcher: subprocess.Popen[bytes],
) -> None:
    assert launcher.stdout is not None
    pids: list[int] = []
    for line in launcher.stdout:  # its log lines come first
        if line.startswith(b"pids "):
            pids = [int(pid) for pid in line.split()[1:]]
            break
    assert len(pids) == 2, "the launcher did not start its children"
    try:
        # still running once the threads that started them are gone
        time.sleep(0.5)
        assert [alive(pid) for pid in pids] == [True, True]
        assert "nats-server" in command_line(pids[0])
        assert "time.sleep(60)" in command_line(pids[1])

        launcher.kill()
        launcher.wait()
        assert wait_until_gone(pids, 5.0) == []
    finally:
        for pid in pids:  # never leave them behind, even when the test fails
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_a_child_whose_parent_died_before_it_was_armed_exits_without_running() -> None:
    argv = tied_to_parent([sys.executable, "-c", "print('ran')"])
    # A parent pid that is not its parent's: what it sees when the parent died between the
    # fork and the prctl, and it was handed to init.
    argv[argv.index(str(os.getpid()))] = "1"
    done = subprocess.run(argv, capture_output=True, timeout=30)
    assert (done.returncode, done.stdout) == (EXIT_PARENT_GONE, b"")


def ignored_signals(argv: list[str]) -> str:
    status = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    return next(line for line in status.splitlines() if line.startswith("SigIgn:"))


def test_the_program_starts_with_the_signal_dispositions_of_a_plain_subprocess() -> None:
    # the wrapper is Python, which ignores SIGPIPE and SIGXFSZ: it must not hand that on
    plain = ["cat", "/proc/self/status"]
    assert ignored_signals(tied_to_parent(plain)) == ignored_signals(plain)

"""A sandbox worker dies with the proxy, even when the proxy is SIGKILLed mid-call, and so
do the processes the plugin started, even one that left its session with setsid()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stack.support import alive, command_line, wait_until_gone
from tests.support.sandbox import isolation_missing

# Plays the proxy: one call to a pipe that starts a detached child (a new session) and
# sleeps; once the pipe says it started, the proxy lists every process under it.
PROXY = """
import asyncio, os, sys
from inference_proxy.functions.sandbox import Sandbox, SandboxLimits
from inference_proxy.functions.sandbox_protocol import Call
from tests.stack.support import descendants

SOURCE = '''
import os, subprocess, time
class Pipe:
    def pipe(self, body):
        subprocess.Popen(["sleep", "300"], start_new_session=True)  # setsid() in the child
        yield "started"
        time.sleep(60)
'''

async def main():
    sandbox = Sandbox(SandboxLimits(timeout_seconds=60, spares=0))
    await sandbox.start()
    assert not sandbox.unavailable, sandbox.unavailable
    call = Call(op="pipe", plugin_id="sleepy", source=SOURCE, body={})
    async with sandbox.run(call) as run:
        await run.next_frame()
        await asyncio.sleep(0.3)  # the sleep child has exec'd
        pids = " ".join(str(pid) for pid in sorted(descendants(os.getpid())))
        with open(sys.argv[1], "w") as file:
            file.write(pids)
        await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.skipif(bool(isolation_missing()), reason=isolation_missing() or "-")
def test_a_call_still_running_when_the_proxy_is_sigkilled_is_killed_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "worker.pids"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proxy = subprocess.Popen([sys.executable, "-c", PROXY, str(pid_file)], env=env)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert proxy.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        pids = [int(pid) for pid in pid_file.read_text().split()]
        commands = [command_line(pid) for pid in pids]
        assert any("sandbox_worker" in command for command in commands), commands
        assert any(command.startswith("sleep 300") for command in commands), commands

        proxy.kill()  # no cleanup runs in the proxy
        proxy.wait()
        assert wait_until_gone(pids, 5) == []
    finally:
        proxy.kill()
        proxy.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

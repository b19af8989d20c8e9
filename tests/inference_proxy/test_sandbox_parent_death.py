"""A sandbox worker dies with the proxy, even when the proxy is SIGKILLed mid-call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.stack.support import alive, command_line, wait_until_gone

# Plays the proxy: one call to a pipe that records its pid and sleeps, then nothing more.
PROXY = """
import asyncio, sys
from inference_proxy.functions.sandbox import Sandbox, SandboxLimits
from inference_proxy.functions.sandbox_protocol import Call

SOURCE = '''
import os, time
class Pipe:
    def pipe(self, body):
        with open(body["pid_file"], "w") as file:
            file.write(str(os.getpid()))
        time.sleep(60)
'''

async def main():
    sandbox = Sandbox(SandboxLimits(timeout_seconds=60, spares=0))
    await sandbox.start()
    call = Call(op="pipe", plugin_id="sleepy", source=SOURCE, body={"pid_file": sys.argv[1]})
    async with sandbox.run(call) as run:
        await run.next_frame()

asyncio.run(main())
"""


def test_a_call_still_running_when_the_proxy_is_sigkilled_is_killed_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "worker.pid"
    proxy = subprocess.Popen([sys.executable, "-c", PROXY, str(pid_file)])
    worker = 0
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert proxy.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        assert "sandbox_worker" in command_line(worker)

        proxy.kill()  # no cleanup runs in the proxy
        proxy.wait()
        assert wait_until_gone([worker], 5) == []
    finally:
        proxy.kill()
        proxy.wait()
        if worker and alive(worker):
            os.killpg(worker, signal.SIGKILL)

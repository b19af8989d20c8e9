"""`run_stoppable`: a signal cancels the coroutine, so its cleanup runs before the exit."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

SCRIPT = """
import asyncio, sys
from pathlib import Path
from common.runner import run_stoppable

async def main() -> None:
    try:
        print("ready", flush=True)
        await asyncio.sleep(60)
    finally:
        Path(sys.argv[1]).write_text("cleaned up")

run_stoppable(main())
"""


async def test_sigterm_runs_the_coroutines_cleanup_and_exits_143(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, str(marker), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 143
    assert marker.read_text() == "cleaned up"

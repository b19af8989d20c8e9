"""`python -m stack run` starts the embedded stack; `python -m stack setup-llm` prepares the LLM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from common.settings import configure
from stack.launcher import Stack
from stack.llm_setup import setup_llm
from stack.settings import StackSettings


def run(settings: StackSettings) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack = Stack(settings, log_to_files=False)
    try:
        stack.start()
    except Exception as exc:
        print(f"ragway failed to start: {exc}", file=sys.stderr)
        return 1
    print(f"ragway is ready at {stack.url}", flush=True)
    try:
        while not stop.wait(0.5):
            stack.supervise_once()
    finally:
        stack.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    parser.add_argument("command", choices=["run", "setup-llm"])
    args = parser.parse_args()
    settings = configure(StackSettings)
    if args.command == "setup-llm":
        setup_llm(Path(settings.cache_dir).expanduser())
        return 0
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())

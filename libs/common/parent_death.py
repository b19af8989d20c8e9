"""Child processes that die with their parent (Linux's parent-death signal).

A launcher that is SIGKILLed (a benchmark's timeout, `kill -9`, a killed pytest) runs no
cleanup, and its children, each in a session of its own so that no terminal hangup reaches
them, would run on forever. `tied_to_parent(argv)` turns a command line into one that first
runs this file as a tiny program: `python -I -S parent_death.py <parent pid> <argv...>`. It
asks the kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), exits at once if
the parent is already gone (it may die between the fork and the prctl), then execs `argv` in
place: same pid, same session and process group, and the request survives the exec.
SIGTERM makes each child stop as Ctrl-C on `make run` does: services drain and stop their
own children, nats-server shuts JetStream down cleanly.

Why a wrapper program rather than subprocess's `preexec_fn`: preexec_fn runs Python in the
forked child, which the subprocess docs call unsafe when the parent has threads (launchers
always do: asyncio's executor, nats clients, the spawning thread of `stack.processes`), and
it rules out vfork. The wrapper costs one small Python start (about 20 ms) per child. A
Python child can arm itself instead with `die_with_parent`, given its parent's pid.

The trap: the kernel sends the signal when the *thread* that forked the child exits, not
the process. Start tied children only from a thread that lives as long as they should (the
main thread, an event loop's thread, `stack.processes.spawn`'s thread), never from a pool
thread such as `asyncio.to_thread`'s, which exits when its loop closes.

This file runs with `-I -S` (no site-packages, no script directory on sys.path, so
`common/logging.py` cannot shadow the standard library): it imports only the standard
library, and only what the wrapper needs, to keep that start small.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_PARENT_GONE = 128 + signal.SIGTERM  # as if the parent-death signal had come
EXIT_CANNOT_RUN = 127  # the shell's code for "command not found / not executable"


def tied_to_parent(argv: Sequence[str]) -> list[str]:
    """`argv` as a command line that gets SIGTERM when this process dies (as is off Linux)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), *argv]


def die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the parent dies; exit now if `parent_pid` already is not the parent."""
    if not sys.platform.startswith("linux"):
        return
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    if prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    # Reparented already (to init or a subreaper): no signal will ever come.
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)


def run_tied(args: Sequence[str]) -> None:
    """The wrapper: `<parent pid> <program> [args...]`; arm the signal, then exec the program."""
    parent_pid, program, *rest = args
    die_with_parent(int(parent_pid))
    # Python starts with these ignored, and an ignored signal stays ignored across exec:
    # put back the defaults, as subprocess does for the programs it runs (restore_signals).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(program, [program, *rest])
    except OSError as exc:
        print(f"cannot run {program}: {exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_CANNOT_RUN)


if __name__ == "__main__":
    run_tied(sys.argv[1:])

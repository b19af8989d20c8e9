"""A process that holds secrets marks itself not dumpable (prctl PR_SET_DUMPABLE 0).

Then no core file is written for it, and only root with CAP_SYS_PTRACE may ptrace it or
read its /proc/<pid>/environ, mem, maps or fds: another process of the same uid (a
plugin worker run unisolated, a compromised helper) cannot. The flag is reset on exec,
so the children it starts are unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    result: int = libc.prctl(option, arg, 0, 0, 0)
    return result


def forbid_dumps() -> bool:
    """Make this process non-dumpable; False off Linux or when the kernel refuses."""
    if not sys.platform.startswith("linux"):
        return False
    return _prctl(PR_SET_DUMPABLE, 0) == 0


def dumpable() -> bool:
    return sys.platform.startswith("linux") and _prctl(PR_GET_DUMPABLE) == 1

"""Whether plugin workers can be isolated on this machine (bubblewrap and user
namespaces), asked once. Tests of the isolation itself skip without it; tests of what
plugins do run them unisolated then (`RAGWAY_SANDBOX_ISOLATION=none`, the admin's opt-out),
so they still run where `make system-packages` was not."""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import Literal

from inference_proxy.functions.isolation import Isolation, minimal_environment
from inference_proxy.functions.sandbox import _code_roots


@functools.cache
def isolation_missing() -> str:
    """Why workers cannot be isolated here ("" when they can)."""
    isolation = Isolation()
    argv = isolation.command(
        [sys.executable, "-I", "-c", "import msgspec"], network=False, code_roots=_code_roots()
    )
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            env=minimal_environment(),
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot run here ({exc}): `make system-packages`"
    if done.returncode != 0:
        return f"bubblewrap fails here: {done.stderr.decode(errors='replace')[-300:]}"
    return ""


def isolation_for_tests() -> Literal["bwrap", "none"]:
    """The proxy setting for tests that run plugins but do not test their isolation."""
    return "none" if isolation_missing() else "bwrap"

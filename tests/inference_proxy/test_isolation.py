"""Plugins never run unisolated by accident: without bubblewrap (or user namespaces) the
sandbox refuses every call with the reason and the opt-out, unless the admin chose
`RAGWAY_SANDBOX_ISOLATION=none`. And the proxy can make itself non-dumpable."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from inference_proxy.functions.isolation import Isolation, python_paths
from inference_proxy.functions.pipes import failure_error
from inference_proxy.functions.sandbox import (
    Sandbox,
    SandboxLimits,
    SandboxUnavailable,
    _code_roots,
)
from inference_proxy.functions.sandbox_protocol import Call, Result
from inference_proxy.settings import Settings

UID_PIPE = """
import os
class Pipe:
    def pipe(self, body):
        return str(os.getuid())
"""


async def test_without_bubblewrap_every_call_is_refused_with_the_reason(tmp_path: Path) -> None:
    sandbox = Sandbox(SandboxLimits(spares=1), Isolation(bwrap_path=str(tmp_path / "bwrap")))
    await sandbox.start()
    try:
        assert "bubblewrap is not installed" in sandbox.unavailable
        assert "RAGWAY_SANDBOX_ISOLATION=none" in sandbox.unavailable
        with pytest.raises(SandboxUnavailable) as refused:
            async with sandbox.run(Call(op="pipe", plugin_id="p", source=UID_PIPE)):
                pass
        error = failure_error("Function 'p'", refused.value)
        assert error.code == "unavailable" and "bubblewrap" in error.detail
    finally:
        await sandbox.aclose()


async def test_a_bubblewrap_that_fails_is_refused_too() -> None:
    # a folder the workers' uid may enter (they start as 65534 when tests run as root)
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        broken = Path(folder) / "bwrap"
        broken.write_text("#!/bin/sh\necho 'No permissions to create new namespace' >&2\nexit 1\n")
        broken.chmod(0o755)
        sandbox = Sandbox(SandboxLimits(spares=0), Isolation(bwrap_path=str(broken)))
        await sandbox.start()
        try:
            assert "No permissions to create new namespace" in sandbox.unavailable
        finally:
            await sandbox.aclose()


async def test_the_explicit_opt_out_runs_plugins_unisolated(tmp_path: Path) -> None:
    isolation = Isolation(mode="none", bwrap_path=str(tmp_path / "bwrap"))
    sandbox = Sandbox(SandboxLimits(spares=0), isolation)
    await sandbox.start()
    try:
        assert sandbox.unavailable == ""
        async with sandbox.run(Call(op="pipe", plugin_id="p", source=UID_PIPE)) as run:
            frame = await run.next_frame()
        assert isinstance(frame, Result) and frame.text == str(os.getuid())
    finally:
        await sandbox.aclose()


def test_isolation_is_the_default_and_opting_out_is_a_setting() -> None:
    assert Settings().sandbox_isolation == "bwrap"
    from common.settings import configure

    chosen = configure(Settings, {"RAGWAY_SANDBOX_ISOLATION": "none"})
    assert chosen.sandbox_isolation == "none"


def test_under_root_workers_get_a_host_uid_of_their_own() -> None:
    isolation = Isolation()
    if os.geteuid() == 0:
        assert isolation.worker_uid == 65534
    else:
        assert isolation.worker_uid is None  # the user namespace maps the proxy's own
    assert Isolation(mode="none").worker_uid is None


def test_only_python_and_the_code_folders_are_bound() -> None:
    paths = python_paths(_code_roots())
    assert "/" not in paths and "/usr" not in paths
    for path in paths:
        assert os.path.isdir(path)
    argv = Isolation().command(["python"], network=False, code_roots=_code_roots())
    assert "--unshare-net" in argv and "--die-with-parent" in argv and "--new-session" in argv
    assert "--unshare-net" not in Isolation().command(
        ["python"], network=True, code_roots=_code_roots()
    )


def test_the_proxy_can_make_itself_non_dumpable() -> None:
    script = (
        "from common.dumpable import dumpable, forbid_dumps; "
        "before = dumpable(); assert forbid_dumps(); print(before, dumpable())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["True", "False"]

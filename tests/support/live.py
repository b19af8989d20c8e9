"""A running ragway for the CLI and SDK tests: the session's stack (tests/support/stack.py)
with retrieval and ingestion beside it, and helpers that drive the `ragway` CLI against it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ragway_cli.main import app
from tests.support.stack import Account, RagServices, Stack

OPENAI_MODEL = "gpt-fake"
OLLAMA_MODEL = "llama3.2:latest"


@pytest.fixture(scope="session")
async def ragway(stack: Stack, rag: RagServices) -> Stack:
    """The stack with files, knowledge and RAG working (the `rag` services beside it)."""
    return stack


@dataclass
class Cli:
    """Runs `ragway ...` in a worker thread (it makes its own event loop) against the stack."""

    url: str
    config_home: Path

    async def __call__(
        self, *args: str, key: str | None = None, input: str | None = None, **env: str | None
    ) -> Result:
        environ: dict[str, str | None] = {
            "RAGWAY_URL": self.url,
            "XDG_CONFIG_HOME": str(self.config_home),
            "RAGWAY_CONFIG_DIR": None,
            "RAGWAY_API_KEY": key,
            "RAGWAY_MODEL": None,
            "RAGWAY_DEBUG": None,
            "COLUMNS": "200",
            **env,
        }
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, app, list(args), input=input, env=environ, prog_name="ragway"
        )

    @property
    def config_file(self) -> Path:
        return self.config_home / "ragway" / "config.json"


@pytest.fixture
def cli(stack: Stack, tmp_path: Path) -> Cli:
    return Cli(url=stack.url, config_home=tmp_path / "config")


def ragway_command() -> list[str]:
    """The installed console script beside this interpreter (`pip install -e .` makes it)."""
    script = Path(sys.executable).with_name("ragway")
    assert script.exists(), f"the ragway console script is not installed at {script}"
    return [str(script)]


async def run_process(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    """Run a real subprocess (CLI, curl, node, python snippet): exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def wait_completed(stack: Stack, account: Account, file_id: str, seconds: float = 30) -> Any:
    """The file object once ingestion finished with it (completed or failed)."""
    async with asyncio.timeout(seconds):
        while True:
            status, record = await stack.call(
                "GET", f"/api/v1/files/{file_id}", headers=account.key_auth
            )
            assert status == 200, record
            if record["data"]["status"] in ("completed", "failed"):
                return record
            await asyncio.sleep(0.1)

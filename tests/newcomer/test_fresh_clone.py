"""A newcomer's first minutes: clone, `make run`, then the README's first requests.

The clone is of the committed tree (what CI and a newcomer get), made in a temp dir; its
`make run` builds its own venv and sets up whatever the model cache lacks. CI runs the
suite with `RAGWAY_CACHE_DIR` pointing at a new empty directory (`.ci/run`), so the
`make setup` that `make test` ran first did the cold setup, and this test shares it
(pip's own cache keeps the venv install to about a minute).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from stack.llm_setup import MODEL_ID
from tests.stack.support import (
    clean_environ,
    descendants,
    free_stack_settings,
    settings_environ,
    wait_until_gone,
)

pytestmark = [pytest.mark.slow, pytest.mark.newcomer]

REPO = Path(__file__).resolve().parents[2]
READY_WITHIN_S = 900  # a venv from pip's cache, model checks, then every service
README_URL = "URL=http://127.0.0.1:3000"


def readme_first_requests() -> str:
    """The shell block under the README's "First requests" heading, as a newcomer pastes it."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## First requests\n", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README's First requests section has no ```sh block"
    return match.group(1)


class MakeRun:
    """`make run` in a clone, in its own process group; the URL it printed when ready."""

    def __init__(self, clone: Path, log_path: Path) -> None:
        environ = settings_environ(free_stack_settings(clone / "data"))
        del environ["RAGWAY_DATA_DIR"]  # the README's default: ./data in the clone
        self.log_path = log_path
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                ["make", "run"],
                cwd=clone,
                env=clean_environ(**environ),
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,
                bufsize=0,  # unbuffered: what select() sees is all there is to read
            )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        """The URL from make's output; a run that goes quiet fails at the deadline too."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_WITHIN_S
        lines = _lines(self.process.stdout)
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if not ready:
                break
            line = next(lines, None)
            if line is None:  # make exited
                break
            with open(self.log_path, "a") as log_file:
                log_file.write(line)
            if "ragway is ready at" in line:
                return line.split("ready at", 1)[1].strip()
        self.process.poll()
        pytest.fail(
            f"`make run` did not become ready (exit {self.process.returncode}):\n"
            + self.log_path.read_text()[-4000:]
        )

    def stop(self) -> list[str]:
        """Ctrl-C as a person would (the whole foreground group); what is left running."""
        tree = descendants(self.process.pid)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return wait_until_gone(tree, within_s=30)


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """Lines of an unbuffered pipe (no line waits in a buffer that select() cannot see)."""
    for raw in iter(stream.readline, b""):
        yield raw.decode(errors="replace")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.fail("git and make are needed for the newcomer path")
    target = tmp_path_factory.mktemp("newcomer") / "ragway"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    yield target


def split_outputs(stdout: str) -> tuple[list[object], str]:
    """curl's JSON replies (printed back to back), then the streamed SSE text."""
    decoder = json.JSONDecoder()
    values: list[object] = []
    rest = stdout
    while rest.lstrip().startswith(("{", "[")):
        value, end = decoder.raw_decode(rest.lstrip())
        values.append(value)
        rest = rest.lstrip()[end:]
    return values, rest


def test_a_fresh_clone_serves_the_readme_first_requests_after_make_run(
    clone: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    run = MakeRun(clone, tmp_path / "make-run.log")
    try:
        ready_s = time.monotonic() - started
        script = readme_first_requests()
        assert README_URL in script
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(README_URL, f"URL={run.url}")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        (key_reply, models, completion), stream = split_outputs(done.stdout)
    finally:
        left = run.stop()
    assert left == [], f"processes left after Ctrl-C: {left}"

    assert isinstance(key_reply, dict) and str(key_reply["api_key"]).startswith("sk-")
    assert isinstance(models, dict)
    assert MODEL_ID in [model["id"] for model in models["data"]]
    assert isinstance(completion, dict) and completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"].strip()
    assert completion["usage"]["completion_tokens"] > 0
    events = [line[len("data: ") :] for line in stream.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", stream[-500:]
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    print(f"make run in a fresh clone was ready in {ready_s:.0f} s")

